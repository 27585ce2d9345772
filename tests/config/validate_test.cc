// Rules between values. Mostly through inline YAML for exact positions; one Config built in code
// shows validate() is usable (and pure) without a file.
#include "config/validate.h"
#include "test_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace mailgate::config {
namespace {

using testing::diagnose;
using ::testing::ElementsAre;

TEST(Validate, RequireTlsWithoutCertificate) {
  EXPECT_THAT(diagnose("listeners:\n  smtp:\n    require_tls: true\n"),
              ElementsAre("t.yaml:3:18: listeners.smtp.require_tls: needs listeners.smtp.tls "
                          "(without a certificate STARTTLS cannot be offered)"));
}

TEST(Validate, TrustedNetworksNeedAKnownToken) {
  EXPECT_THAT(diagnose("listeners:\n  smtp:\n    trusted_networks: [127.0.0.0/8]\n"),
              ElementsAre("t.yaml:3:23: listeners.smtp.trusted_networks: needs trusted_as: the "
                          "token whose roles and tenants trusted connections get"));
  EXPECT_THAT(diagnose("listeners:\n  smtp:\n    trusted_as: crm\n"),
              ElementsAre("t.yaml:3:17: listeners.smtp.trusted_as: names no token in "
                          "listeners.api.tokens ('crm')"));
}

TEST(Validate, ListenersMustNotShareAnAddress) {
  EXPECT_THAT(diagnose("listeners:\n  smtp: {address: 127.0.0.1:9000}\n"
                       "  api: {address: 127.0.0.1:9000}\n"),
              ElementsAre("t.yaml:3:18: listeners.api.address: is the same as "
                          "listeners.smtp.address"));
  // Port 0 on both is fine: the kernel picks two ports.
  EXPECT_TRUE(diagnose("listeners:\n  smtp: {address: 127.0.0.1:0}\n"
                       "  api: {address: 127.0.0.1:0}\n")
                  .empty());
}

TEST(Validate, TokenScopesAndSharedSecrets) {
  EXPECT_THAT(diagnose(R"(tenants: [{id: acme}]
listeners:
  api:
    tokens:
      - {name: a, secret: same, roles: [reader], tenants: ["*", acme]}
      - {name: b, secret: same, roles: [reader], tenants: [acme, ghost]}
      - {name: "has space", secret: other, roles: [reader], tenants: []}
)"),
              ElementsAre("t.yaml:5:59: listeners.api.tokens[0].tenants: '*' (every tenant) must "
                          "stand alone",
                          "t.yaml:6:9: listeners.api.tokens[1]: has the same secret as token 'a'; "
                          "give each token its own",
                          "t.yaml:6:66: listeners.api.tokens[1].tenants[1]: names no tenant in "
                          "tenants[] ('ghost')",
                          "t.yaml:7:16: listeners.api.tokens[2].name: must be 1..64 letters, "
                          "digits, '.', '-', '_' or '@'",
                          "t.yaml:7:70: listeners.api.tokens[2].tenants: must not be empty (leave "
                          "it out, or write [\"*\"], for every tenant)"));
}

TEST(Validate, RedisBackendNeedsAUrl) {
  EXPECT_THAT(diagnose("storage:\n  backend: redis\n"),
              ElementsAre("t.yaml:2:3: storage.redis.url: is required when storage.backend is "
                          "redis"));
}

TEST(Validate, NoTlsCannotTrustAnything) {
  EXPECT_THAT(diagnose("relays:\n  r: {host: h, tls: none, allow_self_signed: true}\n"),
              ElementsAre("t.yaml:2:21: relays.r.tls: tls: none cannot be combined with "
                          "allow_self_signed, ca_file or pins"));
}

TEST(Validate, LimitsMustBeConsistent) {
  EXPECT_THAT(diagnose("microsoft365:\n  limits: {recipients_per_day: 100}\n"),
              ElementsAre("t.yaml:2:11: microsoft365.limits.recipients_per_message: is larger "
                          "than recipients_per_day (100)"));
}

TEST(Validate, TenantRules) {
  EXPECT_THAT(
      diagnose(R"(relays: {r: {host: h}}
tenants:
  - id: acme
    fallback: [r, r]
    bcc_address: bcc@acme.example
  - id: acme
    on_disconnect: fallback
    bcc_address: BCC@acme.example
  - id: "no spaces"
    bcc_address: not-an-address
)"),
      ElementsAre("t.yaml:4:19: tenants[0].fallback[1]: relay 'r' is already in the chain",
                  "t.yaml:6:9: tenants[1].id: duplicate tenant id 'acme' (first at line 3)",
                  "t.yaml:7:20: tenants[1].on_disconnect: fallback needs at least one relay in "
                  "fallback[]",
                  "t.yaml:8:18: tenants[1].bcc_address: 'BCC@acme.example' is already the "
                  "bcc_address of tenants[0].bcc_address",
                  "t.yaml:9:9: tenants[2].id: must be 1..64 letters, digits, '-' or '_'",
                  "t.yaml:10:18: tenants[2].bcc_address: 'not-an-address' is not a mail address"));
}

TEST(Validate, MailboxAddressesAndAliases) {
  EXPECT_THAT(diagnose(R"(tenants:
  - id: acme
    bcc_address: rep1@acme.example
    mailboxes:
      - address: rep1@acme.example
        aliases: [Rep1@acme.example, x@acme.example, x@acme.example, bad]
      - address: nobody
)"),
              ElementsAre("t.yaml:3:18: tenants[0].bcc_address: 'rep1@acme.example' is also an "
                          "address of tenants[0].mailboxes[0]",
                          "t.yaml:6:19: tenants[0].mailboxes[0].aliases[0]: repeats the mailbox's "
                          "own address",
                          "t.yaml:6:54: tenants[0].mailboxes[0].aliases[2]: alias "
                          "'x@acme.example' is listed twice",
                          "t.yaml:6:70: tenants[0].mailboxes[0].aliases[3]: 'bad' is not a mail "
                          "address",
                          "t.yaml:7:18: tenants[0].mailboxes[1].address: 'nobody' is not a mail "
                          "address"));
}

TEST(Validate, MailboxAuthAndAccess) {
  EXPECT_THAT(diagnose(R"(tenants:
  - id: acme
    mailboxes:
      - address: a@acme.example
        auth: {method: app_password, refresh_token: rt}
      - address: b@acme.example
        access: graph
        aliases: [b2@acme.example]
        sync: two_way
        auth: {method: app_password, password: pw}
      - address: c@acme.example
        access: custom
        smtp: {port: 2525}
)"),
              ElementsAre("t.yaml:5:15: tenants[0].mailboxes[0].auth.password: is required for "
                          "method app_password",
                          "t.yaml:5:53: tenants[0].mailboxes[0].auth.refresh_token: belongs to "
                          "method oauth2, not app_password",
                          "t.yaml:8:18: tenants[0].mailboxes[1].aliases: aliases are not "
                          "available with access: graph",
                          "t.yaml:9:15: tenants[0].mailboxes[1].sync: access: graph syncs one way "
                          "(one_way or none)",
                          "t.yaml:10:24: tenants[0].mailboxes[1].auth.method: access: graph needs "
                          "method oauth2",
                          "t.yaml:11:9: tenants[0].mailboxes[2].imap.host: is required for "
                          "access: custom",
                          "t.yaml:13:15: tenants[0].mailboxes[2].smtp.host: is required for "
                          "access: custom"));
}

TEST(Validate, WebhookScopes) {
  EXPECT_THAT(diagnose(R"(webhooks:
  - url: https://hooks.example/a
    secret: s
    events: ["*", message.received]
  - url: https://hooks.example/b
    secret: s
    events: [Message Received]
    tenants: [ghost]
  - url: ftp://hooks.example/c
    secret: s
)"),
              ElementsAre("t.yaml:4:13: webhooks[0].events: '*' (every event) must stand alone",
                          "t.yaml:7:14: webhooks[1].events[0]: event types are lower-case words "
                          "joined by '.', e.g. message.received",
                          "t.yaml:8:15: webhooks[1].tenants[0]: names no tenant in tenants[] "
                          "('ghost')",
                          "t.yaml:9:10: webhooks[2].url: scheme 'ftp' is not supported (use "
                          "https://, http://)"));
}

TEST(Validate, QueueOrdering) {
  EXPECT_THAT(diagnose("queue: {retry_initial: 2h, retry_max: 3h, lifetime: 1h}\n"),
              ElementsAre("t.yaml:1:53: queue.lifetime: must be at least retry_initial (2h)"));
  // retry_max keeps its default (1h) when only retry_initial is raised: that is reported too.
  EXPECT_THAT(diagnose("queue: {retry_initial: 2h}\n"),
              ElementsAre("t.yaml:1:8: queue.retry_max: must be at least retry_initial (2h)"));
}

TEST(Validate, PureOnAConfigBuiltInCode) {
  Config c;
  c.node.id = "gw";
  Tenant t;
  t.id = "acme";
  t.fallback = {"missing"};
  c.tenants.push_back(t);
  const auto first = validate(c);
  ASSERT_EQ(first.size(), 1U);
  EXPECT_EQ(first[0].str(),
            "<memory>: tenants[0].fallback[0]: names no relay under relays: ('missing')");
  EXPECT_EQ(validate(c), first); // same input, same answer
  c.relays["missing"] = Relay{};
  EXPECT_TRUE(validate(c).empty());
}

} // namespace
} // namespace mailgate::config

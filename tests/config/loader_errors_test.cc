// One inline YAML per kind of error, asserting the exact FILE:LINE:COL: path: reason.
#include "config/loader.h"
#include "test_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace mailgate::config {
namespace {

using testing::diagnose;
using ::testing::ElementsAre;

TEST(LoaderErrors, UnknownKeyWithSuggestion) {
  EXPECT_THAT(diagnose(R"(listeners:
  smtp:
    adress: 127.0.0.1:25
)"),
              ElementsAre("t.yaml:3:5: listeners.smtp.adress: unknown key (did you mean "
                          "'address'?)"));
}

TEST(LoaderErrors, UnknownKeyListsTheKnownOnes) {
  EXPECT_THAT(diagnose("log:\n  colour: true\n"),
              ElementsAre("t.yaml:2:3: log.colour: unknown key (expected one of: level, format)"));
}

TEST(LoaderErrors, UnknownTopLevelKey) {
  EXPECT_THAT(diagnose("node:\n  id: gw-1\nnodes: {}\n"),
              ElementsAre("t.yaml:3:1: nodes: unknown key (did you mean 'node'?)"));
}

TEST(LoaderErrors, DuplicateKey) {
  EXPECT_THAT(diagnose("log:\n  level: info\n  level: debug\n"),
              ElementsAre("t.yaml:3:3: log.level: duplicate key"));
}

TEST(LoaderErrors, WrongTypes) {
  EXPECT_THAT(diagnose(R"(listeners:
  smtp:
    max_recipients: many
    max_connections: [1, 2]
    require_tls: maybe
node: 5
)"),
              ElementsAre("t.yaml:3:21: listeners.smtp.max_recipients: expected an integer, got "
                          "'many'",
                          "t.yaml:4:22: listeners.smtp.max_connections: expected an integer, got "
                          "a list",
                          "t.yaml:5:18: listeners.smtp.require_tls: expected true or false, got "
                          "'maybe'",
                          "t.yaml:6:7: node: expected a mapping (key: value), got a scalar"));
}

TEST(LoaderErrors, OutOfRange) {
  EXPECT_THAT(diagnose(R"(listeners:
  smtp:
    max_line_length: 512
tenants:
  - id: acme
    priority_reserve_percent: 101
)"),
              ElementsAre("t.yaml:3:22: listeners.smtp.max_line_length: must be between 1000 and "
                          "1048576",
                          "t.yaml:6:31: tenants[0].priority_reserve_percent: must be between 0 "
                          "and 100"));
}

TEST(LoaderErrors, ImapSentFolderMustBeAName) {
  EXPECT_THAT(
      diagnose("tenants:\n  - id: acme\n    mailboxes:\n      - address: rep1@acme.example\n"
               "        imap: {sent_folder: \"\"}\n"),
      ElementsAre("t.yaml:5:29: tenants[0].mailboxes[0].imap.sent_folder: must be a folder "
                  "name of 1 to 1024 bytes without control characters"));
  EXPECT_THAT(
      diagnose("tenants:\n  - id: acme\n    mailboxes:\n      - address: rep1@acme.example\n"
               "        imap: {sent_folder: \"a\\r\\nb\"}\n"),
      ElementsAre("t.yaml:5:29: tenants[0].mailboxes[0].imap.sent_folder: must be a folder "
                  "name of 1 to 1024 bytes without control characters"));
}

TEST(LoaderErrors, ImapSessionCapsOutOfRange) {
  EXPECT_THAT(diagnose(R"(tenants:
  - id: acme
    imap: {max_sessions: 0}
    mailboxes:
      - address: rep1@acme.example
        imap: {pool: {max_sessions: 17}}
      - address: rep2@acme.example
        imap:
          pool:
            max_sessions: 20
  - id: beta
    imap:
      max_sessions: 100001
      pool: {max_sessions: 3}
)"),
              ElementsAre("t.yaml:3:26: tenants[0].imap.max_sessions: must be between 1 and "
                          "100000",
                          "t.yaml:6:37: tenants[0].mailboxes[0].imap.pool.max_sessions: must be "
                          "between 0 and 16",
                          "t.yaml:10:27: tenants[0].mailboxes[1].imap.pool.max_sessions: must "
                          "be between 0 and 16",
                          "t.yaml:13:21: tenants[1].imap.max_sessions: must be between 1 and "
                          "100000",
                          "t.yaml:14:7: tenants[1].imap.pool: unknown key (expected one of: "
                          "max_sessions)"));
  EXPECT_THAT(diagnose("tenants:\n  - id: acme\n    imap: {max_sessions: many}\n"),
              ElementsAre("t.yaml:3:26: tenants[0].imap.max_sessions: expected an integer, got "
                          "'many'"));
  EXPECT_THAT(diagnose("tenants:\n  - id: acme\n    imap: 5\n"),
              ElementsAre("t.yaml:3:11: tenants[0].imap: expected a mapping (key: value), got a "
                          "scalar"));
}

TEST(LoaderErrors, BadEnums) {
  EXPECT_THAT(diagnose(R"(storage:
  backend: postgres
relays:
  r:
    host: 127.0.0.1
    tls: ssl
)"),
              ElementsAre("t.yaml:2:12: storage.backend: unknown value 'postgres'; expected "
                          "sqlite|redis",
                          "t.yaml:6:10: relays.r.tls: unknown value 'ssl'; expected "
                          "implicit|starttls|none"));
}

TEST(LoaderErrors, BadDurations) {
  const std::string units =
      " (write a number and a unit (ms, s, m, h, d), e.g. 30s, 5m, 1h30m, 5d)";
  EXPECT_THAT(diagnose(R"(queue:
  retry_initial: 300
  lifetime: 5y
  retry_max: 30d
)"),
              ElementsAre("t.yaml:2:18: queue.retry_initial: '300' has no unit" + units,
                          "t.yaml:3:13: queue.lifetime: '5y' has no unit" + units,
                          "t.yaml:4:14: queue.retry_max: must be between 1s and 7d"));
}

TEST(LoaderErrors, BadEndpoints) {
  EXPECT_THAT(diagnose(R"(listeners:
  smtp:
    address: localhost:2525
  api:
    address: "127.0.0.1"
)"),
              ElementsAre("t.yaml:3:14: listeners.smtp.address: 'localhost' is not an IP address "
                          "(listeners bind an address; use 127.0.0.1, ::1, 0.0.0.0 or ::)",
                          "t.yaml:5:14: listeners.api.address: '127.0.0.1' has no port (write "
                          "IP:PORT, e.g. 127.0.0.1:2525 or [::1]:2525)"));
}

TEST(LoaderErrors, BadCidrs) {
  EXPECT_THAT(diagnose(R"(listeners:
  smtp:
    trusted_as: crm
    trusted_networks:
      - 10.0.0.0/8
      - 10.0.0.1/8
      - fd00::/129
      - not-a-network
  api:
    tokens:
      - {name: crm, secret: s, roles: [submitter]}
)"),
              ElementsAre("t.yaml:6:9: listeners.smtp.trusted_networks[1]: '10.0.0.1/8' has host "
                          "bits set (did you mean 10.0.0.0/8?)",
                          "t.yaml:7:9: listeners.smtp.trusted_networks[2]: prefix length in "
                          "'fd00::/129' must be 0..128",
                          "t.yaml:8:9: listeners.smtp.trusted_networks[3]: 'not-a-network' is not "
                          "an IPv4 or IPv6 network (write ADDRESS/BITS, e.g. 10.0.0.0/8 or "
                          "fd00::/8)"));
}

TEST(LoaderErrors, DuplicateTokenNames) {
  EXPECT_THAT(diagnose(R"(listeners:
  api:
    tokens:
      - name: crm
        secret: a
        roles: [submitter]
      - name: crm
        secret: b
        roles: [reader]
)"),
              ElementsAre("t.yaml:7:15: listeners.api.tokens[1].name: duplicate token name 'crm' "
                          "(first at line 4)"));
}

TEST(LoaderErrors, DuplicateMailboxAddressesAcrossTenantsIgnoringCase) {
  EXPECT_THAT(diagnose(R"(tenants:
  - id: acme
    mailboxes:
      - address: rep1@acme.example
  - id: beta
    mailboxes:
      - address: REP1@acme.example
)"),
              ElementsAre("t.yaml:7:18: tenants[1].mailboxes[0].address: duplicate mailbox "
                          "address 'REP1@acme.example' (also tenants[0].mailboxes[0])"));
}

TEST(LoaderErrors, AliasClaimedByTwoMailboxes) {
  EXPECT_THAT(diagnose(R"(tenants:
  - id: acme
    mailboxes:
      - address: rep1@acme.example
        aliases: [sales@acme.example]
      - address: rep2@acme.example
        aliases: [support@acme.example, sales@acme.example]
      - address: rep3@acme.example
        aliases: [rep1@acme.example]
)"),
              ElementsAre("t.yaml:7:41: tenants[0].mailboxes[1].aliases[1]: alias "
                          "'sales@acme.example' is already claimed by tenants[0].mailboxes[0]",
                          "t.yaml:9:19: tenants[0].mailboxes[2].aliases[0]: alias "
                          "'rep1@acme.example' is already claimed by tenants[0].mailboxes[0]"));
}

TEST(LoaderErrors, FallbackNamesUnknownRelay) {
  EXPECT_THAT(diagnose(R"(relays:
  default: {host: 127.0.0.1, port: 2526, tls: none}
tenants:
  - id: acme
    fallback: [default, backup]
)"),
              ElementsAre("t.yaml:5:25: tenants[0].fallback[1]: names no relay under relays: "
                          "('backup')"));
}

TEST(LoaderErrors, UnknownRole) {
  EXPECT_THAT(diagnose(R"(listeners:
  api:
    tokens:
      - name: crm
        secret: a
        roles: [submitter, superuser]
)"),
              ElementsAre("t.yaml:6:28: listeners.api.tokens[0].roles[1]: unknown value "
                          "'superuser'; expected admin|operator|submitter|connector|reader"));
}

TEST(LoaderErrors, TokenNeedsExactlyOneOfSecretAndSecretFile) {
  EXPECT_THAT(diagnose(R"(listeners:
  api:
    tokens:
      - name: a
        roles: [reader]
      - name: b
        secret: x
        secret_file: ./b-token
        roles: [reader]
)"),
              ElementsAre("t.yaml:4:9: listeners.api.tokens[0]: needs a secret or a secret_file",
                          "t.yaml:6:9: listeners.api.tokens[1]: set either secret or "
                          "secret_file, not both"));
}

TEST(LoaderErrors, RequiredKeyReportedAtItsMapping) {
  EXPECT_THAT(diagnose(R"(relays:
  backup:
    port: 25
)"),
              ElementsAre("t.yaml:3:5: relays.backup.host: is required"));
}

TEST(LoaderErrors, RelayNamesAreRestricted) {
  EXPECT_THAT(diagnose("relays:\n  \"bad name\": {host: h}\n"),
              ElementsAre("t.yaml:2:3: relays.bad name: relay names hold letters, digits, '-' "
                          "and '_' (at most 64)"));
}

TEST(LoaderErrors, ManyProblemsAreCappedWithACount) {
  std::string yaml = "tenants:\n";
  for (int i = 0; i < 1200; ++i) {
    yaml += "  - {id: t" + std::to_string(i) + ", fallback: [nope]}\n";
  }
  const auto d = diagnose(yaml);
  ASSERT_EQ(d.size(), 1001U);
  EXPECT_EQ(d.back(), "t.yaml: 200 more problems not shown");
}

TEST(LoaderErrors, YamlSyntaxErrorHasAPosition) {
  const auto d = diagnose("node:\n  id: [gw-1\nlog: {}\n");
  ASSERT_EQ(d.size(), 1U);
  EXPECT_EQ(d[0], "t.yaml:3:4: invalid YAML: end of sequence flow not found");
}

TEST(LoaderErrors, UnquotedEnvReferenceInsideFlowMappingGetsAHint) {
  const auto d = diagnose(R"(relays:
  r: {host: h, auth: {username: u, password: ${RELAY_PASSWORD}}}
)");
  ASSERT_EQ(d.size(), 1U);
  EXPECT_TRUE(d[0].starts_with("t.yaml:2:")) << d[0];
  EXPECT_NE(d[0].find("invalid YAML"), std::string::npos) << d[0];
  EXPECT_NE(d[0].find("quote \"${...}\" values"), std::string::npos) << d[0];
}

TEST(LoaderErrors, SecondDocumentRefused) {
  EXPECT_THAT(diagnose("log: {}\n---\nnode: {}\n"),
              ElementsAre("t.yaml:3:1: only one YAML document is allowed"));
}

TEST(LoaderErrors, RootMustBeAMapping) {
  EXPECT_THAT(diagnose("- a\n- b\n"),
              ElementsAre("t.yaml:1:1: expected a mapping (key: value), got a list"));
}

TEST(LoaderErrors, CollectsEveryErrorSortedByPosition) {
  // Parse errors and validate() errors, from several sections, all in one pass.
  const auto d = diagnose(R"(tenants:
  - id: acme
    fallback: [nowhere]
log:
  level: loud
listeners:
  smtp:
    max_recipients: -1
  api:
    tokens:
      - name: x
        secret: ${NOT_SET}
        roles: [reader]
queue:
  retry_initial: 2h
  retry_max: 1h
)");
  EXPECT_THAT(
      d, ElementsAre("t.yaml:3:16: tenants[0].fallback[0]: names no relay under relays: "
                     "('nowhere')",
                     "t.yaml:5:10: log.level: unknown value 'loud'; expected "
                     "trace|debug|info|warn|error",
                     "t.yaml:8:21: listeners.smtp.max_recipients: must be between 1 and 100000",
                     "t.yaml:12:17: listeners.api.tokens[0].secret: environment variable NOT_SET "
                     "is not set",
                     "t.yaml:16:14: queue.retry_max: must be at least retry_initial (2h)"));
}

TEST(LoaderErrors, LoginRetryMaxBelowInitial) {
  const auto d = diagnose("microsoft365:\n  login_retry_initial: 10m\n  login_retry_max: 1m\n");
  EXPECT_THAT(d, ElementsAre("t.yaml:3:20: microsoft365.login_retry_max: must be at least "
                             "login_retry_initial (10m)"));
}

TEST(LoaderErrors, ErrorValueJoinsEveryDiagnostic) {
  auto r = loadString("log: {level: loud, format: xml}\n", "inline.yaml");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, "config.invalid");
  EXPECT_EQ(r.error().message,
            "inline.yaml:1:14: log.level: unknown value 'loud'; expected "
            "trace|debug|info|warn|error\n"
            "inline.yaml:1:28: log.format: unknown value 'xml'; expected text|json");
}

TEST(LoaderErrors, UnreadableFile) {
  auto r = loadFile("/nonexistent/mailgate.yaml");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, "config.read");
  EXPECT_EQ(r.error().message,
            "/nonexistent/mailgate.yaml: cannot read: No such file or directory");
  const auto d = checkFile("/nonexistent/mailgate.yaml");
  ASSERT_EQ(d.size(), 1U);
  EXPECT_EQ(d[0].line, 0);
}

TEST(LoaderErrors, FileDiagnosticsNameTheFile) {
  testing::TempDir dir;
  const std::string path = dir.write("gw.yaml", "log:\n  format: xml\n");
  const auto d = checkFile(path);
  ASSERT_EQ(d.size(), 1U);
  EXPECT_EQ(d[0].str(), path + ":2:11: log.format: unknown value 'xml'; expected text|json");
}

} // namespace
} // namespace mailgate::config

// What a valid configuration loads into: defaults, overlays, file-relative paths.
#include "config/loader.h"
#include "test_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace mailgate::config {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

Config mustLoad(std::string_view yaml, const LoadOptions& options = testing::fakeEnv({})) {
  auto r = loadString(yaml, "t.yaml", options);
  EXPECT_TRUE(r.has_value()) << (r.has_value() ? "" : r.error().message);
  return r.value_or(Config());
}

TEST(Loader, EmptyFileGivesDocumentedDefaults) {
  const Config c = mustLoad("");
  EXPECT_FALSE(c.node.id.empty());
  EXPECT_EQ(c.node.data_dir, "./var");
  EXPECT_EQ(c.log.level, LogLevel::kInfo);
  EXPECT_EQ(c.log.format, LogFormat::kText);
  const SmtpListener& s = c.listeners.smtp;
  EXPECT_EQ(s.address.str(), "127.0.0.1:2525");
  EXPECT_FALSE(s.tls.has_value());
  EXPECT_FALSE(s.require_tls);
  EXPECT_EQ(s.max_message_bytes, 36700160U);
  EXPECT_EQ(s.max_recipients, 1000U);
  EXPECT_EQ(s.max_connections, 10000U);
  EXPECT_TRUE(s.trusted_networks.empty());
  EXPECT_EQ(s.idle_timeout, minutes(5));
  EXPECT_EQ(s.command_timeout, minutes(1));
  EXPECT_EQ(s.data_timeout, minutes(10));
  EXPECT_EQ(s.max_line_length, 4096U);
  EXPECT_EQ(s.max_auth_failures, 3U);
  EXPECT_EQ(c.listeners.api.address.str(), "127.0.0.1:8025");
  EXPECT_TRUE(c.listeners.api.tokens.empty());
  EXPECT_EQ(c.storage.backend, StorageBackend::kSqlite);
  EXPECT_TRUE(c.egress.bind_address.empty());
  const Microsoft365& m = c.microsoft365;
  EXPECT_EQ(m.smtp.host, "smtp.office365.com");
  EXPECT_EQ(m.smtp.port, 587);
  EXPECT_EQ(m.smtp.tls, TlsMode::kStarttls);
  EXPECT_EQ(m.imap.host, "outlook.office365.com");
  EXPECT_EQ(m.imap.port, 993);
  EXPECT_EQ(m.imap.tls, TlsMode::kImplicit);
  EXPECT_EQ(m.limits.recipients_per_day, 10000U);
  EXPECT_EQ(m.limits.messages_per_minute, 30U);
  EXPECT_EQ(m.limits.recipients_per_message, 500U);
  EXPECT_EQ(m.limits.max_connections, 3U);
  EXPECT_EQ(m.limits.window, seconds(86400));
  EXPECT_EQ(m.login_retry_initial, minutes(1));
  EXPECT_EQ(m.login_retry_max, hours(1));
  EXPECT_EQ(c.queue.retry_initial, minutes(5));
  EXPECT_EQ(c.queue.retry_max, hours(1));
  EXPECT_EQ(c.queue.lifetime, hours(120));
  EXPECT_EQ(c.queue.messages_per_connection, 100U);
  EXPECT_EQ(c.queue.commit_batch_max, 512U);
}

TEST(Loader, ReadsLoginRetryDurations) {
  const Config c = mustLoad("microsoft365: {login_retry_initial: 2s, login_retry_max: 30m}\n");
  EXPECT_EQ(c.microsoft365.login_retry_initial, seconds(2));
  EXPECT_EQ(c.microsoft365.login_retry_max, minutes(30));
}

TEST(Loader, ExplicitNullsKeepDefaults) {
  const Config c = mustLoad("node:\nlog: ~\nlisteners:\n  smtp:\n    address:\n");
  EXPECT_EQ(c.listeners.smtp.address.str(), "127.0.0.1:2525");
}

TEST(Loader, ReadsScalarsOfEveryType) {
  const Config c = mustLoad(R"(node: {id: gw-7, data_dir: /srv/mailgate}
log: {level: debug, format: json}
listeners:
  smtp:
    address: "[::1]:0"
    max_message_bytes: 1048576
    trusted_networks: [10.0.0.0/8, "fd00::/8"]
    trusted_as: crm
    idle_timeout: 90s
    command_timeout: 1m30s
    data_timeout: 1h
    max_line_length: 1000
    max_auth_failures: 5
  api:
    address: 127.0.0.1:0
    tokens: [{name: crm, secret: s3cret, roles: [submitter, reader], tenants: [acme]}]
egress: {bind_address: "::"}
tenants: [{id: acme}]
queue: {retry_initial: 30s, retry_max: 2h, lifetime: 1d, messages_per_connection: 10,
        commit_batch_max: 64}
)");
  EXPECT_EQ(c.node.id, "gw-7");
  EXPECT_EQ(c.node.data_dir, "/srv/mailgate");
  EXPECT_EQ(c.log.level, LogLevel::kDebug);
  EXPECT_EQ(c.log.format, LogFormat::kJson);
  const SmtpListener& s = c.listeners.smtp;
  EXPECT_EQ(s.address.host, "::1");
  EXPECT_EQ(s.address.port, 0);
  EXPECT_EQ(s.max_message_bytes, 1048576U);
  ASSERT_EQ(s.trusted_networks.size(), 2U);
  EXPECT_TRUE(s.trusted_networks[0].contains("10.9.8.7"));
  EXPECT_TRUE(s.trusted_networks[1].contains("fd12::1"));
  EXPECT_EQ(s.idle_timeout, seconds(90));
  EXPECT_EQ(s.command_timeout, seconds(90));
  EXPECT_EQ(s.data_timeout, hours(1));
  EXPECT_EQ(s.max_line_length, 1000U);
  EXPECT_EQ(s.max_auth_failures, 5U);
  ASSERT_EQ(c.listeners.api.tokens.size(), 1U);
  const ApiToken& t = c.listeners.api.tokens[0];
  EXPECT_EQ(t.secret.reveal(), "s3cret");
  EXPECT_TRUE(t.hasRole(Role::kSubmitter));
  EXPECT_FALSE(t.hasRole(Role::kAdmin));
  EXPECT_FALSE(t.allTenants());
  EXPECT_EQ(c.egress.bind_address, "::");
  EXPECT_EQ(c.queue.retry_initial, seconds(30));
  EXPECT_EQ(c.queue.lifetime, hours(24));
  EXPECT_EQ(c.queue.messages_per_connection, 10U);
  EXPECT_EQ(c.queue.commit_batch_max, 64U);
}

TEST(Loader, TokenTenantsDefaultToEvery) {
  const Config c = mustLoad("listeners: {api: {tokens: [{name: a, secret: x, roles: [reader]}]}}");
  EXPECT_TRUE(c.listeners.api.tokens.at(0).allTenants());
}

TEST(Loader, RequireTlsFollowsTlsUnlessWritten) {
  testing::TempDir dir;
  dir.write("tls/cert.pem", "cert");
  dir.write("tls/key.pem", "key");
  const auto options = testing::fakeEnv({}, dir.path().string());
  const Config with =
      mustLoad("listeners: {smtp: {tls: {cert: tls/cert.pem, key: ./tls/key.pem}}}", options);
  ASSERT_TRUE(with.listeners.smtp.tls.has_value());
  EXPECT_TRUE(with.listeners.smtp.require_tls);
  EXPECT_EQ(with.listeners.smtp.tls->cert, (dir.path() / "tls/cert.pem").string());
  EXPECT_EQ(with.listeners.smtp.tls->key, (dir.path() / "tls/key.pem").string());
  const Config optional = mustLoad(
      "listeners: {smtp: {tls: {cert: tls/cert.pem, key: tls/key.pem}, require_tls: false}}",
      options);
  EXPECT_FALSE(optional.listeners.smtp.require_tls);
}

TEST(Loader, MissingTlsFileIsReported) {
  testing::TempDir dir;
  const auto d = testing::diagnose("listeners:\n  smtp:\n    tls: {cert: a.pem, key: b.pem}\n",
                                   testing::fakeEnv({}, dir.path().string()));
  ASSERT_EQ(d.size(), 2U);
  EXPECT_EQ(d[0], "t.yaml:3:17: listeners.smtp.tls.cert: cannot read " +
                      (dir.path() / "a.pem").string() + ": No such file or directory");
}

TEST(Loader, RelayDefaultsAndPortFollowingTls) {
  const Config c = mustLoad(R"(relays:
  plain: {host: 127.0.0.1, tls: none}
  smtps: {host: relay.example, tls: implicit}
  submission: {host: relay.example}
  explicit:
    host: relay.example
    port: 2525
    tls: implicit
    auth: {username: u, password: p}
    pins: ["AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"]
    limits: {messages_per_minute: 100, recipients_per_message: 50, max_connections: 4}
)");
  EXPECT_EQ(c.findRelay("plain")->server.port, 25);
  EXPECT_EQ(c.findRelay("smtps")->server.port, 465);
  const Relay* sub = c.findRelay("submission");
  EXPECT_EQ(sub->server.port, 587);
  EXPECT_EQ(sub->server.tls, TlsMode::kStarttls);
  EXPECT_FALSE(sub->limits.messages_per_minute.has_value());
  EXPECT_EQ(sub->limits.max_connections, 10U);
  const Relay* ex = c.findRelay("explicit");
  EXPECT_EQ(ex->name, "explicit");
  EXPECT_EQ(ex->server.port, 2525);
  ASSERT_TRUE(ex->auth.has_value());
  EXPECT_EQ(ex->auth->password.reveal(), "p");
  ASSERT_EQ(ex->server.pins.size(), 1U);
  EXPECT_EQ(ex->server.pins[0], "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
  EXPECT_EQ(ex->limits.messages_per_minute, 100U);
  EXPECT_EQ(ex->limits.recipients_per_message, 50U);
  EXPECT_FALSE(ex->limits.recipients_per_day.has_value());
  EXPECT_EQ(ex->limits.max_connections, 4U);
  EXPECT_EQ(c.findRelay("nope"), nullptr);
}

TEST(Loader, BadPinReported) {
  EXPECT_THAT(testing::diagnose("relays:\n  r:\n    host: h\n    pins: [abc]\n"),
              ::testing::ElementsAre("t.yaml:4:12: relays.r.pins[0]: expected the SHA-256 of the "
                                     "server's public key as 64 hex digits"));
}

TEST(Loader, TenantLimitsOverlayMicrosoft365Limits) {
  const Config c = mustLoad(R"(microsoft365:
  limits: {messages_per_minute: 20, window_seconds: 60}
tenants:
  - id: acme
    limits: {recipients_per_day: 2000}
  - id: beta
)");
  const Tenant* acme = c.findTenant("acme");
  EXPECT_EQ(acme->limits.recipients_per_day, 2000U);
  EXPECT_EQ(acme->limits.messages_per_minute, 20U);
  EXPECT_EQ(acme->limits.window, seconds(60));
  EXPECT_EQ(acme->limits.recipients_per_message, 500U);
  EXPECT_EQ(c.findTenant("beta")->limits.recipients_per_day, 10000U);
  EXPECT_EQ(acme->priority_reserve_percent, 10U);
  EXPECT_EQ(acme->on_disconnect, OnDisconnect::kHold);
}

TEST(Loader, MailboxOverridesMergeOverMicrosoft365) {
  const Config c = mustLoad(R"(microsoft365:
  smtp: {host: 127.0.0.1, port: 10587, allow_self_signed: true}
tenants:
  - id: acme
    mailboxes:
      - address: rep1@acme.example
        auth: {method: app_password, password: pw}
        imap: {host: 127.0.0.1, tls: starttls, pool: {max_sessions: 5}, sent_folder: Gesendet}
      - address: rep2@acme.example
        access: custom
        smtp: {host: mail.acme.example}
        imap: {host: mail.acme.example, port: 1993}
        sync: none
)");
  const Tenant& t = c.tenants.at(0);
  const Mailbox& rep1 = t.mailboxes.at(0);
  EXPECT_EQ(rep1.access, Access::kImap);
  EXPECT_EQ(rep1.smtp.host, "127.0.0.1");
  EXPECT_EQ(rep1.smtp.port, 10587);
  EXPECT_TRUE(rep1.smtp.allow_self_signed);
  EXPECT_EQ(rep1.imap.host, "127.0.0.1");
  EXPECT_EQ(rep1.imap.tls, TlsMode::kStarttls);
  EXPECT_EQ(rep1.imap.port, 143); // tls changed, port not written: the usual port for it
  EXPECT_EQ(rep1.imap_max_sessions, 5U);
  EXPECT_EQ(rep1.imap_sent_folder, "Gesendet");
  EXPECT_EQ(rep1.sync, SyncMode::kTwoWay);
  ASSERT_TRUE(rep1.auth.has_value());
  EXPECT_EQ(rep1.auth->password->reveal(), "pw");
  const Mailbox& rep2 = t.mailboxes.at(1);
  EXPECT_EQ(rep2.access, Access::kCustom);
  EXPECT_FALSE(rep2.smtp.allow_self_signed); // custom inherits nothing from microsoft365
  EXPECT_EQ(rep2.smtp.port, 587);
  EXPECT_EQ(rep2.imap.port, 1993);
  EXPECT_EQ(rep2.imap.tls, TlsMode::kImplicit);
  EXPECT_EQ(rep2.imap_max_sessions, 3U);
  EXPECT_EQ(rep2.imap_sent_folder, ""); // none configured
  EXPECT_EQ(rep2.sync, SyncMode::kNone);
  EXPECT_FALSE(rep2.auth.has_value());
}

TEST(Loader, ImapSessionCapsOfMailboxesAndTenants) {
  const Config c = mustLoad(R"(tenants:
  - id: acme
    imap: {max_sessions: 40}
    mailboxes:
      - address: rep1@acme.example
      - address: rep2@acme.example
        imap: {pool: {max_sessions: 16}}
      - address: rep3@acme.example
        imap: {pool: {max_sessions: 1}}
  - id: beta
    mailboxes:
      - address: rep@beta.example
  - id: gamma
    imap: {max_sessions: 100000}
  - id: delta
    imap: {}
)");
  const Tenant* acme = c.findTenant("acme");
  ASSERT_NE(acme, nullptr);
  EXPECT_EQ(acme->imap_max_sessions, std::optional<std::uint32_t>(40));
  EXPECT_EQ(acme->mailboxes.at(0).imap_max_sessions, 3U); // the default
  EXPECT_EQ(acme->mailboxes.at(1).imap_max_sessions, 16U);
  EXPECT_EQ(acme->mailboxes.at(2).imap_max_sessions, 1U);
  const Tenant* beta = c.findTenant("beta");
  EXPECT_FALSE(beta->imap_max_sessions.has_value()); // unset: no tenant-wide cap
  EXPECT_EQ(beta->mailboxes.at(0).imap_max_sessions, 3U);
  EXPECT_EQ(c.findTenant("gamma")->imap_max_sessions, std::optional<std::uint32_t>(100000));
  EXPECT_FALSE(c.findTenant("delta")->imap_max_sessions.has_value());
  EXPECT_EQ(c.source.find("tenants[0].imap.max_sessions").line, 3);
}

TEST(Loader, GraphMailboxSyncsOneWayByDefault) {
  const Config c = mustLoad(R"(tenants:
  - id: acme
    oauth: {tenant_id: acme.example, client_id: app, client_secret: cs}
    mailboxes:
      - address: rep1@acme.example
        access: graph
        auth: {method: oauth2, refresh_token: rt}
)");
  const Mailbox& mb = c.tenants.at(0).mailboxes.at(0);
  EXPECT_EQ(mb.sync, SyncMode::kOneWay);
  EXPECT_EQ(mb.auth->refresh_token->reveal(), "rt");
  EXPECT_EQ(c.tenants.at(0).oauth->client_secret.reveal(), "cs");
}

TEST(Loader, RecordsPositionsOfKeys) {
  const Config c = mustLoad("log:\n  level: warn\ntenants:\n  - id: acme\n");
  EXPECT_EQ(c.source.file(), "t.yaml");
  EXPECT_EQ(c.source.find("log.level").line, 2);
  EXPECT_EQ(c.source.find("log.level").column, 10);
  EXPECT_EQ(c.source.find("tenants[0].id").line, 4);
  EXPECT_EQ(c.source.find("tenants[0].id").column, 9);
  // Keys not written fall back to their nearest written ancestor.
  EXPECT_EQ(c.source.find("tenants[0].fallback").line, 4);
  EXPECT_EQ(c.source.find("queue.lifetime").line, 0);
}

TEST(Loader, EnvExpansionWorksInAnyString) {
  const Config c = mustLoad("node: {id: \"${HOST}-gw\", data_dir: \"${DIR}/x\"}\n",
                            testing::fakeEnv({{"HOST", "h1"}, {"DIR", "/srv"}}));
  EXPECT_EQ(c.node.id, "h1-gw");
  EXPECT_EQ(c.node.data_dir, "/srv/x");
}

TEST(Loader, RedisBackend) {
  const Config c = mustLoad(
      "storage: {backend: redis, redis: {url: \"redis://:${REDIS_PW}@127.0.0.1:6379/0\"}}\n",
      testing::fakeEnv({{"REDIS_PW", "pw"}}));
  EXPECT_EQ(c.storage.backend, StorageBackend::kRedis);
  ASSERT_TRUE(c.storage.redis_url.has_value());
  EXPECT_EQ(c.storage.redis_url->reveal(), "redis://:pw@127.0.0.1:6379/0");
}

} // namespace
} // namespace mailgate::config

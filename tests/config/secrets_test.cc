// Secret references: ${ENV} (whole or embedded), {file: PATH}, secret_file; and that no
// diagnostic ever carries a secret's value.
#include "config/loader.h"
#include "test_util.h"

#include <cstdlib>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace mailgate::config {
namespace {

using ::testing::ElementsAre;
using testing::fakeEnv;
using testing::TempDir;

constexpr const char* kToken = R"(listeners:
  api:
    tokens:
      - name: crm
        roles: [submitter]
)";

std::string tokenWith(const std::string& secretLine) {
  return std::string(kToken) + "        " + secretLine + "\n";
}

Result<Config> load(const std::string& yaml, const LoadOptions& options) {
  return loadString(yaml, "t.yaml", options);
}

TEST(Secrets, PlainValue) {
  auto c = load(tokenWith("secret: plain-value"), fakeEnv({}));
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->listeners.api.tokens.at(0).secret.reveal(), "plain-value");
}

TEST(Secrets, WholeValueFromEnvironment) {
  auto c = load(tokenWith("secret: ${CRM_TOKEN}"), fakeEnv({{"CRM_TOKEN", "t0k3n"}}));
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->listeners.api.tokens.at(0).secret.reveal(), "t0k3n");
}

TEST(Secrets, EmbeddedReferences) {
  auto c = load(tokenWith("secret: \"pre-${A}-${B}-post\""), fakeEnv({{"A", "1"}, {"B", "2"}}));
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->listeners.api.tokens.at(0).secret.reveal(), "pre-1-2-post");
}

TEST(Secrets, DollarDollarBraceIsALiteral) {
  auto c = load(tokenWith("secret: \"a$${B}c$d\""), fakeEnv({}));
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->listeners.api.tokens.at(0).secret.reveal(), "a${B}c$d");
}

TEST(Secrets, RealProcessEnvironmentIsTheDefault) {
  ::setenv("MAILGATE_CONFIG_TEST_SECRET", "from-env", 1);
  auto c = loadString(tokenWith("secret: ${MAILGATE_CONFIG_TEST_SECRET}"));
  ::unsetenv("MAILGATE_CONFIG_TEST_SECRET");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->listeners.api.tokens.at(0).secret.reveal(), "from-env");
}

TEST(Secrets, MissingVariableReportedAtItsPosition) {
  EXPECT_THAT(testing::diagnose(tokenWith("secret: \"x${MISSING}\"")),
              ElementsAre("t.yaml:6:17: listeners.api.tokens[0].secret: environment variable "
                          "MISSING is not set"));
}

TEST(Secrets, MalformedReferences) {
  EXPECT_THAT(testing::diagnose(tokenWith("secret: \"${UNTERMINATED\"")),
              ElementsAre("t.yaml:6:17: listeners.api.tokens[0].secret: unterminated ${ (write "
                          "$${ for a literal ${)"));
  EXPECT_THAT(testing::diagnose(tokenWith("secret: \"${not a name}\"")),
              ElementsAre("t.yaml:6:17: listeners.api.tokens[0].secret: ${...} must hold an "
                          "environment variable name (letters, digits, _)"));
}

TEST(Secrets, EmptySecretRefused) {
  EXPECT_THAT(testing::diagnose(tokenWith("secret: ${EMPTY}"), fakeEnv({{"EMPTY", ""}})),
              ElementsAre("t.yaml:6:17: listeners.api.tokens[0].secret: secret is empty"));
}

TEST(Secrets, FileRelativeToBaseWithTrailingNewlinesStripped) {
  TempDir dir;
  dir.write("secrets/crm", "file-secret\r\n\n");
  auto c = load(tokenWith("secret: {file: ./secrets/crm}"), fakeEnv({}, dir.path().string()));
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->listeners.api.tokens.at(0).secret.reveal(), "file-secret");
}

TEST(Secrets, InnerNewlinesAndSpacesAreKept) {
  TempDir dir;
  dir.write("k", " a\nb \n");
  auto c = load(tokenWith("secret: {file: k}"), fakeEnv({}, dir.path().string()));
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->listeners.api.tokens.at(0).secret.reveal(), " a\nb ");
}

TEST(Secrets, SecretFileKey) {
  TempDir dir;
  dir.write("crm-token", "via-secret-file\n");
  auto c = load(tokenWith("secret_file: crm-token"), fakeEnv({}, dir.path().string()));
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->listeners.api.tokens.at(0).secret.reveal(), "via-secret-file");
}

TEST(Secrets, FileOfLoadFileResolvesAgainstTheConfigFolder) {
  TempDir dir;
  dir.write("conf/secrets/t", "s1\n");
  const std::string path = dir.write("conf/gw.yaml", tokenWith("secret: {file: secrets/t}"));
  auto c = loadFile(path);
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->listeners.api.tokens.at(0).secret.reveal(), "s1");
}

TEST(Secrets, FilePathMayUseEnvironment) {
  TempDir dir;
  dir.write("t", "s2");
  auto c = load(tokenWith("secret: {file: \"${DIR}/t\"}"), fakeEnv({{"DIR", dir.path().string()}}));
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->listeners.api.tokens.at(0).secret.reveal(), "s2");
}

TEST(Secrets, MissingFileReportedAtThePath) {
  TempDir dir;
  const auto base = dir.path().string();
  EXPECT_THAT(testing::diagnose(tokenWith("secret: {file: nope}"), fakeEnv({}, base)),
              ElementsAre("t.yaml:6:24: listeners.api.tokens[0].secret.file: cannot read secret "
                          "file " +
                          (dir.path() / "nope").string() + ": No such file or directory"));
  EXPECT_THAT(testing::diagnose(tokenWith("secret_file: nope"), fakeEnv({}, base)),
              ElementsAre("t.yaml:6:22: listeners.api.tokens[0].secret_file: cannot read secret "
                          "file " +
                          (dir.path() / "nope").string() + ": No such file or directory"));
}

TEST(Secrets, UnreadableAndEmptyFiles) {
  TempDir dir;
  dir.write("empty", "\n");
  std::filesystem::create_directories(dir.path() / "folder");
  const auto base = dir.path().string();
  EXPECT_THAT(testing::diagnose(tokenWith("secret: {file: empty}"), fakeEnv({}, base)),
              ElementsAre("t.yaml:6:24: listeners.api.tokens[0].secret.file: secret file " +
                          (dir.path() / "empty").string() + " is empty"));
  const auto d = testing::diagnose(tokenWith("secret: {file: folder}"), fakeEnv({}, base));
  ASSERT_EQ(d.size(), 1U);
  EXPECT_TRUE(d[0].starts_with("t.yaml:6:24: listeners.api.tokens[0].secret.file: cannot read "
                               "secret file "))
      << d[0];
}

TEST(Secrets, OversizedFileRefused) {
  TempDir dir;
  dir.write("big", std::string(70000, 'x'));
  const auto d =
      testing::diagnose(tokenWith("secret: {file: big}"), fakeEnv({}, dir.path().string()));
  ASSERT_EQ(d.size(), 1U);
  EXPECT_NE(d[0].find("is larger than 65536 bytes"), std::string::npos) << d[0];
  EXPECT_EQ(d[0].find("xxxx"), std::string::npos);
}

TEST(Secrets, WrongShapeNamesTheAcceptedForms) {
  EXPECT_THAT(testing::diagnose(tokenWith("secret: [hunter2]")),
              ElementsAre("t.yaml:6:17: listeners.api.tokens[0].secret: expected a string, "
                          "\"${ENV}\" or {file: PATH}, got a list"));
  EXPECT_THAT(testing::diagnose(tokenWith("secret: {path: x}")),
              ElementsAre("t.yaml:6:17: listeners.api.tokens[0].secret.file: is required",
                          "t.yaml:6:18: listeners.api.tokens[0].secret.path: unknown key "
                          "(expected one of: file)"));
}

TEST(Secrets, EverySecretFieldAcceptsReferences) {
  TempDir dir;
  dir.write("rt", "refresh\n");
  const auto options =
      fakeEnv({{"RELAY_PW", "relay"}, {"HOOK", "hook"}, {"CS", "client"}, {"APP_PW", "app"}},
              dir.path().string());
  auto c = load(R"(relays:
  r: {host: h, auth: {username: u, password: "${RELAY_PW}"}}
webhooks:
  - {url: "https://hooks.example/x", secret: "${HOOK}"}
tenants:
  - id: acme
    oauth: {tenant_id: t, client_id: c, client_secret: "${CS}"}
    mailboxes:
      - address: a@acme.example
        auth: {method: app_password, password: "${APP_PW}"}
      - address: b@acme.example
        auth: {method: oauth2, refresh_token: {file: rt}}
)",
                options);
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->findRelay("r")->auth->password.reveal(), "relay");
  EXPECT_EQ(c->webhooks.at(0).secret.reveal(), "hook");
  EXPECT_EQ(c->tenants.at(0).oauth->client_secret.reveal(), "client");
  EXPECT_EQ(c->tenants.at(0).mailboxes.at(0).auth->password->reveal(), "app");
  EXPECT_EQ(c->tenants.at(0).mailboxes.at(1).auth->refresh_token->reveal(), "refresh");
}

// A configuration full of mistakes around secrets that do resolve: no diagnostic, and not the
// joined error message, may contain any of their values.
TEST(Secrets, NoDiagnosticContainsASecretValue) {
  TempDir dir;
  dir.write("f", "FILESECRET-4\n");
  const auto options = fakeEnv({{"S1", "ENVSECRET-1"}, {"S2", "ENVSECRET-2"}}, dir.path().string());
  const std::string yaml = R"(listeners:
  api:
    tokens:
      - {name: a, secret: "${S1}", roles: [reader]}
      - {name: b, secret: "${S1}", roles: [wizard]}
      - {name: c, secret: "INLINESECRET-3", secret_file: f, roles: []}
      - {name: d, secret: {file: f}, roles: [reader], tenants: [ghost]}
storage: {backend: redis, redis: {url: "ftp://u:${S2}@h"}}
relays:
  r: {host: h, tls: none, allow_self_signed: true, auth: {username: "", password: "${S2}"}}
tenants:
  - id: acme
    mailboxes:
      - address: a@acme.example
        access: graph
        auth: {method: app_password, password: "${S2}", refresh_token: {file: f}}
)";
  const auto diagnostics = checkString(yaml, "t.yaml", options);
  EXPECT_GE(diagnostics.size(), 6U);
  auto r = loadString(yaml, "t.yaml", options);
  ASSERT_FALSE(r.has_value());
  for (const char* secret : {"ENVSECRET-1", "ENVSECRET-2", "INLINESECRET-3", "FILESECRET-4"}) {
    EXPECT_EQ(r.error().describe().find(secret), std::string::npos) << secret;
    for (const Diagnostic& d : diagnostics) {
      EXPECT_EQ(d.str().find(secret), std::string::npos) << d.str();
    }
  }
}

} // namespace
} // namespace mailgate::config

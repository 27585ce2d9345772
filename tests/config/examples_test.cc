// The contract file and the project's own example files load, with the environment and secret
// files they reference provided by the test.
#include "config/loader.h"
#include "test_util.h"

#include <cstdlib>
#include <gtest/gtest.h>

namespace mailgate::config {
namespace {

using testing::readAll;
using testing::TempDir;

const std::string kSourceDir = MAILGATE_SOURCE_DIR;
const std::string kDataDir = MAILGATE_TEST_DATA_DIR;

// Sets environment variables for one test and removes them afterwards.
class ScopedEnv {
public:
  explicit ScopedEnv(std::initializer_list<std::pair<const char*, const char*>> vars) {
    for (const auto& [name, value] : vars) {
      ::setenv(name, value, 1);
      names_.emplace_back(name);
    }
  }
  ~ScopedEnv() {
    for (const auto& name : names_) {
      ::unsetenv(name.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
  std::vector<std::string> names_;
};

// Copies a configuration into a temporary folder with the files it names beside it.
std::string stage(const TempDir& dir, const std::string& source) {
  dir.write("secrets/crm-token", "crm-file-token\n");
  dir.write("secrets/dashboard-token", "dashboard-token\n");
  dir.write("secrets/rep2.refresh", "rep2-refresh\n");
  dir.write("tls/server.pem", "placeholder certificate\n");
  dir.write("tls/server.key", "placeholder key\n");
  return dir.write("mailgate.yaml", readAll(source));
}

TEST(Examples, ContractFileLoads) {
  const ScopedEnv env{{"MAILGATE_OPS_TOKEN", "ops-token"},
                      {"MAILGATE_WEBHOOK_SECRET", "webhook-secret"},
                      {"REP1_APP_PASSWORD", "rep1-password"}};
  TempDir dir;
  auto c = loadFile(stage(dir, kDataDir + "/mailgate.example.yaml"));
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->node.id, "gw-1");
  EXPECT_TRUE(c->listeners.smtp.require_tls);
  EXPECT_EQ(c->listeners.smtp.trusted_as, "crm");
  EXPECT_EQ(c->listeners.smtp.tls->cert, (dir.path() / "tls/server.pem").string());
  const auto& tokens = c->listeners.api.tokens;
  ASSERT_EQ(tokens.size(), 2U);
  EXPECT_EQ(tokens[0].secret.reveal(), "ops-token");
  EXPECT_TRUE(tokens[0].hasRole(Role::kAdmin));
  EXPECT_EQ(tokens[1].secret.reveal(), "crm-file-token");
  EXPECT_EQ(tokens[1].tenants, std::vector<std::string>{"acme"});
  EXPECT_EQ(c->egress.bind_address, "0.0.0.0");
  EXPECT_EQ(c->findRelay("default")->server.tls, TlsMode::kNone);
  EXPECT_EQ(c->findRelay("default")->limits.messages_per_minute, 6000U);
  EXPECT_EQ(c->webhooks.at(0).secret.reveal(), "webhook-secret");
  const Tenant* acme = c->findTenant("acme");
  ASSERT_NE(acme, nullptr);
  EXPECT_EQ(acme->fallback, std::vector<std::string>{"default"});
  EXPECT_EQ(acme->bcc_address, "acme-bcc@mailgate.local");
  const Mailbox& rep1 = acme->mailboxes.at(0);
  EXPECT_EQ(rep1.aliases, std::vector<std::string>{"sales@acme.example"});
  EXPECT_EQ(rep1.auth->password->reveal(), "rep1-password");
  EXPECT_EQ(rep1.imap_max_sessions, 3U);
  EXPECT_EQ(rep1.imap.host, "outlook.office365.com");
}

// The checked-in copy must not drift from the contract, when the contract is at hand.
TEST(Examples, ContractCopyMatchesTheContract) {
  const std::string contract = kSourceDir + "/../shared/mailgate.example.yaml";
  if (!std::filesystem::exists(contract)) {
    GTEST_SKIP() << contract << " is not present on this machine";
  }
  EXPECT_EQ(readAll(contract), readAll(kDataDir + "/mailgate.example.yaml"));
}

TEST(Examples, LocalYamlLoadsAsScriptsRunUsesIt) {
  const ScopedEnv env{{"MAILGATE_CRM_TOKEN", "local-token"}};
  auto c = loadFile(kSourceDir + "/config/examples/local.yaml");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->node.data_dir, "./var/local");
  EXPECT_EQ(c->listeners.smtp.address.str(), "127.0.0.1:2525");
  EXPECT_EQ(c->listeners.api.address.str(), "127.0.0.1:8025");
  EXPECT_FALSE(c->listeners.smtp.tls.has_value());
  EXPECT_FALSE(c->listeners.smtp.require_tls);
  EXPECT_EQ(c->storage.backend, StorageBackend::kSqlite);
  ASSERT_NE(c->findToken("crm"), nullptr);
  EXPECT_EQ(c->findToken("crm")->secret.reveal(), "local-token");
  const Relay* relay = c->findRelay("default");
  ASSERT_NE(relay, nullptr);
  EXPECT_EQ(relay->server.host, "127.0.0.1");
  EXPECT_EQ(relay->server.port, 2526);
  EXPECT_EQ(relay->server.tls, TlsMode::kNone);
  EXPECT_TRUE(c->tenants.empty());
}

TEST(Examples, LocalYamlWithoutTokenSaysWhichVariable) {
  ::unsetenv("MAILGATE_CRM_TOKEN");
  const auto d = checkFile(kSourceDir + "/config/examples/local.yaml");
  ASSERT_EQ(d.size(), 1U);
  EXPECT_NE(d[0].str().find("environment variable MAILGATE_CRM_TOKEN is not set"),
            std::string::npos);
}

TEST(Examples, FullYamlLoads) {
  const ScopedEnv env{{"MAILGATE_OPS_TOKEN", "ops"}, {"MAILGATE_WEBHOOK_SECRET", "hook"},
                      {"RELAY_PASSWORD", "relay"},   {"ACME_CLIENT_SECRET", "client"},
                      {"REP1_APP_PASSWORD", "rep1"}, {"REP3_PASSWORD", "rep3"}};
  TempDir dir;
  auto c = loadFile(stage(dir, kSourceDir + "/config/examples/full.yaml"));
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->listeners.api.tokens.size(), 3U);
  EXPECT_EQ(c->findToken("dashboard")->secret.reveal(), "dashboard-token");
  EXPECT_EQ(c->findRelay("partner")->auth->password.reveal(), "relay");
  const Tenant* acme = c->findTenant("acme");
  ASSERT_NE(acme, nullptr);
  EXPECT_EQ(acme->limits.recipients_per_day, 5000U);
  EXPECT_EQ(acme->limits.messages_per_minute, 30U);
  ASSERT_EQ(acme->mailboxes.size(), 3U);
  EXPECT_EQ(acme->mailboxes[1].access, Access::kGraph);
  EXPECT_EQ(acme->mailboxes[1].auth->refresh_token->reveal(), "rep2-refresh");
  EXPECT_EQ(acme->mailboxes[2].imap.port, 993);
  EXPECT_TRUE(acme->mailboxes[2].imap.allow_self_signed);
  EXPECT_EQ(acme->imap_max_sessions, std::optional<std::uint32_t>(50));
  EXPECT_EQ(acme->mailboxes[0].imap_max_sessions, 3U);
  EXPECT_EQ(acme->mailboxes[2].imap_max_sessions, 3U); // the default
}

} // namespace
} // namespace mailgate::config

// SubmissionServer::reconfigure: a listener on 127.0.0.1, the real SQLite store, and a small
// blocking SMTP client on the test thread. The previous configuration is freed as soon as
// reconfigure() returns, so a session that kept a pointer into it shows up under ASan.
#include "relay/submission_server.h"
#include "tests/relay/delivery_test_support.h"
#include "tests/relay/smtp_test_client.h"

#include <gtest/gtest.h>

namespace mailgate::relay::test {
namespace {

constexpr const char* kRep = "rep1@acme.example";

config::Config serverConfig() {
  config::Config c;
  c.node.id = "gw-test";
  c.listeners.smtp.address = config::Endpoint{"127.0.0.1", 0};
  config::ApiToken crm;
  crm.name = "crm";
  crm.secret = Secret("crm-secret");
  crm.roles = {config::Role::kSubmitter};
  c.listeners.api.tokens.push_back(crm);
  config::ApiToken other;
  other.name = "other";
  other.secret = Secret("other-secret");
  other.roles = {config::Role::kSubmitter};
  c.listeners.api.tokens.push_back(other);
  config::Tenant t;
  t.id = "acme";
  config::Mailbox m;
  m.address = kRep;
  t.mailboxes.push_back(m);
  c.tenants.push_back(t);
  return c;
}

class SubmissionReloadTest : public ::testing::Test {
protected:
  void start(config::Config c) {
    initial_ = std::make_unique<config::Config>(std::move(c));
    server = loop.call([&]() -> std::unique_ptr<SubmissionServer> {
      auto s = SubmissionServer::create(loop.loop(), *initial_, store->store(),
                                        [this](QueuedMessage m) { accepted.push_back(m); });
      EXPECT_TRUE(s.has_value()) << s.error().describe();
      return s ? std::move(*s) : nullptr;
    });
    ASSERT_NE(server, nullptr);
    port = loop.call([&] { return server->port(); });
  }

  // reconfigure(next), then the previous configuration is freed at once.
  ReloadReport reload(config::Config next) {
    auto shared = std::make_shared<const config::Config>(std::move(next));
    auto r = loop.call([&] { return server->reconfigure(shared); });
    EXPECT_TRUE(r.has_value()) << r.error().describe();
    shared.reset();
    loop.call([&] { initial_.reset(); });
    return r ? *r : ReloadReport{};
  }

  size_t acceptedCount() {
    return loop.call([&] { return accepted.size(); });
  }

  void TearDown() override {
    loop.call([&] { server.reset(); });
    store->close();
    loop.stop();
  }

  LoopThread loop;
  std::unique_ptr<TestStore> store = std::make_unique<TestStore>(loop);
  std::unique_ptr<config::Config> initial_;
  std::unique_ptr<SubmissionServer> server;
  std::vector<QueuedMessage> accepted; // loop thread
  uint16_t port = 0;
};

bool mentions(const ReloadReport& r, std::string_view text) {
  return std::any_of(r.applied.begin(), r.applied.end(),
                     [&](const std::string& l) { return l.find(text) != std::string::npos; });
}

TEST_F(SubmissionReloadTest, RemovedTokenIsRefusedAtAuthAndItsIdleSessionIsClosed) {
  start(serverConfig());
  Client idle(port);
  EXPECT_TRUE(idle.greetAndAuth("crm", "crm-secret").starts_with("235"));
  Client other(port);
  EXPECT_TRUE(other.greetAndAuth("other", "other-secret").starts_with("235"));

  config::Config next = serverConfig();
  next.listeners.api.tokens.erase(next.listeners.api.tokens.begin()); // crm goes
  const ReloadReport r = reload(next);
  EXPECT_TRUE(mentions(r, "listeners.api.tokens (SMTP AUTH): removed crm"));
  EXPECT_TRUE(mentions(r, "1 session(s)"));

  // The session authenticated with the removed token is told and closed.
  const std::string bye = idle.reply();
  EXPECT_TRUE(bye.starts_with("421 4.7.0")) << bye;
  EXPECT_EQ(idle.reply(), "");
  Client again(port);
  EXPECT_TRUE(again.greetAndAuth("crm", "crm-secret").starts_with("535"));
  // The other token's session goes on.
  other.startMessage(kRep);
  EXPECT_TRUE(other.endMessage().starts_with("250")) << "other token";
  EXPECT_EQ(acceptedCount(), 1u);
}

TEST_F(SubmissionReloadTest, DirectorySeesANewAlias) {
  start(serverConfig());
  {
    Client c(port);
    EXPECT_TRUE(c.greetAndAuth("crm", "crm-secret").starts_with("235"));
    EXPECT_TRUE(c.command("MAIL FROM:<sales@acme.example>").starts_with("550")) << "no alias yet";
  }
  config::Config next = serverConfig();
  next.tenants[0].mailboxes[0].aliases = {"sales@acme.example"};
  const ReloadReport r = reload(next);
  EXPECT_TRUE(mentions(r, "sender directory: 2 address(es) of 1 tenant(s) (was 1 of 1)"));
  Client c(port);
  EXPECT_TRUE(c.greetAndAuth("crm", "crm-secret").starts_with("235"));
  c.startMessage("sales@acme.example");
  const std::string ok = c.endMessage();
  EXPECT_TRUE(ok.starts_with("250")) << ok;
  ASSERT_EQ(acceptedCount(), 1u);
  loop.call([&] {
    EXPECT_EQ(accepted[0].mailbox, kRep);
    EXPECT_EQ(accepted[0].tenant, "acme");
  });
}

// A transaction in progress while the configuration is replaced (and the old one freed) ends
// under the new one.
TEST_F(SubmissionReloadTest, TransactionInProgressEndsUnderTheNewConfiguration) {
  start(serverConfig());
  Client kept(port);
  EXPECT_TRUE(kept.greetAndAuth("crm", "crm-secret").starts_with("235"));
  Client dropped(port);
  EXPECT_TRUE(dropped.greetAndAuth("crm", "crm-secret").starts_with("235"));
  kept.startMessage(kRep);

  // The same content in a new object: nothing is refused, and nothing is reported.
  const ReloadReport same = reload(serverConfig());
  EXPECT_TRUE(same.applied.empty()) << same.applied.front();
  EXPECT_TRUE(same.restart_required.empty());
  const std::string ok = kept.endMessage();
  EXPECT_TRUE(ok.starts_with("250")) << ok;

  // The mailbox is removed while the next transaction is in its DATA.
  dropped.startMessage(kRep);
  config::Config without = serverConfig();
  config::Mailbox other;
  other.address = "rep2@acme.example";
  without.tenants[0].mailboxes = {other};
  reload(without);
  const std::string refused = dropped.endMessage();
  EXPECT_TRUE(refused.starts_with("550 5.7.1")) << refused;
  EXPECT_EQ(acceptedCount(), 1u);
}

TEST_F(SubmissionReloadTest, TokenRemovedDuringATransactionRefusesItsMessage) {
  start(serverConfig());
  Client c(port);
  EXPECT_TRUE(c.greetAndAuth("crm", "crm-secret").starts_with("235"));
  c.startMessage(kRep);
  config::Config next = serverConfig();
  next.listeners.api.tokens.erase(next.listeners.api.tokens.begin());
  reload(next);
  const std::string refused = c.endMessage();
  EXPECT_TRUE(refused.starts_with("451 4.7.0")) << refused;
  EXPECT_TRUE(c.reply().starts_with("421 4.7.0")); // then closed
  EXPECT_EQ(acceptedCount(), 0u);
}

TEST_F(SubmissionReloadTest, LimitsApplyToNewConnectionsAndAddressChangesNeedARestart) {
  start(serverConfig());
  Client before(port);
  EXPECT_TRUE(before.reply().starts_with("220"));
  config::Config next = serverConfig();
  next.listeners.smtp.max_message_bytes = 12345;
  next.listeners.smtp.address = config::Endpoint{"127.0.0.1", 1};
  const ReloadReport r = reload(next);
  EXPECT_EQ(r.restart_required, std::vector<std::string>{"listeners.smtp.address"});
  EXPECT_TRUE(mentions(r, "max_message_bytes"));
  const std::string old_ehlo = before.command("EHLO crm.example");
  EXPECT_EQ(old_ehlo.find("SIZE 12345"), std::string::npos) << old_ehlo;
  Client after(port); // still the old address: it is not applied live
  EXPECT_TRUE(after.reply().starts_with("220"));
  const std::string new_ehlo = after.command("EHLO crm.example");
  EXPECT_NE(new_ehlo.find("SIZE 12345"), std::string::npos) << new_ehlo;
}

TEST_F(SubmissionReloadTest, TenantsAddedToARelayOnlyConfigurationApplyToOpenSessions) {
  config::Config relay_only = serverConfig();
  relay_only.tenants.clear();
  start(relay_only);
  Client c(port);
  EXPECT_TRUE(c.greetAndAuth("crm", "crm-secret").starts_with("235"));
  EXPECT_TRUE(c.command("MAIL FROM:<anyone@example.org>").starts_with("250"));
  EXPECT_TRUE(c.command("RSET").starts_with("250"));
  reload(serverConfig());
  EXPECT_TRUE(c.command("MAIL FROM:<anyone@example.org>").starts_with("550"));
  c.startMessage(kRep);
  EXPECT_TRUE(c.endMessage().starts_with("250"));
  loop.call([&] {
    ASSERT_EQ(accepted.size(), 1u);
    EXPECT_EQ(accepted[0].mailbox, kRep);
  });
}

} // namespace
} // namespace mailgate::relay::test

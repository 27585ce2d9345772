// DeliveryEngine::reconfigure against scripted SMTP servers on 127.0.0.1 and the real SQLite
// store. Each test drops the previous configuration as soon as reconfigure() returns (the rule
// the daemon relies on), so a pointer kept into it shows up under ASan.
#include "relay/delivery_engine.h"
#include "tests/relay/delivery_test_support.h"

#include <gtest/gtest.h>

namespace mailgate::relay::test {
namespace {

using std::chrono::milliseconds;

constexpr const char* kRep = "rep1@acme.example";

bool mentions(const ReloadReport& r, std::string_view text) {
  return std::any_of(r.applied.begin(), r.applied.end(),
                     [&](const std::string& l) { return l.find(text) != std::string::npos; });
}

std::string joined(const ReloadReport& r) {
  std::string out;
  for (const auto& l : r.applied) {
    out += l + "\n";
  }
  return out;
}

class ReloadTest : public EngineTest {
protected:
  // create() takes a reference: the fixture owns that first configuration until the first
  // reload, then drops it.
  void startEngine(config::Config c) {
    initial_ = std::make_unique<config::Config>(std::move(c));
    createEngine(*initial_);
  }

  // reconfigure(next), then the previous configuration is freed at once.
  Result<ReloadReport> reload(config::Config next) {
    auto shared = std::make_shared<const config::Config>(std::move(next));
    auto r = loop.call([&] { return engine->reconfigure(shared); });
    if (r) {
      shared.reset();                       // the engine keeps its own reference
      loop.call([&] { initial_.reset(); }); // create()'s configuration is gone
    }
    return r;
  }

  void TearDown() override {
    loop.call([&] {
      engine.reset();
      for (auto* s : {&a, &b, &m365}) {
        s->reset();
      }
    });
    store->close();
    loop.stop();
  }

  std::unique_ptr<FakeSmtpServer> a;
  std::unique_ptr<FakeSmtpServer> b;
  std::unique_ptr<FakeSmtpServer> m365;
  std::unique_ptr<config::Config> initial_;
};

TEST_F(ReloadTest, RelayHostChangedSendsTheNextMessagesToTheNewServer) {
  a = makeServer();
  b = makeServer();
  startEngine(makeConfig(portOf(a)));
  EXPECT_EQ(store->waitFinal(submit(makeMessage({"x@example.net"}))).state, MessageState::kSent);
  ASSERT_TRUE(loop.eventually([&] { return a->active == 1; })); // an idle connection

  auto r = reload(makeConfig(portOf(b)));
  ASSERT_TRUE(r.has_value()) << r.error().describe();
  EXPECT_TRUE(mentions(*r, "relay default: server changed")) << joined(*r);
  EXPECT_TRUE(mentions(*r, "connections of default")) << joined(*r);
  EXPECT_TRUE(r->restart_required.empty());
  // The idle connection to the old server QUITs.
  ASSERT_TRUE(loop.eventually([&] { return a->quits == 1 && a->active == 0; }));

  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(store->waitFinal(submit(makeMessage({"y@example.net"}))).state, MessageState::kSent);
  }
  loop.call([&] {
    EXPECT_EQ(a->accepted.size(), 1u);
    EXPECT_EQ(b->accepted.size(), 3u);
  });
}

// The old server holds its reply to the end of data while the reload replaces it: the attempt
// finishes on its connection (which then QUITs), and the next message goes to the new server.
TEST_F(ReloadTest, AttemptInFlightFinishesOnTheOldConnection) {
  a = makeServer();
  b = makeServer();
  loop.call([&] {
    a->on_data_end = [](int, const FakeSmtpServer::Message&) {
      return std::string(FakeSmtpServer::kHold);
    };
  });
  startEngine(makeConfig(portOf(a), 1));
  const std::string held = submit(makeMessage({"x@example.net"}));
  ASSERT_TRUE(loop.eventually([&] { return a->holding; }));

  auto r = reload(makeConfig(portOf(b), 1));
  ASSERT_TRUE(r.has_value()) << r.error().describe();
  const std::string next = submit(makeMessage({"y@example.net"}));
  EXPECT_EQ(store->waitFinal(next).state, MessageState::kSent); // not behind the held one
  loop.call([&] { a->releaseHeld(); });
  QueuedMessage m = store->waitFinal(held);
  EXPECT_EQ(m.state, MessageState::kSent) << m.last_reply;
  EXPECT_EQ(m.attempts, 1);
  ASSERT_TRUE(loop.eventually([&] { return a->quits == 1 && a->active == 0; }));
  loop.call([&] {
    EXPECT_EQ(a->accepted.size(), 1u);
    ASSERT_EQ(b->accepted.size(), 1u);
    EXPECT_EQ(b->accepted[0].recipients, std::vector<std::string>{"y@example.net"});
  });
  EXPECT_TRUE(loop.eventually([&] { return engine->stats().open_connections <= 1; }));
}

// Messages waiting for a relay that cannot be reached go to the new server as soon as the reload
// names one that works; a message deferred by the upstream keeps its retry time.
TEST_F(ReloadTest, WaitingMessagesGoToTheNewServer) {
  b = makeServer();
  a = makeServer();
  loop.call([&] {
    a->on_data_end = [](int, const FakeSmtpServer::Message&) {
      return std::string("451 4.3.0 try again later");
    };
  });
  config::Config c = makeConfig(portOf(a));
  c.queue.retry_initial = std::chrono::hours(1);
  c.queue.retry_max = std::chrono::hours(1);
  config::Relay down;
  down.name = "down";
  down.server.host = "127.0.0.1";
  down.server.port = unusedPort();
  down.server.tls = config::TlsMode::kNone;
  c.relays["down"] = down;
  startEngine(c);
  const std::string deferred = submit(makeMessage({"d@example.net"}));
  std::vector<std::string> waiting;
  for (int i = 0; i < 3; ++i) {
    NewMessage m = makeMessage({"w" + std::to_string(i) + "@example.net"});
    m.route = "down";
    waiting.push_back(submit(std::move(m)));
  }
  ASSERT_TRUE(loop.eventually([&] { return engine->stats().connect_failures >= 1; }));
  ASSERT_TRUE(loop.eventually(
      [&] { return !engine->metrics().messages.empty(); })); // the deferral is recorded

  c.relays["down"].server.port = portOf(b);
  auto r = reload(c);
  ASSERT_TRUE(r.has_value()) << r.error().describe();
  EXPECT_TRUE(mentions(*r, "relay down: server changed")) << joined(*r);
  for (const auto& id : waiting) {
    EXPECT_EQ(store->waitFinal(id).state, MessageState::kSent);
  }
  loop.call([&] { EXPECT_EQ(b->accepted.size(), 3u); });
  QueuedMessage d = store->get(deferred);
  EXPECT_EQ(d.state, MessageState::kDeferred);
  EXPECT_GT(d.next_attempt_ms, wallClockMs() + 30 * 60 * 1000);
  EXPECT_EQ(loop.call([&] { return engine->stats().waiting; }), 1u);
}

TEST_F(ReloadTest, LoweredMailboxLimitIsEnforcedOnWhatWasAlreadyCounted) {
  m365 = makeServer(m365ServerOptions());
  a = makeServer();
  config::Config c = makeM365Config(portOf(m365), portOf(a));
  startEngine(c);
  EXPECT_EQ(
      store->waitFinal(submit(makeMailboxMessage(kRep, {"1@x.net", "2@x.net", "3@x.net"}))).route,
      "microsoft365");
  EXPECT_EQ(status().route.usage.used, 3u);

  c.tenants[0].limits.recipients_per_day = 3;
  c.tenants[0].priority_reserve_percent = 0;
  auto r = reload(c);
  ASSERT_TRUE(r.has_value()) << r.error().describe();
  EXPECT_TRUE(mentions(*r, "tenant acme: limits")) << joined(*r);
  const MailboxStatus s = status();
  EXPECT_EQ(s.route.usage.used, 3u); // carried over by key
  EXPECT_EQ(s.route.usage.limit, 3u);
  EXPECT_EQ(s.route.usage.remaining, 0u);

  QueuedMessage m = store->waitFinal(submit(makeMailboxMessage(kRep, {"4@x.net"})));
  EXPECT_EQ(m.state, MessageState::kSent);
  EXPECT_EQ(m.route, "default"); // the spent budget fails it over
  EXPECT_EQ(store->events("route.exhausted").size(), 1u);
  loop.call([&] {
    EXPECT_EQ(m365->accepted.size(), 1u);
    EXPECT_EQ(a->accepted.size(), 1u);
  });
}

TEST_F(ReloadTest, LoweredRelayLimitMakesMessagesWait) {
  a = makeServer();
  config::Config c = makeConfig(portOf(a));
  startEngine(c);
  EXPECT_EQ(store->waitFinal(submit(makeMessage({"1@x.net", "2@x.net"}))).state,
            MessageState::kSent);
  c.relays["default"].limits.recipients_per_day = 2;
  auto r = reload(c);
  ASSERT_TRUE(r.has_value()) << r.error().describe();
  EXPECT_TRUE(mentions(*r, "relay default: limits changed")) << joined(*r);
  const std::string id = submit(makeMessage({"3@x.net"}));
  ASSERT_TRUE(loop.eventually([&] { return engine->stats().waits >= 1; }));
  EXPECT_EQ(store->get(id).state, MessageState::kQueued); // waits for the window
  loop.call([&] { EXPECT_EQ(a->accepted.size(), 1u); });

  // Raised again: the waiting message is routed at once.
  c.relays["default"].limits.recipients_per_day = 100;
  ASSERT_TRUE(reload(c).has_value());
  EXPECT_EQ(store->waitFinal(id).state, MessageState::kSent);
}

// A mailbox held for a failing login is removed from the file: its mail stays queued, visible
// as "mailbox no longer configured". It comes back with a password that works: the login is
// tried at once and the mail goes.
TEST_F(ReloadTest, RemovedMailboxHoldsItsMailUntilItIsConfiguredAgain) {
  m365 = makeServer(m365ServerOptions(kRep, "new-password"));
  a = makeServer();
  config::Config c = makeM365Config(portOf(m365), portOf(a), kRep, "old-password");
  c.microsoft365.login_retry_initial = std::chrono::hours(1);
  startEngine(c);
  const std::string id = submit(makeMailboxMessage(kRep, {"x@example.net"}));
  ASSERT_TRUE(statusIs([](const MailboxStatus& s) {
    return s.route.state == RouteState::kDisconnected && s.waiting == 1;
  }));

  config::Config without = c;
  without.tenants[0].mailboxes.clear();
  auto removed = reload(without);
  ASSERT_TRUE(removed.has_value()) << removed.error().describe();
  EXPECT_TRUE(mentions(*removed, "mailbox rep1@acme.example removed")) << joined(*removed);
  const MailboxStatus orphan = status();
  EXPECT_FALSE(orphan.configured);
  EXPECT_EQ(orphan.route.reason, "mailbox no longer configured");
  EXPECT_EQ(orphan.route.tenant, "acme");
  EXPECT_EQ(orphan.waiting, 1u);
  const size_t listed = loop.call([&] {
    size_t n = 0;
    engine->forEachMailbox([&](const MailboxStatus& s) { n += s.configured ? 0 : 1; });
    return n;
  });
  EXPECT_EQ(listed, 1u);
  EXPECT_EQ(store->get(id).state, MessageState::kQueued);

  c.tenants[0].mailboxes[0].auth->password = Secret("new-password");
  auto back = reload(c);
  ASSERT_TRUE(back.has_value()) << back.error().describe();
  // Nothing of its ledger counted any more (the failed logins sent nothing), so it comes back as
  // a new mailbox; one whose ledger still counts is "configured again" (router_test.cc).
  EXPECT_TRUE(mentions(*back, "mailbox rep1@acme.example added")) << joined(*back);
  QueuedMessage m = store->waitFinal(id);
  EXPECT_EQ(m.state, MessageState::kSent) << m.last_reply;
  EXPECT_EQ(m.route, "microsoft365");
  EXPECT_TRUE(status().configured);
  EXPECT_EQ(status().route.state, RouteState::kActive);
}

TEST_F(ReloadTest, ChangedCredentialsReplaceTheMailboxConnections) {
  m365 = makeServer(m365ServerOptions(kRep, "app-password"));
  a = makeServer();
  config::Config c = makeM365Config(portOf(m365), portOf(a));
  startEngine(c);
  EXPECT_EQ(store->waitFinal(submit(makeMailboxMessage(kRep, {"x@example.net"}))).route,
            "microsoft365");
  ASSERT_TRUE(loop.eventually([&] { return m365->active == 1; }));

  // The stand-in accepts only the old password, so the new pool's login fails: proof that the
  // new connection uses the new settings.
  c.tenants[0].mailboxes[0].auth->password = Secret("rotated");
  auto r = reload(c);
  ASSERT_TRUE(r.has_value()) << r.error().describe();
  EXPECT_TRUE(mentions(*r, "credentials or access changed")) << joined(*r);
  ASSERT_TRUE(loop.eventually([&] { return m365->quits == 1; }));
  submit(makeMailboxMessage(kRep, {"y@example.net"}));
  ASSERT_TRUE(
      statusIs([](const MailboxStatus& s) { return s.route.state == RouteState::kDisconnected; }));
  loop.call([&] { EXPECT_GE(m365->auth_failures, 1); });
}

TEST_F(ReloadTest, ManualFailoverAndLedgerCarryOver) {
  m365 = makeServer(m365ServerOptions());
  a = makeServer();
  config::Config c = makeM365Config(portOf(m365), portOf(a));
  startEngine(c);
  EXPECT_EQ(store->waitFinal(submit(makeMailboxMessage(kRep, {"x@example.net"}))).route,
            "microsoft365");
  ASSERT_TRUE(loop.call([&] { return engine->failover(kRep, "ops").has_value(); }));
  c.queue.messages_per_connection = 7;
  auto r = reload(c);
  ASSERT_TRUE(r.has_value()) << r.error().describe();
  EXPECT_TRUE(mentions(*r, "messages_per_connection is 7")) << joined(*r);
  const MailboxStatus s = status();
  EXPECT_TRUE(s.route.manual_failover);
  EXPECT_EQ(s.route.manual_actor, "ops");
  EXPECT_EQ(s.route.usage.used, 1u);
  EXPECT_EQ(store->waitFinal(submit(makeMailboxMessage(kRep, {"y@example.net"}))).route, "default");
}

TEST_F(ReloadTest, UnreadableCaFileRefusesTheReloadAndChangesNothing) {
  a = makeServer();
  b = makeServer();
  config::Config c = makeConfig(portOf(a));
  startEngine(c);
  config::Config bad = makeConfig(portOf(b));
  bad.relays["default"].server.tls = config::TlsMode::kStarttls;
  bad.relays["default"].server.ca_file = "/nonexistent/ca.pem";
  auto shared = std::make_shared<const config::Config>(bad);
  auto r = loop.call([&] { return engine->reconfigure(shared); });
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, "tls.config");
  EXPECT_NE(r.error().message.find("relays.default"), std::string::npos) << r.error().message;
  shared.reset(); // refused: the engine did not keep it
  EXPECT_EQ(store->waitFinal(submit(makeMessage({"x@example.net"}))).state, MessageState::kSent);
  loop.call([&] {
    EXPECT_EQ(a->accepted.size(), 1u);
    EXPECT_EQ(b->accepted.size(), 0u);
  });
}

TEST_F(ReloadTest, UnchangedConfigurationReportsNothingAndKeepsConnections) {
  a = makeServer();
  config::Config c = makeConfig(portOf(a));
  startEngine(c);
  EXPECT_EQ(store->waitFinal(submit(makeMessage({"x@example.net"}))).state, MessageState::kSent);
  ASSERT_TRUE(loop.eventually([&] { return a->active == 1; }));
  auto r = reload(c);
  ASSERT_TRUE(r.has_value()) << r.error().describe();
  EXPECT_TRUE(r->applied.empty()) << joined(*r);
  EXPECT_TRUE(r->restart_required.empty());
  EXPECT_EQ(store->waitFinal(submit(makeMessage({"y@example.net"}))).state, MessageState::kSent);
  loop.call([&] {
    EXPECT_EQ(a->connections, 1); // the same connection carried both
    EXPECT_EQ(a->quits, 0);
  });
  // A second reload after the first (the engine's own copy is replaced this time).
  c.queue.commit_batch_max = 3;
  auto again = reload(c);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->restart_required, std::vector<std::string>{"queue.commit_batch_max"});
}

TEST_F(ReloadTest, TenantAndRelayAddedAndRemoved) {
  m365 = makeServer(m365ServerOptions());
  a = makeServer();
  b = makeServer();
  config::Config c = makeM365Config(portOf(m365), portOf(a));
  startEngine(c);
  config::Config next = c;
  config::Relay second;
  second.name = "second";
  second.server.host = "127.0.0.1";
  second.server.port = portOf(b);
  second.server.tls = config::TlsMode::kNone;
  next.relays["second"] = second;
  config::Tenant beta;
  beta.id = "beta";
  beta.fallback = {"second"};
  beta.mailboxes.push_back(makeMailbox("rep@beta.example", portOf(m365)));
  next.tenants.push_back(beta);
  next.tenants[0].mailboxes.clear(); // rep1 goes, acme stays
  auto r = reload(next);
  ASSERT_TRUE(r.has_value()) << r.error().describe();
  EXPECT_TRUE(mentions(*r, "relay second added")) << joined(*r);
  EXPECT_TRUE(mentions(*r, "tenant beta added with 1 mailbox")) << joined(*r);
  EXPECT_TRUE(mentions(*r, "mailbox rep@beta.example added to tenant beta")) << joined(*r);
  EXPECT_TRUE(mentions(*r, "mailbox rep1@acme.example removed")) << joined(*r);
  EXPECT_TRUE(loop.call([&] { return engine->mailboxStatus("rep@beta.example").has_value(); }));
  EXPECT_FALSE(loop.call([&] { return engine->mailboxStatus(kRep).has_value(); }));
  ASSERT_TRUE(loop.call([&] { return engine->failover("rep@beta.example", "ops").has_value(); }));
  NewMessage m = makeMailboxMessage("rep@beta.example", {"x@example.net"});
  m.tenant = "beta";
  EXPECT_EQ(store->waitFinal(submit(std::move(m))).route, "second");

  next.relays.erase("second");
  next.tenants.pop_back();
  auto gone = reload(next);
  ASSERT_TRUE(gone.has_value());
  EXPECT_TRUE(mentions(*gone, "relay second removed")) << joined(*gone);
  EXPECT_TRUE(mentions(*gone, "tenant beta removed")) << joined(*gone);
}

} // namespace
} // namespace mailgate::relay::test

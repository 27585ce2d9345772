// The DeliveryEngine's controls for the HTTP control API: mailbox status, manual failover and
// failback, retry and cancel of a message, metrics. Against the real SQLite store and scripted
// SMTP servers on 127.0.0.1: one stands in for a mailbox's Microsoft 365 submission (AUTH LOGIN),
// one for the tenant's relay. Every wait is "until this state is reached", with a hang guard.
#include "relay/delivery_engine.h"
#include "tests/relay/delivery_test_support.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace mailgate::relay::test {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;

constexpr const char* kRep = "rep1@acme.example";
constexpr const char* kQuotaReply =
    "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process "
    "message due to a permanent exception";

json dataOf(const store::StoredEvent& e) {
  return json::parse(e.data, nullptr, false);
}

class ControlTest : public EngineTest {
protected:
  void startServers() {
    m365 = makeServer(m365ServerOptions());
    relay = makeServer();
  }
  config::Config m365Config() { return makeM365Config(portOf(m365), portOf(relay)); }

  // The engine keeps a reference to its configuration: the fixture owns it.
  void startEngine(config::Config c) {
    config_ = std::make_unique<config::Config>(std::move(c));
    createEngine(*config_);
  }
  void restartEngine() {
    loop.call([&] { engine.reset(); });
    startEngine(*config_);
  }

  // retryNow / cancel, waiting for `done`.
  Result<QueuedMessage> act(bool cancelling, const std::string& id, const std::string& actor) {
    auto promise = std::make_shared<std::promise<Result<QueuedMessage>>>();
    auto future = promise->get_future();
    loop.call([&] {
      auto done = [promise](Result<QueuedMessage> r) { promise->set_value(std::move(r)); };
      if (cancelling) {
        engine->cancel(id, actor, done);
      } else {
        engine->retryNow(id, actor, done);
      }
    });
    EXPECT_EQ(future.wait_for(std::chrono::seconds(20)), std::future_status::ready);
    return future.get();
  }

  DeliveryMetrics metrics() {
    return loop.call([&] { return engine->metrics(); });
  }

  void TearDown() override {
    loop.call([&] {
      engine.reset();
      m365.reset();
      relay.reset();
    });
    store->close();
    loop.stop();
  }

  std::unique_ptr<FakeSmtpServer> m365;
  std::unique_ptr<FakeSmtpServer> relay;
  std::unique_ptr<config::Config> config_;
};

// --- status -------------------------------------------------------------------------------------

TEST_F(ControlTest, StatusShowsConnectionsMessagesAndTheLedger) {
  startServers();
  loop.call([&] {
    m365->on_data_end = [](int n, const FakeSmtpServer::Message&) {
      return n == 1 ? std::string(FakeSmtpServer::kHold) : std::string();
    };
  });
  startEngine(m365Config());
  const std::string first = submit(makeMailboxMessage(kRep, {"a@example.net", "b@example.net"}));
  ASSERT_TRUE(loop.eventually([&] { return m365->holding; }));
  const std::string second = submit(makeMailboxMessage(kRep, {"c@example.net"}));
  ASSERT_TRUE(statusIs([](const MailboxStatus& s) { return s.waiting == 1; }));

  const MailboxStatus s = status("REP1@Acme.Example"); // any case
  EXPECT_TRUE(s.configured);
  EXPECT_EQ(s.route.tenant, "acme");
  EXPECT_EQ(s.route.address, kRep);
  EXPECT_EQ(s.route.state, RouteState::kActive);
  EXPECT_EQ(s.route.usage.used, 3u); // both: a message is charged when it is routed
  EXPECT_EQ(s.route.usage.limit, 10000u);
  EXPECT_EQ(s.route.max_connections, 3u);
  EXPECT_FALSE(s.route.manual_failover);
  EXPECT_EQ(s.connections_open, 1u);
  EXPECT_EQ(s.connections_busy, 1u);
  EXPECT_EQ(s.in_flight, 1u);
  EXPECT_EQ(s.waiting, 1u);
  EXPECT_FALSE(s.last_error.has_value());
  EXPECT_FALSE(loop.call([&] { return engine->mailboxStatus("nobody@acme.example"); }));

  loop.call([&] { m365->releaseHeld(); });
  EXPECT_EQ(store->waitFinal(first).state, MessageState::kSent);
  EXPECT_EQ(store->waitFinal(second).state, MessageState::kSent);
  ASSERT_TRUE(statusIs([](const MailboxStatus& st) {
    return st.waiting == 0 && st.in_flight == 0 && st.connections_busy == 0;
  }));
  EXPECT_EQ(status().route.usage.used, 3u);

  const DeliveryMetrics m = metrics();
  EXPECT_EQ(m.messages.at({"microsoft365", "sent"}), 2u);
  EXPECT_EQ(m.replies.at("2xx"), 2u);
  EXPECT_EQ(m.connections_opened, 1u);
  EXPECT_EQ(m.connections_ready, 1u);
  EXPECT_EQ(m.connections_failed, 0u);
  EXPECT_EQ(m.messages_waiting, 0u);
  EXPECT_EQ(m.messages_in_flight, 0u);
  EXPECT_EQ(m.failovers_automatic, 0u);
}

TEST_F(ControlTest, ForEachMailboxVisitsEveryMailboxOrOneTenants) {
  startServers();
  config::Config c = m365Config();
  c.tenants[0].mailboxes.push_back(makeMailbox("rep2@acme.example", portOf(m365)));
  config::Tenant beta;
  beta.id = "beta";
  beta.fallback = {"default"};
  beta.mailboxes.push_back(makeMailbox("rep@beta.example", portOf(m365)));
  c.tenants.push_back(beta);
  startEngine(c);

  const auto visit = [&](std::string_view tenant) {
    return loop.call([&] {
      std::vector<std::string> seen;
      engine->forEachMailbox(
          [&](const MailboxStatus& s) { seen.push_back(s.route.tenant + "/" + s.route.address); },
          tenant);
      return seen;
    });
  };
  EXPECT_EQ(visit({}), (std::vector<std::string>{"acme/rep1@acme.example", "acme/rep2@acme.example",
                                                 "beta/rep@beta.example"}));
  EXPECT_EQ(visit("acme"),
            (std::vector<std::string>{"acme/rep1@acme.example", "acme/rep2@acme.example"}));
  EXPECT_TRUE(visit("nobody").empty());
}

// --- manual failover and failback ---------------------------------------------------------------

TEST_F(ControlTest, ManualFailoverSendsThroughTheRelayUntilFailbackAndSurvivesARestart) {
  startServers();
  startEngine(m365Config());

  auto failed_over = loop.call([&] { return engine->failover("Rep1@acme.example", "ops-token"); });
  ASSERT_TRUE(failed_over.has_value()) << failed_over.error().describe();
  EXPECT_TRUE(failed_over->route.manual_failover);
  EXPECT_EQ(failed_over->route.manual_actor, "ops-token");
  EXPECT_GT(failed_over->route.manual_since_ms, 0);
  EXPECT_TRUE(failed_over->route.failed_over);

  const std::string via_relay = submit(makeMailboxMessage(kRep, {"a@example.net"}));
  QueuedMessage m = store->waitFinal(via_relay);
  EXPECT_EQ(m.state, MessageState::kSent);
  EXPECT_EQ(m.route, "default");
  EXPECT_EQ(m.writeback, "pending"); // relay-sent mail goes to the Sent folder over IMAP
  loop.call([&] {
    EXPECT_EQ(relay->accepted.size(), 1u);
    EXPECT_EQ(m365->accepted.size(), 0u);
  });
  const auto failovers = store->events("route.failover");
  ASSERT_EQ(failovers.size(), 1u);
  EXPECT_EQ(failovers[0].mailbox, kRep);
  EXPECT_EQ(failovers[0].tenant, "acme");
  EXPECT_EQ(dataOf(failovers[0]).value("manual", false), true);
  EXPECT_EQ(dataOf(failovers[0]).value("actor", ""), "ops-token");
  EXPECT_EQ(metrics().failovers_manual, 1u);
  EXPECT_EQ(metrics().failovers_automatic, 0u);
  EXPECT_EQ(metrics().failed_over_messages, 1u);

  // A restart keeps it.
  restartEngine();
  EXPECT_TRUE(status().route.manual_failover);
  EXPECT_EQ(status().route.manual_actor, "ops-token");
  EXPECT_EQ(store->waitFinal(submit(makeMailboxMessage(kRep, {"b@example.net"}))).route, "default");
  loop.call([&] { EXPECT_EQ(relay->accepted.size(), 2u); });

  auto back = loop.call([&] { return engine->failback(kRep, "ops-token"); });
  ASSERT_TRUE(back.has_value()) << back.error().describe();
  EXPECT_FALSE(back->route.manual_failover);
  EXPECT_FALSE(back->route.failed_over);
  const auto failbacks = store->events("route.failback");
  ASSERT_EQ(failbacks.size(), 1u);
  EXPECT_EQ(dataOf(failbacks[0]).value("manual", false), true);
  EXPECT_EQ(dataOf(failbacks[0]).value("actor", ""), "ops-token");
  EXPECT_EQ(store->waitFinal(submit(makeMailboxMessage(kRep, {"c@example.net"}))).route,
            "microsoft365");
  loop.call([&] { EXPECT_EQ(m365->accepted.size(), 1u); });

  restartEngine();
  EXPECT_FALSE(status().route.manual_failover);
}

TEST_F(ControlTest, FailoverIsRefusedForAnUnknownMailboxAndWithoutAFallbackRelay) {
  startServers();
  config::Config c = m365Config();
  c.tenants[0].fallback.clear();
  startEngine(c);
  auto unknown = loop.call([&] { return engine->failover("nobody@acme.example", "ops"); });
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().code, "route.unknown_mailbox");
  auto unknown_back = loop.call([&] { return engine->failback("nobody@acme.example", "ops"); });
  ASSERT_FALSE(unknown_back.has_value());
  EXPECT_EQ(unknown_back.error().code, "route.unknown_mailbox");
  auto none = loop.call([&] { return engine->failover(kRep, "ops"); });
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().code, "route.no_fallback");
  EXPECT_FALSE(status().route.manual_failover);
  EXPECT_TRUE(store->events("route.failover").empty());
}

// Microsoft 365 says its quota is spent; the tenant has no relay, so the message is held. The
// operator's failback clears the state and the message goes at once.
TEST_F(ControlTest, FailbackClearsAnExhaustedRouteAndReleasesItsHeldMail) {
  startServers();
  loop.call([&] {
    m365->on_data_end = [](int n, const FakeSmtpServer::Message&) {
      return n == 1 ? std::string(kQuotaReply) : std::string();
    };
  });
  config::Config c = m365Config();
  c.tenants[0].fallback.clear();
  startEngine(c);
  const std::string id = submit(makeMailboxMessage(kRep, {"a@example.net"}));
  ASSERT_TRUE(statusIs([](const MailboxStatus& s) {
    return s.route.state == RouteState::kExhausted && s.waiting == 1 && s.in_flight == 0;
  }));
  const MailboxStatus held = status();
  ASSERT_TRUE(held.last_error.has_value());
  EXPECT_EQ(held.last_error->kind, "reply");
  EXPECT_TRUE(held.last_error->message.starts_with("554 5.2.0")) << held.last_error->message;
  EXPECT_FALSE(held.last_error->hint.empty());
  EXPECT_GT(held.last_error->at_ms, 0);
  EXPECT_EQ(metrics().replies.at("quota_exceeded"), 1u);

  auto back = loop.call([&] { return engine->failback(kRep, "ops"); });
  ASSERT_TRUE(back.has_value()) << back.error().describe();
  QueuedMessage m = store->waitFinal(id);
  EXPECT_EQ(m.state, MessageState::kSent) << m.last_reply;
  EXPECT_EQ(m.route, "microsoft365");
  loop.call([&] { EXPECT_EQ(m365->accepted.size(), 1u); });
  const auto failbacks = store->events("route.failback");
  ASSERT_EQ(failbacks.size(), 1u);
  EXPECT_EQ(dataOf(failbacks[0]).value("previous_state", ""), "exhausted");
}

// The login is refused, so the route is disconnected and its mail held (on_disconnect: hold);
// the next probe is an hour away. The credentials start working; failback tries them at once.
TEST_F(ControlTest, FailbackProbesADisconnectedLoginAtOnce) {
  m365 = makeServer(m365ServerOptions(kRep, "not-yet-valid"));
  relay = makeServer();
  const uint16_t m365_port = portOf(m365);
  config::Config c = m365Config();
  c.microsoft365.login_retry_initial = std::chrono::hours(1);
  startEngine(c);
  const std::string id = submit(makeMailboxMessage(kRep, {"a@example.net"}));
  ASSERT_TRUE(statusIs([](const MailboxStatus& s) {
    return s.route.state == RouteState::kDisconnected && s.waiting == 1;
  }));
  const MailboxStatus down = status();
  ASSERT_TRUE(down.last_error.has_value());
  EXPECT_EQ(down.last_error->kind, "login");
  EXPECT_FALSE(down.last_error->hint.empty());
  EXPECT_EQ(metrics().replies.at("auth_failed"), 1u);
  EXPECT_EQ(metrics().connections_failed, 1u);

  loop.call([&] { m365.reset(); });
  m365 = makeServer(m365ServerOptions(kRep, "app-password", m365_port));
  auto back = loop.call([&] { return engine->failback(kRep, "ops"); });
  ASSERT_TRUE(back.has_value()) << back.error().describe();
  QueuedMessage m = store->waitFinal(id);
  EXPECT_EQ(m.state, MessageState::kSent) << m.last_reply;
  EXPECT_EQ(m.route, "microsoft365");
  EXPECT_EQ(status().route.state, RouteState::kActive);
  EXPECT_EQ(store->events("route.connected").size(), 1u);
}

// --- retry and cancel ---------------------------------------------------------------------------

TEST_F(ControlTest, RetryNowMakesADeferredMessageDueNow) {
  relay = makeServer();
  loop.call([&] {
    relay->on_data_end = [](int n, const FakeSmtpServer::Message&) {
      return n == 1 ? std::string("451 4.3.0 try again later") : std::string();
    };
  });
  config::Config c = makeConfig(portOf(relay));
  c.queue.retry_initial = std::chrono::hours(1);
  c.queue.retry_max = std::chrono::hours(1);
  startEngine(c);
  const std::string id = submit(makeMessage({"a@example.net"}));
  ASSERT_TRUE(loop.eventually([&] { return engine->metrics().messages.size() == 1; }));
  QueuedMessage deferred = store->get(id);
  ASSERT_EQ(deferred.state, MessageState::kDeferred);
  EXPECT_GT(deferred.next_attempt_ms, wallClockMs() + 30 * 60 * 1000);
  EXPECT_EQ(metrics().messages.at({"default", "deferred"}), 1u);
  EXPECT_EQ(metrics().replies.at("4xx"), 1u);

  auto r = act(false, id, "ops-token");
  ASSERT_TRUE(r.has_value()) << r.error().describe();
  EXPECT_EQ(r->state, MessageState::kQueued);
  QueuedMessage m = store->waitFinal(id);
  EXPECT_EQ(m.state, MessageState::kSent) << m.last_reply;
  EXPECT_EQ(m.attempts, 2);
  const auto retries = store->events("message.retry");
  ASSERT_EQ(retries.size(), 1u);
  EXPECT_EQ(dataOf(retries[0]).value("actor", ""), "ops-token");
  EXPECT_EQ(metrics().messages.at({"default", "sent"}), 1u);
}

TEST_F(ControlTest, RetryNowSchedulesAMessageTheEngineDidNotHold) {
  relay = makeServer();
  startEngine(makeConfig(portOf(relay)));
  const QueuedMessage q = store->add(makeMessage({"a@example.net"})); // never scheduled
  auto r = act(false, q.id, "ops");
  ASSERT_TRUE(r.has_value()) << r.error().describe();
  EXPECT_EQ(store->waitFinal(q.id).state, MessageState::kSent);
}

TEST_F(ControlTest, RetryAndCancelAreRefusedWhileTheMessageIsInFlight) {
  relay = makeServer();
  loop.call([&] {
    relay->on_data_end = [](int, const FakeSmtpServer::Message&) {
      return std::string(FakeSmtpServer::kHold);
    };
  });
  startEngine(makeConfig(portOf(relay), 1));
  const std::string id = submit(makeMessage({"a@example.net"}));
  ASSERT_TRUE(loop.eventually([&] { return relay->holding; }));
  for (bool cancelling : {false, true}) {
    auto r = act(cancelling, id, "ops");
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, "message.in_flight");
    EXPECT_TRUE(r.error().message.find(id) != std::string::npos) << r.error().message;
  }
  EXPECT_EQ(store->get(id).state, MessageState::kSending); // nothing changed
  loop.call([&] { relay->releaseHeld(); });
  EXPECT_EQ(store->waitFinal(id).state, MessageState::kSent);
  EXPECT_TRUE(store->events("message.retry").empty());
}

// The mailbox's submission cannot be reached, so its message waits in the pool's ready queue,
// counted in the ledger. Cancelling it gives the charge back.
TEST_F(ControlTest, CancelOfAMessageWaitingForAConnectionGivesItsChargesBack) {
  relay = makeServer();
  startEngine(makeM365Config(unusedPort(), portOf(relay)));
  const std::string id =
      submit(makeMailboxMessage(kRep, {"a@example.net", "b@example.net", "c@example.net"}));
  ASSERT_TRUE(statusIs([](const MailboxStatus& s) {
    return s.waiting == 1 && s.route.usage.used == 3 && s.last_error.has_value();
  }));
  EXPECT_EQ(status().last_error->kind, "connection");
  EXPECT_GE(metrics().replies.at("connection"), 1u);

  auto r = act(true, id, "ops-token");
  ASSERT_TRUE(r.has_value()) << r.error().describe();
  EXPECT_EQ(r->state, MessageState::kFailed);
  ASSERT_EQ(r->recipients.size(), 3u);
  EXPECT_EQ(r->recipients[0].last_reply, "cancelled by ops-token");
  const MailboxStatus after = status();
  EXPECT_EQ(after.waiting, 0u);
  EXPECT_EQ(after.in_flight, 0u);
  EXPECT_EQ(after.route.usage.used, 0u);
  EXPECT_EQ(metrics().messages.at({"none", "failed"}), 1u);
  EXPECT_EQ(loop.call([&] { return engine->stats().waiting; }), 0u);
}

TEST_F(ControlTest, CancelOfADeferredMessageAndASecondActionMeanwhile) {
  relay = makeServer();
  loop.call([&] {
    relay->on_data_end = [](int, const FakeSmtpServer::Message&) {
      return std::string("451 4.3.0 try again later");
    };
  });
  config::Config c = makeConfig(portOf(relay));
  c.queue.retry_initial = std::chrono::hours(1);
  c.queue.retry_max = std::chrono::hours(1);
  startEngine(c);
  const std::string id = submit(makeMessage({"a@example.net"}));
  ASSERT_TRUE(loop.eventually([&] { return engine->metrics().messages.size() == 1; }));

  // Both asked in one loop turn: the second finds the first in progress.
  auto first = std::make_shared<std::promise<Result<QueuedMessage>>>();
  auto second = std::make_shared<std::promise<Result<QueuedMessage>>>();
  loop.call([&] {
    engine->cancel(id, "ops", [first](Result<QueuedMessage> r) { first->set_value(r); });
    engine->retryNow(id, "ops", [second](Result<QueuedMessage> r) { second->set_value(r); });
  });
  auto refused = second->get_future().get();
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, "message.in_flight");
  auto cancelled = first->get_future().get();
  ASSERT_TRUE(cancelled.has_value()) << cancelled.error().describe();
  EXPECT_EQ(cancelled->state, MessageState::kFailed);
  EXPECT_EQ(loop.call([&] { return engine->stats().waiting; }), 0u);

  // Now the store refuses, and the engine is as it was.
  auto again = act(true, id, "ops");
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, "store.state");
  auto missing = act(false, "no-such-id", "ops");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, "store.not_found");
  EXPECT_EQ(loop.call([&] { return engine->stats().waiting; }), 0u);
}

// A held message becomes due while its cancel is being recorded: it is set aside, not routed,
// and the cancel removes it.
TEST_F(ControlTest, MessageThatComesDueDuringACancelIsSetAsideAndRemoved) {
  m365 = makeServer(m365ServerOptions(kRep, "wrong"));
  relay = makeServer();
  config::Config c = m365Config();
  c.microsoft365.login_retry_initial = std::chrono::hours(1);
  startEngine(c);
  const std::string held = submit(makeMailboxMessage(kRep, {"a@example.net"}));
  const std::string retried = submit(makeMailboxMessage(kRep, {"b@example.net"}));
  ASSERT_TRUE(statusIs([](const MailboxStatus& s) {
    return s.route.state == RouteState::kDisconnected && s.waiting == 2;
  }));
  auto cancelled = std::make_shared<std::promise<Result<QueuedMessage>>>();
  auto retry = std::make_shared<std::promise<Result<QueuedMessage>>>();
  loop.call([&] {
    engine->cancel(held, "ops", [cancelled](Result<QueuedMessage> r) { cancelled->set_value(r); });
    engine->retryNow(retried, "ops", [retry](Result<QueuedMessage> r) { retry->set_value(r); });
    // Wakes both (failover routes them through the relay now) while the store works.
    ASSERT_TRUE(engine->failover(kRep, "ops").has_value());
  });
  auto c_result = cancelled->get_future().get();
  ASSERT_TRUE(c_result.has_value()) << c_result.error().describe();
  EXPECT_EQ(c_result->state, MessageState::kFailed);
  auto r_result = retry->get_future().get();
  ASSERT_TRUE(r_result.has_value()) << r_result.error().describe();
  EXPECT_EQ(store->waitFinal(retried).route, "default");
  EXPECT_EQ(store->get(held).state, MessageState::kFailed);
  ASSERT_TRUE(statusIs([](const MailboxStatus& s) { return s.waiting == 0 && s.in_flight == 0; }));
  loop.call([&] {
    ASSERT_EQ(relay->accepted.size(), 1u);
    EXPECT_EQ(relay->accepted[0].recipients, std::vector<std::string>{"b@example.net"});
  });
}

TEST_F(ControlTest, MetricsCountRepliesByClassAndOutcomesByRoute) {
  relay = makeServer();
  loop.call([&] {
    relay->on_rcpt = [](int, const std::string& rcpt) {
      return rcpt.starts_with("nobody") ? std::string("550 5.1.1 no such user") : std::string();
    };
  });
  startEngine(makeConfig(portOf(relay)));
  EXPECT_EQ(store->waitFinal(submit(makeMessage({"nobody@example.net"}))).state,
            MessageState::kFailed);
  EXPECT_EQ(store->waitFinal(submit(makeMessage({"a@example.net"}))).state, MessageState::kSent);
  const DeliveryMetrics m = metrics();
  EXPECT_EQ(m.messages.at({"default", "failed"}), 1u);
  EXPECT_EQ(m.messages.at({"default", "sent"}), 1u);
  EXPECT_EQ(m.replies.at("5xx"), 1u);
  EXPECT_EQ(m.replies.at("2xx"), 1u);
}

} // namespace
} // namespace mailgate::relay::test

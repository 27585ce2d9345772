// DeliveryEngine against a scripted SMTP server on 127.0.0.1 and the real SQLite store. Retry
// delays are a few milliseconds so deferred mail comes back within the test; nothing asserts a
// time: every wait is "until this state is reached", with a hang guard.
#include "relay/delivery_engine.h"
#include "tests/relay/delivery_test_support.h"

#include <gtest/gtest.h>
#include <set>

namespace mailgate::relay::test {
namespace {

using std::chrono::milliseconds;

// A server that offers `mechanisms` and accepts only `username` with `password`.
FakeSmtpServer::Options authServer(std::string mechanisms, std::string username,
                                   std::string password) {
  FakeSmtpServer::Options o;
  o.auth_mechanisms = std::move(mechanisms);
  o.username = std::move(username);
  o.password = std::move(password);
  return o;
}

class DeliveryTest : public ::testing::Test {
protected:
  void startServer() { startServer(FakeSmtpServer::Options{}); }
  void startServer(FakeSmtpServer::Options o) {
    server = loop.call([&] { return std::make_unique<FakeSmtpServer>(loop.loop(), o); });
    port = loop.call([&] { return server->port(); });
  }

  void startEngine(const config::Config& c) {
    engine = loop.call([&]() -> std::unique_ptr<DeliveryEngine> {
      auto e = DeliveryEngine::create(loop.loop(), c, store->store(), options);
      EXPECT_TRUE(e.has_value()) << e.error().describe();
      return e ? std::move(*e) : nullptr;
    });
    ASSERT_NE(engine, nullptr);
  }

  // A server that holds its reply to every end of data (until releaseHeld()), and an engine with
  // one connection: a submitted message stays in flight.
  void startHoldingServerAndEngine() {
    startServer();
    loop.call([&] {
      server->on_data_end = [](int, const FakeSmtpServer::Message&) {
        return std::string(FakeSmtpServer::kHold);
      };
    });
    startEngine(makeConfig(port, 1));
  }

  // A server context for testCert(); nullptr when the openssl command is missing (skip then).
  static net::TlsContextPtr testServerTls() {
    const TestCert& cert = testCert();
    if (cert.cert.empty()) {
      return nullptr;
    }
    auto ctx = net::TlsContext::server({cert.cert, cert.key, {}});
    EXPECT_TRUE(ctx.has_value()) << ctx.error().describe();
    return ctx ? *ctx : nullptr;
  }

  std::string submit(NewMessage m) {
    QueuedMessage q = store->add(std::move(m));
    loop.call([&] { engine->schedule(q); });
    return q.id;
  }

  DeliveryStats stats() {
    return loop.call([&] { return engine->stats(); });
  }

  void TearDown() override {
    loop.call([&] {
      engine.reset();
      server.reset();
    });
    store->close();
    loop.stop();
  }

  LoopThread loop;
  std::unique_ptr<TestStore> store = std::make_unique<TestStore>(loop);
  std::unique_ptr<FakeSmtpServer> server;
  uint16_t port = 0; // the server's
  std::unique_ptr<DeliveryEngine> engine;
  DeliveryOptions options = fastOptions();
};

TEST_F(DeliveryTest, DeliversManyMessagesWithinTheConnectionCap) {
  startServer();
  startEngine(makeConfig(port, 2));
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    // A line starting with "." checks dot-stuffing end to end.
    ids.push_back(submit(makeMessage({"rcpt" + std::to_string(i) + "@example.net"},
                                     "Subject: " + std::to_string(i) + "\r\n\r\n.dot line\r\n")));
  }
  for (const auto& id : ids) {
    QueuedMessage m = store->waitFinal(id);
    EXPECT_EQ(m.state, MessageState::kSent) << m.last_reply;
    EXPECT_EQ(m.attempts, 1);
    ASSERT_EQ(m.recipients.size(), 1U);
    EXPECT_EQ(m.recipients[0].status, RecipientStatus::kSent);
    EXPECT_TRUE(m.recipients[0].last_reply.starts_with("250 2.0.0")) << m.recipients[0].last_reply;
  }
  loop.call([&] {
    EXPECT_EQ(server->accepted.size(), 20U);
    EXPECT_LE(server->max_active, 2);
    EXPECT_LE(server->connections, 2); // connections are reused, not opened per message
    std::set<std::string> bodies;
    for (const auto& m : server->accepted) {
      EXPECT_EQ(m.mail_from, "sender@crm.example");
      EXPECT_TRUE(m.body.ends_with("\r\n.dot line\r\n")) << m.body;
      bodies.insert(m.body);
    }
    EXPECT_EQ(bodies.size(), 20U);
  });
  EXPECT_EQ(stats().delivered, 20U);
  EXPECT_EQ(stats().attempts, 20U);
}

// A relay paced at 6,000 messages a minute (one start every 10 ms) and a backlog of 60: every
// message is delivered once, and each waits for its own slot instead of all of them waking at
// every slot (which would make waits grow with the square of the backlog).
TEST_F(DeliveryTest, PacedRelayWorksThroughABacklogWithOneWaitPerSlot) {
  startServer();
  auto c = makeConfig(port, 3);
  c.relays.at("default").limits.messages_per_minute = 6000;
  startEngine(c);
  std::vector<QueuedMessage> batch;
  for (int i = 0; i < 60; ++i) {
    batch.push_back(store->add(makeMessage({"rcpt" + std::to_string(i) + "@example.net"})));
  }
  loop.call([&] {
    for (auto& q : batch) {
      engine->schedule(q);
    }
  });
  for (const auto& q : batch) {
    EXPECT_EQ(store->waitFinal(q.id).state, MessageState::kSent);
  }
  loop.call([&] { EXPECT_EQ(server->accepted.size(), 60U); });
  EXPECT_EQ(stats().delivered, 60U);
  EXPECT_GT(stats().waits, 0U); // the pacing was in force
  EXPECT_LE(stats().waits, 3U * 60U);
}

TEST_F(DeliveryTest, RenewsTheConnectionAfterMessagesPerConnection) {
  startServer();
  auto c = makeConfig(port, 1);
  c.queue.messages_per_connection = 3;
  startEngine(c);
  std::vector<std::string> ids;
  for (int i = 0; i < 7; ++i) {
    ids.push_back(submit(makeMessage({"a@example.net"})));
  }
  for (const auto& id : ids) {
    EXPECT_EQ(store->waitFinal(id).state, MessageState::kSent);
  }
  ASSERT_TRUE(loop.eventually([&] { return server->quits >= 2; }));
  loop.call([&] {
    EXPECT_EQ(server->connections, 3); // 3 + 3 + 1
    std::map<int, int> per_connection;
    for (const auto& m : server->accepted) {
      ++per_connection[m.connection];
    }
    EXPECT_EQ(per_connection[1], 3);
    EXPECT_EQ(per_connection[2], 3);
    EXPECT_EQ(per_connection[3], 1);
  });
}

TEST_F(DeliveryTest, IdleConnectionQuits) {
  options.idle_timeout = milliseconds(50);
  startServer();
  startEngine(makeConfig(port, 1));
  EXPECT_EQ(store->waitFinal(submit(makeMessage({"a@example.net"}))).state, MessageState::kSent);
  ASSERT_TRUE(loop.eventually([&] { return server->quits == 1 && server->active == 0; }));
  EXPECT_TRUE(loop.eventually([&] { return engine->stats().open_connections == 0; }));
}

TEST_F(DeliveryTest, PerRecipientResults) {
  startServer();
  loop.call([&] {
    server->on_rcpt = [](int, const std::string& rcpt) {
      return rcpt.starts_with("nobody") ? std::string("550 5.1.1 no such user") : std::string();
    };
  });
  startEngine(makeConfig(port));
  const std::string id = submit(makeMessage({"nobody@example.net", "rep@example.net"}));
  QueuedMessage m = store->waitFinal(id);
  EXPECT_EQ(m.state, MessageState::kSent);
  ASSERT_EQ(m.recipients.size(), 2U);
  EXPECT_EQ(m.recipients[0].status, RecipientStatus::kFailed);
  EXPECT_EQ(m.recipients[0].last_reply, "550 5.1.1 no such user");
  EXPECT_EQ(m.recipients[1].status, RecipientStatus::kSent);
  EXPECT_TRUE(m.recipients[1].last_reply.starts_with("250 2.0.0 queued"));
  loop.call([&] {
    ASSERT_EQ(server->accepted.size(), 1U);
    EXPECT_EQ(server->accepted[0].recipients, std::vector<std::string>{"rep@example.net"});
  });
}

TEST_F(DeliveryTest, EveryRecipientRejectedFailsTheMessage) {
  startServer();
  loop.call([&] {
    server->on_rcpt = [](int, const std::string&) { return std::string("550 5.1.1 no such user"); };
  });
  startEngine(makeConfig(port));
  QueuedMessage m = store->waitFinal(submit(makeMessage({"x@example.net", "y@example.net"})));
  EXPECT_EQ(m.state, MessageState::kFailed);
  EXPECT_EQ(m.attempts, 1);
  EXPECT_EQ(stats().failed, 1U);
}

TEST_F(DeliveryTest, TempFailureOnDataDefersAndRetries) {
  startServer();
  loop.call([&] {
    server->on_data_end = [](int n, const FakeSmtpServer::Message&) {
      return n == 1 ? std::string("451 4.3.0 try again later") : std::string();
    };
  });
  startEngine(makeConfig(port));
  QueuedMessage m = store->waitFinal(submit(makeMessage({"a@example.net"})));
  EXPECT_EQ(m.state, MessageState::kSent);
  EXPECT_EQ(m.attempts, 2);
  EXPECT_EQ(stats().deferred, 1U);
  loop.call([&] {
    EXPECT_EQ(server->data_ends, 2);
    EXPECT_EQ(server->accepted.size(), 1U);
  });
}

TEST_F(DeliveryTest, TempFailureOnMailDefersTheWholeMessage) {
  startServer();
  loop.call([&] {
    server->on_mail = [](int n, const std::string&) {
      return n == 1 ? std::string("452 4.3.1 insufficient system storage") : std::string();
    };
  });
  startEngine(makeConfig(port));
  QueuedMessage m = store->waitFinal(submit(makeMessage({"a@example.net", "b@example.net"})));
  EXPECT_EQ(m.state, MessageState::kSent);
  EXPECT_EQ(m.attempts, 2);
  for (const auto& r : m.recipients) {
    EXPECT_EQ(r.status, RecipientStatus::kSent);
  }
}

TEST_F(DeliveryTest, UpstreamDownThenUpCostsNoAttempt) {
  const uint16_t down_port = unusedPort();
  ASSERT_NE(down_port, 0);
  startEngine(makeConfig(down_port, 2));
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(submit(makeMessage({"a@example.net"})));
  }
  // Bring the server up once the engine has seen the relay refuse it twice.
  ASSERT_TRUE(loop.eventually([&] { return engine->stats().connect_failures >= 2; }));
  EXPECT_EQ(stats().attempts, 0U);
  FakeSmtpServer::Options o;
  o.port = down_port;
  startServer(o);
  for (const auto& id : ids) {
    QueuedMessage m = store->waitFinal(id);
    EXPECT_EQ(m.state, MessageState::kSent);
    EXPECT_EQ(m.attempts, 1); // the refused connections were not attempts
  }
}

TEST_F(DeliveryTest, ServiceUnavailableMidSessionRetriesOnANewConnection) {
  startServer();
  loop.call([&] {
    server->on_mail = [](int n, const std::string&) {
      return n == 1 ? std::string("421 4.3.2 shutting down") : std::string();
    };
  });
  startEngine(makeConfig(port, 1));
  QueuedMessage m = store->waitFinal(submit(makeMessage({"a@example.net"})));
  EXPECT_EQ(m.state, MessageState::kSent);
  EXPECT_EQ(m.attempts, 2);
  loop.call([&] {
    EXPECT_EQ(server->connections, 2);
    ASSERT_EQ(server->accepted.size(), 1U);
    EXPECT_EQ(server->accepted[0].connection, 2);
  });
}

TEST_F(DeliveryTest, RecipientRefusedBeforeA421KeepsItsResult) {
  startServer();
  loop.call([&] {
    server->on_rcpt = [](int, const std::string& rcpt) {
      return rcpt.starts_with("nobody") ? std::string("550 5.1.1 no such user") : std::string();
    };
    server->on_data = [](int n) {
      return n == 1 ? std::string("421 4.3.2 going down") : std::string();
    };
  });
  startEngine(makeConfig(port, 1));
  QueuedMessage m =
      store->waitFinal(submit(makeMessage({"nobody@example.net", "rep@example.net"})));
  EXPECT_EQ(m.state, MessageState::kSent);
  EXPECT_EQ(m.attempts, 2);
  EXPECT_EQ(m.recipients[0].status, RecipientStatus::kFailed);
  EXPECT_EQ(m.recipients[0].last_reply, "550 5.1.1 no such user");
  EXPECT_EQ(m.recipients[1].status, RecipientStatus::kSent);
  loop.call([&] {
    EXPECT_EQ(server->transactions, 2);
    ASSERT_EQ(server->accepted.size(), 1U);
    EXPECT_EQ(server->accepted[0].recipients, std::vector<std::string>{"rep@example.net"});
  });
}

TEST_F(DeliveryTest, ConnectionLostAfterTheFinalDotIsSentAgain) {
  startServer();
  loop.call([&] {
    server->on_data_end = [](int n, const FakeSmtpServer::Message&) {
      return n == 1 ? std::string(FakeSmtpServer::kDrop) : std::string();
    };
  });
  startEngine(makeConfig(port, 1));
  QueuedMessage m = store->waitFinal(submit(makeMessage({"a@example.net"})));
  EXPECT_EQ(m.state, MessageState::kSent);
  EXPECT_EQ(m.attempts, 2);
  EXPECT_EQ(stats().unknown_outcomes, 1U);             // logged as a possible duplicate
  loop.call([&] { EXPECT_EQ(server->data_ends, 2); }); // the upstream saw the body twice
}

TEST_F(DeliveryTest, ConnectionLostBeforeTheBodyIsNotAnUnknownOutcome) {
  startServer();
  loop.call([&] {
    server->on_data = [](int n) {
      return n == 1 ? std::string(FakeSmtpServer::kDrop) : std::string();
    };
  });
  startEngine(makeConfig(port, 1));
  QueuedMessage m = store->waitFinal(submit(makeMessage({"a@example.net"})));
  EXPECT_EQ(m.state, MessageState::kSent);
  EXPECT_EQ(m.attempts, 2);
  EXPECT_EQ(stats().unknown_outcomes, 0U);
  loop.call([&] { EXPECT_EQ(server->data_ends, 1); });
}

TEST_F(DeliveryTest, LargeBodyArrivesIntact) {
  startServer();
  startEngine(makeConfig(port, 1));
  std::string body = "Subject: big\r\n\r\n";
  for (int i = 0; body.size() < 8 * 1024 * 1024; ++i) {
    body += (i % 7 == 0 ? "." : "") + std::string(70, static_cast<char>('a' + i % 26)) + "\r\n";
  }
  QueuedMessage m = store->waitFinal(submit(makeMessage({"a@example.net"}, body)));
  EXPECT_EQ(m.state, MessageState::kSent);
  loop.call([&] {
    ASSERT_EQ(server->accepted.size(), 1U);
    EXPECT_TRUE(server->accepted[0].body == body);
  });
}

TEST_F(DeliveryTest, MessagePastItsLifetimeExpiresWithoutConnecting) {
  startServer();
  startEngine(makeConfig(port));
  NewMessage n = makeMessage({"a@example.net"});
  QueuedMessage q = store->add(n);
  q.expires_at_ms = wallClockMs() - 1; // as if it had waited too long in memory
  loop.call([&] { engine->schedule(q); });
  // The store's own expiry time is in the future, so store.expire() is what ends it here.
  QueuedMessage m = store->waitFinal(q.id);
  EXPECT_EQ(m.state, MessageState::kFailed);
  EXPECT_EQ(m.recipients[0].status, RecipientStatus::kFailed);
  loop.call([&] { EXPECT_EQ(server->connections, 0); });
}

TEST_F(DeliveryTest, LifetimeEndsWhileDeferred) {
  startServer();
  loop.call([&] {
    server->on_data_end = [](int, const FakeSmtpServer::Message&) {
      return std::string("451 4.3.0 try again later");
    };
  });
  startEngine(makeConfig(port));
  QueuedMessage m = store->waitFinal(submit(makeMessage({"a@example.net"}, {}, milliseconds(300))));
  EXPECT_EQ(m.state, MessageState::kFailed);
  EXPECT_GE(m.attempts, 2);
  EXPECT_NE(m.recipients[0].last_reply.find("lifetime"), std::string::npos)
      << m.recipients[0].last_reply;
}

TEST_F(DeliveryTest, UnknownRouteFailsWithAReason) {
  startServer();
  startEngine(makeConfig(port));
  NewMessage n = makeMessage({"a@example.net"});
  n.route = "nowhere";
  QueuedMessage m = store->waitFinal(submit(n));
  EXPECT_EQ(m.state, MessageState::kFailed);
  EXPECT_NE(m.recipients[0].last_reply.find("no relay named 'nowhere'"), std::string::npos);
  loop.call([&] { EXPECT_EQ(server->connections, 0); });
}

TEST_F(DeliveryTest, InvalidRecipientFailsLocallyAndTheRestIsSent) {
  startServer();
  startEngine(makeConfig(port));
  QueuedMessage m =
      store->waitFinal(submit(makeMessage({"bad address@example.net", "ok@example.net"})));
  EXPECT_EQ(m.state, MessageState::kSent);
  EXPECT_EQ(m.recipients[0].status, RecipientStatus::kFailed);
  EXPECT_TRUE(m.recipients[0].last_reply.starts_with("553 5.1.3"));
  EXPECT_EQ(m.recipients[1].status, RecipientStatus::kSent);
}

TEST_F(DeliveryTest, DrainFinishesTheMessageInFlight) {
  startHoldingServerAndEngine();
  const std::string id = submit(makeMessage({"a@example.net"}));
  ASSERT_TRUE(loop.eventually([&] { return server->holding; }));
  bool drained = false;
  loop.call([&] { engine->drain([&] { drained = true; }); });
  // Scheduled during the drain: kept queued, not started.
  const std::string later = submit(makeMessage({"b@example.net"}));
  EXPECT_FALSE(loop.call([&] { return drained; })); // the reply is still held
  loop.call([&] { server->releaseHeld("250 2.0.0 finally"); });
  ASSERT_TRUE(loop.eventually([&] { return drained; }));
  QueuedMessage m = store->get(id);
  EXPECT_EQ(m.state, MessageState::kSent);
  EXPECT_EQ(m.recipients[0].last_reply, "250 2.0.0 finally");
  EXPECT_EQ(store->get(later).state, MessageState::kQueued);
  loop.call([&] {
    EXPECT_EQ(server->quits, 1);
    EXPECT_EQ(server->transactions, 1);
    EXPECT_EQ(engine->stats().open_connections, 0U);
  });
}

TEST_F(DeliveryTest, DrainWithNothingInFlightCompletes) {
  startEngine(makeConfig(unusedPort()));
  const std::string id = submit(makeMessage({"a@example.net"})); // relay down: waits
  ASSERT_TRUE(loop.eventually([&] { return engine->stats().connect_failures >= 1; }));
  bool drained = false;
  loop.call([&] { engine->drain([&] { drained = true; }); });
  ASSERT_TRUE(loop.eventually([&] { return drained; }));
  QueuedMessage m = store->get(id);
  EXPECT_EQ(m.state, MessageState::kQueued);
  EXPECT_EQ(m.attempts, 0);
}

TEST_F(DeliveryTest, DestroyedWhileSendingLeavesTheMessageSending) {
  startHoldingServerAndEngine();
  const std::string id = submit(makeMessage({"a@example.net"}));
  ASSERT_TRUE(loop.eventually([&] { return server->holding; }));
  loop.call([&] {
    engine.reset();
    server->releaseHeld(); // the reply reaches no one
  });
  QueuedMessage m = store->get(id);
  EXPECT_EQ(m.state, MessageState::kSending); // recovered at the next start
  EXPECT_EQ(m.attempts, 1);
}

// Forwards to the real store but keeps every completion until release(), so the engine can be
// destroyed while its store operations are in flight.
class HoldingStore : public QueueStore {
public:
  explicit HoldingStore(QueueStore& inner) : inner_(inner) {}

  void enqueue(NewMessage msg, std::function<void(Result<std::string>)> done) override {
    inner_.enqueue(std::move(msg), hold(std::move(done)));
  }
  void markSending(std::string id, int64_t now_ms, AttemptStart start,
                   std::function<void(Result<std::string>)> done) override {
    inner_.markSending(std::move(id), now_ms, std::move(start), hold(std::move(done)));
  }
  void recordAttempt(AttemptOutcome outcome,
                     std::function<void(Result<QueuedMessage>)> done) override {
    inner_.recordAttempt(std::move(outcome), hold(std::move(done)));
  }
  void expire(std::string id, int64_t now_ms,
              std::function<void(Result<QueuedMessage>)> done) override {
    inner_.expire(std::move(id), now_ms, hold(std::move(done)));
  }
  void retryNow(std::string id, int64_t now_ms, std::string actor,
                std::function<void(Result<QueuedMessage>)> done) override {
    inner_.retryNow(std::move(id), now_ms, std::move(actor), hold(std::move(done)));
  }
  void cancel(std::string id, int64_t now_ms, std::string actor,
              std::function<void(Result<QueuedMessage>)> done) override {
    inner_.cancel(std::move(id), now_ms, std::move(actor), hold(std::move(done)));
  }
  void loadBody(std::string id, std::function<void(Result<std::string>)> done) override {
    inner_.loadBody(std::move(id), hold(std::move(done)));
  }
  void get(std::string id, std::function<void(Result<QueuedMessage>)> done) override {
    inner_.get(std::move(id), hold(std::move(done)));
  }
  void counts(std::function<void(Result<QueueCounts>)> done) override {
    inner_.counts(hold(std::move(done)));
  }
  Result<std::vector<QueuedMessage>> recover(int64_t now_ms) override {
    return inner_.recover(now_ms);
  }
  void saveRouteState(RouteStateRecord state, std::optional<EventRecord> event,
                      std::function<void(Result<void>)> done) override {
    inner_.saveRouteState(std::move(state), std::move(event), hold(std::move(done)));
  }
  void recordEvent(EventRecord event, std::function<void(Result<void>)> done) override {
    inner_.recordEvent(std::move(event), hold(std::move(done)));
  }
  Result<RoutingSnapshot> loadRouting(int64_t now_ms, int64_t max_window_ms) override {
    return inner_.loadRouting(now_ms, max_window_ms);
  }

  // Loop thread.
  size_t held() const { return held_.size(); }
  bool holding = true;
  void release() {
    holding = false;
    auto all = std::move(held_);
    held_.clear();
    for (auto& fn : all) {
      fn();
    }
  }

private:
  template <typename T> std::function<void(Result<T>)> hold(std::function<void(Result<T>)> done) {
    return [this, done = std::move(done)](Result<T> r) mutable {
      if (!holding) {
        done(std::move(r));
        return;
      }
      held_.push_back([done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
    };
  }

  QueueStore& inner_;
  std::vector<std::function<void()>> held_;
};

TEST_F(DeliveryTest, DestroyedWithStoreCompletionsPending) {
  startServer();
  HoldingStore holding(store->store());
  const auto c = makeConfig(port, 2);
  engine = loop.call(
      [&] { return std::move(*DeliveryEngine::create(loop.loop(), c, holding, options)); });
  std::vector<QueuedMessage> msgs;
  for (int i = 0; i < 3; ++i) {
    msgs.push_back(store->add(makeMessage({"a@example.net"})));
  }
  loop.call([&] {
    for (auto& m : msgs) {
      engine->schedule(m);
    }
  });
  ASSERT_TRUE(loop.eventually([&] { return holding.held() >= 2; })); // markSending done, held
  loop.call([&] {
    engine.reset();
    holding.release(); // completions reach a destroyed engine: they must do nothing
  });
  for (auto& m : msgs) {
    EXPECT_NE(store->get(m.id).state, MessageState::kSent);
  }
}

TEST_F(DeliveryTest, DestroyedFromInsideTheDrainCallback) {
  startServer();
  startEngine(makeConfig(port, 1));
  EXPECT_EQ(store->waitFinal(submit(makeMessage({"a@example.net"}))).state, MessageState::kSent);
  bool drained = false;
  loop.call([&] {
    engine->drain([&] {
      engine.reset(); // what the daemon does
      drained = true;
    });
  });
  ASSERT_TRUE(loop.eventually([&] { return drained; }));
  loop.call([&] { EXPECT_EQ(server->quits, 1); });
}

TEST_F(DeliveryTest, AuthFailureKeepsTheMailWithoutAttempts) {
  startServer(authServer("PLAIN LOGIN", "relay-user", "right"));
  auto c = makeConfig(port);
  c.relays["default"].auth = config::RelayAuth{"relay-user", Secret("wrong")};
  startEngine(c);
  const std::string id = submit(makeMessage({"a@example.net"}));
  ASSERT_TRUE(loop.eventually([&] { return server->auth_failures >= 2; }));
  QueuedMessage m = store->get(id);
  EXPECT_EQ(m.state, MessageState::kQueued);
  EXPECT_EQ(m.attempts, 0);
  EXPECT_EQ(stats().attempts, 0U);
  EXPECT_GE(stats().connect_failures, 2U);
}

TEST_F(DeliveryTest, AuthPlainAndLogin) {
  for (auto mech : {smtp::ClientAuth::kPlain, smtp::ClientAuth::kLogin}) {
    startServer(authServer("LOGIN PLAIN", "relay-user", "s3cret"));
    auto c = makeConfig(port);
    c.relays["default"].auth = config::RelayAuth{"relay-user", Secret("s3cret")};
    options.auth_mechanism["default"] = mech;
    startEngine(c);
    EXPECT_EQ(store->waitFinal(submit(makeMessage({"a@example.net"}))).state, MessageState::kSent);
    loop.call([&] {
      ASSERT_EQ(server->accepted.size(), 1U);
      EXPECT_TRUE(server->accepted[0].authenticated);
      engine.reset();
      server.reset();
    });
  }
}

class FixedTokenSource : public TokenSource {
public:
  FixedTokenSource(net::Loop& loop, std::string token) : loop_(loop), token_(std::move(token)) {}
  void token(std::function<void(Result<Secret>)> done) override {
    ++calls;
    loop_.defer([done = std::move(done), t = token_] { done(Secret(t)); });
  }
  int calls = 0;

private:
  net::Loop& loop_;
  std::string token_;
};

TEST_F(DeliveryTest, XOAuth2WithATokenSource) {
  startServer(authServer("XOAUTH2", "rep1@acme.example", "ya29.token"));
  auto c = makeConfig(port);
  c.relays["default"].auth = config::RelayAuth{"rep1@acme.example", Secret()};
  auto tokens = std::make_shared<FixedTokenSource>(loop.loop(), "ya29.token");
  options.token_sources["default"] = tokens;
  startEngine(c);
  EXPECT_EQ(store->waitFinal(submit(makeMessage({"a@example.net"}))).state, MessageState::kSent);
  loop.call([&] {
    ASSERT_EQ(server->accepted.size(), 1U);
    EXPECT_TRUE(server->accepted[0].authenticated);
    EXPECT_EQ(tokens->calls, 1);
  });
}

TEST_F(DeliveryTest, StartTls) {
  auto tls = testServerTls();
  if (!tls) {
    GTEST_SKIP() << "openssl command not available";
  }
  FakeSmtpServer::Options o = authServer("PLAIN", "u", "p");
  o.starttls = tls;
  startServer(o);
  auto c = makeConfig(port);
  c.relays["default"].server.tls = config::TlsMode::kStarttls;
  c.relays["default"].server.ca_file = testCert().cert;
  c.relays["default"].auth = config::RelayAuth{"u", Secret("p")};
  startEngine(c);
  EXPECT_EQ(store->waitFinal(submit(makeMessage({"a@example.net"}))).state, MessageState::kSent);
  loop.call([&] {
    ASSERT_EQ(server->accepted.size(), 1U);
    EXPECT_TRUE(server->accepted[0].tls);
    EXPECT_TRUE(server->accepted[0].authenticated);
  });
}

TEST_F(DeliveryTest, ImplicitTls) {
  auto tls = testServerTls();
  if (!tls) {
    GTEST_SKIP() << "openssl command not available";
  }
  FakeSmtpServer::Options o;
  o.implicit_tls = tls;
  startServer(o);
  auto c = makeConfig(port);
  c.relays["default"].server.tls = config::TlsMode::kImplicit;
  c.relays["default"].server.allow_self_signed = true;
  startEngine(c);
  EXPECT_EQ(store->waitFinal(submit(makeMessage({"a@example.net"}))).state, MessageState::kSent);
  loop.call([&] {
    ASSERT_EQ(server->accepted.size(), 1U);
    EXPECT_TRUE(server->accepted[0].tls);
  });
}

TEST_F(DeliveryTest, UntrustedCertificateIsAConnectionFailure) {
  auto tls = testServerTls();
  if (!tls) {
    GTEST_SKIP() << "openssl command not available";
  }
  FakeSmtpServer::Options o;
  o.starttls = tls;
  startServer(o);
  auto c = makeConfig(port);
  c.relays["default"].server.tls = config::TlsMode::kStarttls; // system CAs only
  startEngine(c);
  const std::string id = submit(makeMessage({"a@example.net"}));
  ASSERT_TRUE(loop.eventually([&] { return engine->stats().connect_failures >= 2; }));
  QueuedMessage m = store->get(id);
  EXPECT_EQ(m.state, MessageState::kQueued);
  EXPECT_EQ(m.attempts, 0);
  loop.call([&] { EXPECT_TRUE(server->accepted.empty()); });
}

TEST_F(DeliveryTest, StartTlsRequiredButNotOffered) {
  startServer();
  auto c = makeConfig(port);
  c.relays["default"].server.tls = config::TlsMode::kStarttls;
  startEngine(c);
  const std::string id = submit(makeMessage({"a@example.net"}));
  ASSERT_TRUE(loop.eventually([&] { return engine->stats().connect_failures >= 2; }));
  EXPECT_EQ(store->get(id).attempts, 0);
  loop.call([&] { EXPECT_EQ(server->transactions, 0); }); // never sent in plaintext
}

TEST(DeliveryEngineCreate, BadCaFileIsAnError) {
  LoopThread loop;
  TestStore store(loop);
  auto c = makeConfig(25);
  c.relays["default"].server.tls = config::TlsMode::kStarttls;
  c.relays["default"].server.ca_file = "/nonexistent/ca.pem";
  auto r = loop.call([&] { return DeliveryEngine::create(loop.loop(), c, store.store()); });
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, "tls.config");
  EXPECT_NE(r.error().message.find("relays.default"), std::string::npos);
  store.close();
}

} // namespace
} // namespace mailgate::relay::test

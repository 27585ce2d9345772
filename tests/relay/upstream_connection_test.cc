// UpstreamConnection on its own: the events it reports for a message, a refused connect, a
// silent server, and an early quit.
#include "net/listener.h"
#include "relay/upstream_connection.h"
#include "tests/relay/delivery_test_support.h"

#include <gtest/gtest.h>

namespace mailgate::relay::test {
namespace {

using std::chrono::milliseconds;

struct Recorder : UpstreamConnection::Observer {
  void onUpstreamReady(UpstreamConnection& conn) override {
    ++ready;
    if (on_ready) {
      on_ready(conn);
    }
  }
  void onUpstreamResult(UpstreamConnection&, smtp::ClientSession::MessageResult result,
                        bool eod) override {
    results.push_back(std::move(result));
    end_of_data.push_back(eod);
  }
  void onUpstreamClosed(UpstreamConnection& conn, std::optional<Error> error) override {
    ++closed;
    close_error = std::move(error);
    established = conn.established();
    closing_reply = conn.closingReply();
  }

  int ready = 0;
  int closed = 0;
  bool established = false;
  std::optional<Error> close_error;
  std::optional<smtp::Reply> closing_reply;
  std::vector<smtp::ClientSession::MessageResult> results;
  std::vector<bool> end_of_data;
  std::function<void(UpstreamConnection&)> on_ready;
};

UpstreamSettings settingsFor(uint16_t port) {
  UpstreamSettings s;
  s.id = 1;
  s.relay = "test";
  s.endpoint = net::Endpoint{"127.0.0.1", port};
  s.client.ehlo_name = "gw-test";
  return s;
}

// Everything that lives on the loop thread is made and destroyed there: tests create it inside
// loop.call(), TearDown() destroys it, the connection first.
class UpstreamConnectionTest : public ::testing::Test {
protected:
  // Loop thread: creates the connection to `settings`, reporting to `rec`, and starts it.
  void start(UpstreamSettings settings) {
    conn = std::make_unique<UpstreamConnection>(loop.loop(), std::move(settings), rec);
    conn->start();
  }
  // Waits until the connection reported onUpstreamClosed(); false only after the hang guard.
  [[nodiscard]] bool waitClosed() {
    return loop.eventually([&] { return rec.closed == 1; });
  }

  void TearDown() override {
    loop.call([&] {
      conn.reset();
      server.reset();
      accepted.clear();
      listener.reset();
    });
  }

  LoopThread loop;
  Recorder rec;
  std::unique_ptr<FakeSmtpServer> server;
  net::ListenerPtr listener;
  std::vector<net::ConnectionPtr> accepted;
  std::unique_ptr<UpstreamConnection> conn;
};

TEST_F(UpstreamConnectionTest, SendsAMessageThenQuits) {
  loop.call([&] {
    server = std::make_unique<FakeSmtpServer>(loop.loop());
    rec.on_ready = [&](UpstreamConnection& c) {
      if (rec.ready == 1) {
        smtp::Envelope env{"a@example.com", {"b@example.net", "c@example.net"}, false, false};
        EXPECT_TRUE(c.send(env, "Subject: x\r\n\r\nbody\r\n").has_value());
        EXPECT_FALSE(c.ready());
      } else {
        c.quit();
      }
    };
    start(settingsFor(server->port()));
  });
  ASSERT_TRUE(waitClosed());
  loop.call([&] {
    EXPECT_FALSE(rec.close_error.has_value()) << rec.close_error->describe();
    EXPECT_TRUE(rec.established);
    ASSERT_EQ(rec.results.size(), 1U);
    EXPECT_EQ(rec.results[0].outcome, smtp::MessageOutcome::kDelivered);
    EXPECT_TRUE(rec.end_of_data[0]);
    EXPECT_EQ(server->quits, 1);
    ASSERT_EQ(server->accepted.size(), 1U);
    EXPECT_EQ(server->accepted[0].body, "Subject: x\r\n\r\nbody\r\n");
  });
}

TEST_F(UpstreamConnectionTest, RefusedConnectIsReportedAsClosedBeforeReady) {
  const uint16_t port = unusedPort();
  loop.call([&] { start(settingsFor(port)); });
  ASSERT_TRUE(waitClosed());
  loop.call([&] {
    ASSERT_TRUE(rec.close_error.has_value());
    EXPECT_EQ(rec.close_error->code, "net.connect");
    EXPECT_FALSE(rec.established);
    EXPECT_EQ(rec.ready, 0);
    EXPECT_FALSE(rec.closing_reply.has_value()); // no server ever answered
  });
}

// A refused login ends the session; the reply that refused it is kept for the caller to classify
// (the Microsoft 365 route reads 535 5.7.139 and friends from it).
TEST_F(UpstreamConnectionTest, RefusedLoginKeepsTheClosingReply) {
  uint16_t port = 0;
  loop.call([&] {
    FakeSmtpServer::Options o;
    o.auth_mechanisms = "LOGIN PLAIN";
    o.username = "rep1@acme.example";
    o.password = "right";
    server = std::make_unique<FakeSmtpServer>(loop.loop(), o);
    port = server->port();
    UpstreamSettings s = settingsFor(port);
    s.client.auth = smtp::ClientAuth::kLogin;
    s.client.username = "rep1@acme.example";
    s.client.password = "wrong";
    start(std::move(s));
  });
  ASSERT_TRUE(waitClosed());
  loop.call([&] {
    ASSERT_TRUE(rec.close_error.has_value());
    EXPECT_EQ(rec.close_error->code, "smtp.auth_failed");
    EXPECT_FALSE(rec.established);
    ASSERT_TRUE(rec.closing_reply.has_value());
    EXPECT_EQ(rec.closing_reply->code, 535);
    EXPECT_EQ(rec.closing_reply->enhanced, "5.7.8");
  });
}

TEST_F(UpstreamConnectionTest, SilentServerTimesOut) {
  loop.call([&] {
    auto l = net::Listener::listen(loop.loop(), net::Endpoint{"127.0.0.1", 0},
                                   [&](net::ConnectionPtr c) { accepted.push_back(std::move(c)); });
    ASSERT_TRUE(l.has_value());
    listener = std::move(*l);
    UpstreamSettings s = settingsFor(listener->port());
    s.timeouts.reply = milliseconds(50);
    start(s);
  });
  ASSERT_TRUE(waitClosed());
  loop.call([&] {
    ASSERT_TRUE(rec.close_error.has_value());
    EXPECT_NE(rec.close_error->message.find("no reply from the server"), std::string::npos)
        << rec.close_error->describe();
    EXPECT_FALSE(rec.established);
  });
}

TEST_F(UpstreamConnectionTest, QuitBeforeConnectedEndsQuietly) {
  const uint16_t port = unusedPort();
  loop.call([&] {
    start(settingsFor(port));
    conn->quit();
    EXPECT_EQ(rec.closed, 0); // never from inside the call
  });
  ASSERT_TRUE(waitClosed());
  loop.call([&] { EXPECT_FALSE(rec.close_error.has_value()); });
}

} // namespace
} // namespace mailgate::relay::test

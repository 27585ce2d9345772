// The API port's driver over real loopback sockets: asynchronous answers reach the socket,
// a client that never reads is held back (the stream's writer sees the bytes wait), drain,
// the connection cap and the idle timeout.
#include "gateway/api/api_server.h"
#include "net/connector.h"
#include "net/timer.h"
#include "tests/net/test_util.h"

#include <gtest/gtest.h>
#include <memory>
#include <string>
#include <vector>

namespace mailgate::api {
namespace {

using net::test::RecordingHandler;
using net::test::TestLoop;
using std::chrono::milliseconds;

HttpResponse text(std::string body) {
  HttpResponse r;
  r.headers.emplace_back("content-type", "text/plain");
  r.body = std::move(body);
  return r;
}

// A client connection: connects, keeps what it reads in `handler.received`.
struct Client {
  RecordingHandler handler;
  net::ConnectionPtr conn;
  net::PendingConnectPtr pending;
  std::optional<Error> error;

  void open(net::Loop& loop, uint16_t port, std::function<void(Client&)> connected) {
    pending = net::connect(loop, net::Endpoint{"127.0.0.1", port}, {},
                           [this, connected = std::move(connected)](Result<net::ConnectionPtr> c) {
                             if (!c) {
                               error = c.error();
                               return;
                             }
                             conn = std::move(*c);
                             conn->setHandler(&handler);
                             connected(*this);
                           });
  }
};

std::unique_ptr<ApiServer> makeServer(net::Loop& loop, AsyncHttpHandler handler,
                                      ApiServerOptions options = {}) {
  options.address = net::Endpoint{"127.0.0.1", 0};
  auto server = ApiServer::create(loop, std::move(options), std::move(handler));
  EXPECT_TRUE(server.has_value()) << (server ? "" : server.error().describe());
  return server ? std::move(*server) : nullptr;
}

TEST(ApiServer, AnswerGivenLaterReachesTheClient) {
  TestLoop loop;
  auto later = net::Timer::create(*loop);
  auto server = makeServer(*loop, [&](const HttpExchangePtr& ex) {
    later->start(milliseconds(20), [ex] { ex->respond(text("later " + ex->request().path)); });
  });
  ASSERT_TRUE(server);
  Client client;
  client.open(*loop, server->port(),
              [](Client& c) { c.conn->write("GET /x HTTP/1.1\r\nHost: t\r\n\r\n"); });
  client.handler.on_read = [&](std::span<const char>) {
    if (client.handler.received.ends_with("later /x")) {
      loop->stop();
    }
  };
  loop.run();
  EXPECT_TRUE(client.handler.received.starts_with("HTTP/1.1 200 OK\r\n"))
      << client.handler.received;
  EXPECT_EQ(server->stats().http1, 1u);
}

TEST(ApiServer, ClientThatNeverReadsHoldsTheStreamBackInsteadOfGrowingSocketBuffers) {
  TestLoop loop;
  constexpr std::size_t kPiece = 64 * 1024;
  constexpr std::size_t kTotal = 64 * 1024 * 1024;
  std::size_t written = 0;
  std::size_t max_pending = 0;
  auto pump = net::Timer::create(*loop);
  HttpExchangePtr stream;
  auto server = makeServer(*loop, [&](const HttpExchangePtr& ex) {
    stream = ex;
    ex->startStream(200, {{"content-type", "application/octet-stream"}});
    pump->startRepeating(milliseconds(1), [&] {
      const std::string piece(kPiece, 's');
      for (int i = 0; i < 16 && written < kTotal; ++i) {
        ASSERT_TRUE(stream->write(piece));
        written += kPiece;
      }
      max_pending = std::max(max_pending, stream->pendingBytes());
      if (written >= kTotal) {
        pump->stop();
        loop->stop();
      }
    });
  });
  ASSERT_TRUE(server);
  Client client;
  client.open(*loop, server->port(), [](Client& c) {
    c.conn->write("GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    c.conn->pauseRead(); // and never reads again
  });
  loop.run(std::chrono::seconds(60));
  ASSERT_EQ(written, kTotal);
  // Kernel buffers on loopback take a few MiB and the driver holds at most its high-water mark;
  // everything else must still be waiting where the writer can see it.
  EXPECT_GT(max_pending, kTotal / 2)
      << "the driver kept taking output from a client that never reads";
}

TEST(ApiServer, DrainAnswersWhatWasAskedThenCloses) {
  TestLoop loop;
  HttpExchangePtr parked;
  auto server = makeServer(*loop, [&](const HttpExchangePtr& ex) { parked = ex; });
  ASSERT_TRUE(server);
  Client idle;
  Client busy;
  bool drained = false;
  int connected = 0;
  auto both = [&](Client&) {
    if (++connected < 2) {
      return;
    }
    busy.conn->write("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
  };
  idle.open(*loop, server->port(), both);
  busy.open(*loop, server->port(), both);
  auto step = net::Timer::create(*loop);
  step->startRepeating(milliseconds(5), [&] {
    if (parked == nullptr || server->stats().open < 2) {
      return;
    }
    step->stop();
    // Runs in a turn after the last connection closed.
    server->drain([&] {
      drained = true;
      EXPECT_TRUE(idle.handler.closed);
      EXPECT_TRUE(busy.handler.closed);
      loop->stop();
    });
    // The answer given after the drain began still goes out, with connection: close.
    step->start(milliseconds(30), [&, p = parked] { p->respond(text("done")); });
  });
  loop.run();
  EXPECT_TRUE(drained);
  EXPECT_TRUE(idle.handler.closed);
  EXPECT_EQ(idle.handler.received, "");
  EXPECT_NE(busy.handler.received.find("connection: close"), std::string::npos)
      << busy.handler.received;
  EXPECT_TRUE(busy.handler.received.ends_with("done"));
}

TEST(ApiServer, ConnectionsOverTheCapAreClosed) {
  TestLoop loop;
  ApiServerOptions options;
  options.max_connections = 1;
  auto server = makeServer(
      *loop, [](const HttpExchangePtr& ex) { ex->respond(text("ok")); }, options);
  ASSERT_TRUE(server);
  Client first;
  Client second;
  first.open(*loop, server->port(),
             [&](Client&) { second.open(*loop, server->port(), [](Client&) {}); });
  second.handler.on_close = [&] { loop->stop(); };
  loop.run();
  EXPECT_TRUE(second.handler.closed);
  EXPECT_FALSE(first.handler.closed);
  EXPECT_EQ(server->stats().refused, 1u);
  EXPECT_EQ(server->stats().open, 1u);
}

TEST(ApiServer, IdleConnectionsAreClosed) {
  TestLoop loop;
  ApiServerOptions options;
  options.idle_timeout = milliseconds(100);
  auto server = makeServer(
      *loop, [](const HttpExchangePtr& ex) { ex->respond(text("ok")); }, options);
  ASSERT_TRUE(server);
  Client client;
  client.open(*loop, server->port(),
              [](Client& c) { c.conn->write("GET / HTTP/1.1\r\nHost: t\r\n\r\n"); });
  client.handler.on_close = [&] { loop->stop(); };
  loop.run();
  EXPECT_TRUE(client.handler.closed);
  EXPECT_TRUE(client.handler.received.ends_with("ok")) << "answered before the idle close";
}

} // namespace
} // namespace mailgate::api

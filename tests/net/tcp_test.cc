// TCP over loopback: echo on IPv4/IPv6, batching, backpressure, source address, errors, and the
// lifetime rules (destroying a connection inside its own callbacks).
#include "net/connection.h"
#include "net/connector.h"
#include "net/listener.h"
#include "test_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace mailgate::net {
namespace {

using std::chrono::milliseconds;
using test::EchoServer;
using test::RecordingHandler;
using test::TestLoop;

// Echoes `message` through `endpoint` (an EchoServer), expecting every step to succeed.
void echoOnce(TestLoop& loop, const Endpoint& endpoint, const std::string& message,
              ConnectOptions options = {}) {
  const auto result = test::echo(loop, endpoint, std::move(options), message, [](Connection& conn) {
    EXPECT_TRUE(conn.isOpen());
    EXPECT_FALSE(conn.peerAddress().empty());
    EXPECT_FALSE(conn.localAddress().empty());
  });
  ASSERT_FALSE(result.connect_error) << result.connect_error->describe();
  EXPECT_EQ(result.echoed, message);
  EXPECT_TRUE(result.closed);
  EXPECT_FALSE(result.close_error) << result.close_error->describe();
}

TEST(Tcp, EchoOverIpv4) {
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1");
  ASSERT_NE(server.endpoint().port, 0);
  echoOnce(loop, server.endpoint(), "hello over IPv4\r\n");
  ASSERT_EQ(server.peers.size(), 1u);
  EXPECT_TRUE(server.peers[0].starts_with("127.0.0.1:"));
}

TEST(Tcp, EchoOverIpv6) {
  TestLoop loop;
  auto probe = Listener::listen(*loop, Endpoint{"::1", 0}, [](ConnectionPtr) {});
  if (!probe) {
    GTEST_SKIP() << "no IPv6 loopback here: " << probe.error().describe();
  }
  probe->reset();
  EchoServer server(*loop, "::1");
  echoOnce(loop, server.endpoint(), "hello over IPv6\r\n");
  ASSERT_EQ(server.peers.size(), 1u);
  EXPECT_TRUE(server.peers[0].starts_with("[::1]:")) << server.peers[0];
}

TEST(Tcp, NamesAreResolved) {
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1");
  // "localhost" may resolve to ::1 first, where nothing listens: the next address is tried.
  echoOnce(loop, Endpoint{"localhost", server.endpoint().port}, "by name");
}

TEST(Tcp, ManyWritesInOneTurnBecomeOneSocketWrite) {
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1");
  RecordingHandler handler;
  ConnectionPtr conn;
  std::string expected;
  handler.on_drained = [&] {
    // Checked at the first drain, before the echo comes back and anything else is written.
    EXPECT_EQ(conn->stats().socket_writes, 1u);
    EXPECT_EQ(conn->stats().bytes_written, expected.size());
  };
  handler.on_read = [&](std::span<const char>) {
    if (handler.received.size() == expected.size()) {
      loop->stop();
    }
  };
  auto pending = connect(*loop, server.endpoint(), {}, [&](Result<ConnectionPtr> result) {
    ASSERT_TRUE(result) << result.error().describe();
    conn = std::move(*result);
    conn->setHandler(&handler);
    for (int i = 0; i < 1000; ++i) {
      std::string line = "250-line " + std::to_string(i) + "\r\n";
      expected += line;
      ASSERT_TRUE(conn->write(line));
    }
    EXPECT_EQ(conn->pendingWriteBytes(), expected.size());
    EXPECT_EQ(conn->stats().socket_writes, 0u); // nothing is written synchronously
  });
  loop.run();
  EXPECT_EQ(handler.received, expected);
  EXPECT_GE(handler.drained, 1);
}

TEST(Tcp, LargeTransferBothWaysWithBackpressure) {
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1");
  const std::string data = test::pattern(8 * 1024 * 1024);
  constexpr size_t kChunk = 64 * 1024;
  constexpr size_t kHighWater = 1024 * 1024;
  RecordingHandler handler;
  ConnectionPtr conn;
  size_t sent = 0;
  size_t max_pending = 0;
  auto pump = [&] {
    while (sent < data.size() && conn->pendingWriteBytes() < kHighWater) {
      const size_t n = std::min(kChunk, data.size() - sent);
      conn->write(std::string_view(data).substr(sent, n));
      sent += n;
    }
    max_pending = std::max(max_pending, conn->pendingWriteBytes());
  };
  handler.on_drained = pump;
  handler.on_read = [&](std::span<const char>) {
    if (handler.received.size() == data.size()) {
      conn->close();
    }
  };
  handler.on_close = [&] { loop->stop(); };
  auto pending = connect(*loop, server.endpoint(), {}, [&](Result<ConnectionPtr> result) {
    ASSERT_TRUE(result) << result.error().describe();
    conn = std::move(*result);
    conn->setHandler(&handler);
    pump();
  });
  loop.run(std::chrono::seconds(60));
  EXPECT_EQ(sent, data.size());
  EXPECT_LE(max_pending, kHighWater + kChunk);
  ASSERT_EQ(handler.received.size(), data.size());
  EXPECT_TRUE(handler.received == data);
  EXPECT_EQ(server.echoed, data.size());
  EXPECT_FALSE(handler.close_error);
  EXPECT_TRUE(server.errors.empty());
}

TEST(Tcp, BindAddressIsTheSourceTheServerSees) {
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1");
  ConnectOptions options;
  options.bind_address = "127.0.0.2";
  echoOnce(loop, server.endpoint(), "from 127.0.0.2", options);
  ASSERT_EQ(server.peers.size(), 1u);
  EXPECT_TRUE(server.peers[0].starts_with("127.0.0.2:")) << server.peers[0];
}

TEST(Tcp, BindAddressNotOnThisMachineIsAnError) {
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1");
  ConnectOptions options;
  options.bind_address = "192.0.2.1"; // TEST-NET-1: never assigned here; bind fails locally
  const auto error = test::connectError(loop, server.endpoint(), options);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, "net.bind") << error->describe();
  EXPECT_NE(error->hint.find("bind_address"), std::string::npos) << error->describe();
}

TEST(Tcp, BindAddressOfTheWrongFamilyIsAnError) {
  TestLoop loop;
  ConnectOptions options;
  options.bind_address = "::1";
  const auto error = test::connectError(loop, Endpoint{"127.0.0.1", 9}, options);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, "net.bind") << error->describe();
}

TEST(Tcp, ConnectRefused) {
  TestLoop loop;
  uint16_t port = 0;
  {
    EchoServer closed(*loop, "127.0.0.1");
    port = closed.endpoint().port;
  }
  // connectError() also checks that the refusal is reported in a later turn, not inline.
  const auto error = test::connectError(loop, Endpoint{"127.0.0.1", port});
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, "net.connect");
  EXPECT_NE(error->message.find("refused"), std::string::npos) << error->describe();
  EXPECT_FALSE(error->hint.empty());
}

// A listening socket whose accept queue is full drops new SYNs, so a connect to it hangs.
class FullBacklog {
public:
  FullBacklog() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(fd_, 0) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot set up the listening socket";
      return;
    }
    port_ = ntohs(addr.sin_port);
    // Fill the queue: each filler completes its handshake and is never accepted.
    for (int i = 0; i < 3; ++i) {
      int c = ::socket(AF_INET, SOCK_STREAM, 0);
      ::fcntl(c, F_SETFL, O_NONBLOCK);
      ::connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
      pollfd p{c, POLLOUT, 0};
      ::poll(&p, 1, 200);
      fillers_.push_back(c);
    }
  }
  ~FullBacklog() {
    for (int c : fillers_) {
      ::close(c);
    }
    ::close(fd_);
  }
  [[nodiscard]] uint16_t port() const { return port_; }

private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::vector<int> fillers_;
};

TEST(Tcp, ConnectTimeout) {
  TestLoop loop;
  FullBacklog backlog;
  ConnectOptions options;
  options.timeout = milliseconds(200);
  const auto error = test::connectError(loop, Endpoint{"127.0.0.1", backlog.port()}, options);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, "net.connect_timeout") << error->describe();
  EXPECT_FALSE(error->hint.empty());
}

TEST(Tcp, DestroyingThePendingConnectCancelsIt) {
  TestLoop loop;
  FullBacklog backlog;
  bool called = false;
  auto pending = connect(*loop, Endpoint{"127.0.0.1", backlog.port()}, {},
                         [&](Result<ConnectionPtr>) { called = true; });
  auto timer = Timer::create(*loop);
  timer->start(milliseconds(20), [&] {
    pending.reset();
    loop->defer([&] { loop->stop(); });
  });
  loop.run();
  EXPECT_FALSE(called);
}

TEST(Tcp, DestroyingAConnectionInsideItsOwnOnReadIsSafe) {
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1");
  RecordingHandler handler;
  ConnectionPtr conn;
  handler.on_read = [&](std::span<const char>) {
    conn.reset(); // the Connection whose callback is running
    // No callback may follow; stop a couple of turns later to give one the chance to misfire.
    loop->defer([&] { loop->defer([&] { loop->stop(); }); });
  };
  auto pending = connect(*loop, server.endpoint(), {}, [&](Result<ConnectionPtr> result) {
    ASSERT_TRUE(result) << result.error().describe();
    conn = std::move(*result);
    conn->setHandler(&handler);
    conn->write("ping");
  });
  loop.run();
  EXPECT_EQ(handler.received, "ping");
  EXPECT_FALSE(handler.closed); // destroyed first: onClose never fires
  EXPECT_EQ(conn, nullptr);
}

TEST(Tcp, DestroyingAConnectionInsideOnCloseIsSafe) {
  TestLoop loop;
  test::RecordingServer server(*loop);
  server.handler.on_close = [&] {
    server.conn.reset();
    loop->defer([&] { loop->stop(); });
  };
  ConnectionPtr client;
  auto pending = connect(*loop, server.endpoint(), {}, [&](Result<ConnectionPtr> result) {
    ASSERT_TRUE(result) << result.error().describe();
    client = std::move(*result);
    client->close();
  });
  loop.run();
  EXPECT_TRUE(server.handler.closed);
  EXPECT_FALSE(server.handler.close_error);
}

TEST(Tcp, CallbacksNeverFireInsideUserCalls) {
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1");
  bool in_call = false;
  RecordingHandler handler;
  ConnectionPtr conn;
  auto check = [&] { EXPECT_FALSE(in_call) << "callback fired re-entrantly"; };
  handler.on_read = [&](std::span<const char>) {
    check();
    in_call = true;
    conn->write("more");
    conn->pauseRead();
    conn->resumeRead();
    conn->abort();
    in_call = false;
  };
  handler.on_drained = check;
  handler.on_close = [&] {
    check();
    loop->stop();
  };
  auto pending = connect(*loop, server.endpoint(), {}, [&](Result<ConnectionPtr> result) {
    ASSERT_TRUE(result) << result.error().describe();
    conn = std::move(*result);
    in_call = true;
    conn->setHandler(&handler);
    conn->write("x");
    in_call = false;
  });
  loop.run();
  EXPECT_TRUE(handler.closed);
  EXPECT_FALSE(handler.close_error); // abort() is an orderly local end
}

TEST(Tcp, CloseFlushesEverythingWrittenBefore) {
  TestLoop loop;
  test::RecordingServer server(*loop);
  const std::string data = test::pattern(2 * 1024 * 1024, 5);
  RecordingHandler client_handler;
  const auto both_closed = test::stopAfter(loop, 2);
  server.handler.on_close = both_closed;
  client_handler.on_close = both_closed;
  ConnectionPtr client;
  auto pending = connect(*loop, server.endpoint(), {}, [&](Result<ConnectionPtr> result) {
    ASSERT_TRUE(result) << result.error().describe();
    client = std::move(*result);
    client->setHandler(&client_handler);
    client->write(data);
    client->close();
    EXPECT_FALSE(client->write("too late"));
    EXPECT_FALSE(client->isOpen());
  });
  loop.run();
  EXPECT_TRUE(server.handler.received == data);
  EXPECT_FALSE(server.handler.close_error);
  EXPECT_FALSE(client_handler.close_error);
}

TEST(Tcp, DestroyingAfterCloseStillDeliversTheLastBytes) {
  TestLoop loop;
  test::RecordingServer server(*loop);
  server.handler.on_close = [&] { loop->stop(); };
  auto pending = connect(*loop, server.endpoint(), {}, [&](Result<ConnectionPtr> result) {
    ASSERT_TRUE(result) << result.error().describe();
    ConnectionPtr client = std::move(*result);
    client->write("221 2.0.0 Bye\r\n");
    client->close();
    // `client` is destroyed here: the graceful close goes on in the background.
  });
  loop.run();
  EXPECT_EQ(server.handler.received, "221 2.0.0 Bye\r\n");
  EXPECT_FALSE(server.handler.close_error);
}

TEST(Tcp, ListenerStopRefusesNewConnections) {
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1");
  server.listener().stop();
  const auto error = test::connectError(loop, server.endpoint());
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, "net.connect");
}

TEST(Tcp, ListenErrorsAreValuesWithHints) {
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1");
  auto again = Listener::listen(*loop, server.endpoint(), [](ConnectionPtr) {});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, "net.listen");
  EXPECT_NE(again.error().message.find("in use"), std::string::npos) << again.error().describe();
  EXPECT_FALSE(again.error().hint.empty());

  auto foreign = Listener::listen(*loop, Endpoint{"192.0.2.1", 0}, [](ConnectionPtr) {});
  ASSERT_FALSE(foreign);
  EXPECT_EQ(foreign.error().code, "net.listen");
  EXPECT_FALSE(foreign.error().hint.empty()) << foreign.error().describe();

  auto name = Listener::listen(*loop, Endpoint{"mail.example.com", 25}, [](ConnectionPtr) {});
  ASSERT_FALSE(name);
  EXPECT_NE(name.error().hint.find("IP"), std::string::npos);
}

TEST(Tcp, StoppingTheLoopClosesEverythingWithoutCallbacks) {
  RecordingHandler client_handler;
  ConnectionPtr client;
  ListenerPtr listener_keep;
  {
    TestLoop loop;
    EchoServer server(*loop, "127.0.0.1");
    auto pending = connect(*loop, server.endpoint(), {}, [&](Result<ConnectionPtr> result) {
      ASSERT_TRUE(result) << result.error().describe();
      client = std::move(*result);
      client->setHandler(&client_handler);
      client->write("left open");
    });
    client_handler.on_read = [&](std::span<const char>) { loop->stop(); };
    auto l = Listener::listen(*loop, Endpoint{"127.0.0.1", 0}, [](ConnectionPtr) {});
    ASSERT_TRUE(l);
    listener_keep = std::move(*l);
    loop.run();
    EXPECT_FALSE(client_handler.closed); // no callbacks during shutdown
  }
  // The loop is gone; what the test still holds is inert and safe to use and destroy.
  EXPECT_FALSE(client->write("nobody hears this"));
  client->close();
  client.reset();
  listener_keep.reset();
  EXPECT_FALSE(client_handler.closed);
}

} // namespace
} // namespace mailgate::net

namespace mailgate::net {
namespace {

TEST(TcpClose, GivesUpWhenThePeerStopsReading) {
  TestLoop loop;
  test::SilentServer idle(*loop); // never reads: the receive window fills up
  RecordingHandler handler;
  handler.on_close = [&] { loop->stop(); };
  ConnectionPtr client;
  const std::string big(64 * 1024 * 1024, 'x'); // far more than loopback socket buffers hold
  auto pending = connect(*loop, idle.endpoint(), {}, [&](Result<ConnectionPtr> r) {
    ASSERT_TRUE(r) << r.error().describe();
    client = std::move(*r);
    client->setHandler(&handler);
    client->setCloseTimeout(std::chrono::milliseconds(200));
    client->write(big);
    client->close();
  });
  loop.run();
  ASSERT_TRUE(handler.close_error);
  EXPECT_EQ(handler.close_error->code, "net.close_timeout") << handler.close_error->describe();
}

TEST(TcpClose, CompletesCleanlyWhenThePeerNeverClosesItsSide) {
  TestLoop loop;
  test::SilentServer idle(*loop); // never reads, so never sees our FIN nor answers it
  RecordingHandler handler;
  handler.on_close = [&] { loop->stop(); };
  ConnectionPtr client;
  auto pending = connect(*loop, idle.endpoint(), {}, [&](Result<ConnectionPtr> r) {
    ASSERT_TRUE(r) << r.error().describe();
    client = std::move(*r);
    client->setHandler(&handler);
    client->setCloseTimeout(std::chrono::milliseconds(300));
    client->write("QUIT\r\n");
    client->close();
  });
  loop.run();
  EXPECT_TRUE(handler.closed);
  EXPECT_FALSE(handler.close_error) << handler.close_error->describe();
}

TEST(Tcp, BytesThatArriveBeforeTheHandlerIsSetAreKept) {
  TestLoop loop;
  RecordingHandler server_handler;
  ConnectionPtr server_conn;
  auto later = Timer::create(*loop);
  auto listener = Listener::listen(*loop, Endpoint{"127.0.0.1", 0}, [&](ConnectionPtr c) {
    server_conn = std::move(c);
    later->start(std::chrono::milliseconds(30), [&] { server_conn->setHandler(&server_handler); });
  });
  ASSERT_TRUE(listener);
  server_handler.on_read = [&](std::span<const char>) {
    if (server_handler.received.size() == 5) {
      loop->stop();
    }
  };
  ConnectionPtr client;
  auto pending = connect(*loop, (*listener)->endpoint(), {}, [&](Result<ConnectionPtr> r) {
    ASSERT_TRUE(r) << r.error().describe();
    client = std::move(*r);
    client->write("early");
  });
  loop.run();
  EXPECT_EQ(server_handler.received, "early");
}

} // namespace
} // namespace mailgate::net

// HttpClient against a small HTTP/1.1 server written on net::Listener, and against real nghttpd
// (HTTP/2 over TLS), over loopback only.
#include "net/http_client.h"
#include "net/listener.h"
#include "net/tls_context.h"
#include "test_util.h"

#include <arpa/inet.h>
#include <chrono>
#include <csignal>
#include <fmt/format.h>
#include <fstream>
#include <gtest/gtest.h>
#include <map>
#include <netinet/in.h>
#include <optional>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace mailgate::net {
namespace {

using std::chrono::milliseconds;
using test::TestLoop;

struct ParsedRequest {
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers; // lower-cased names
  std::string body;
};

std::string lower(std::string s) {
  for (char& c : s) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return s;
}

// Parses one request from the front of `buffer` (request line, headers, Content-Length body).
// nullopt while incomplete; consumes what it parsed.
std::optional<ParsedRequest> parseRequest(std::string& buffer) {
  const auto end = buffer.find("\r\n\r\n");
  if (end == std::string::npos) {
    return std::nullopt;
  }
  ParsedRequest req;
  const std::string head = buffer.substr(0, end);
  size_t line_end = head.find("\r\n");
  const std::string first = head.substr(0, line_end);
  const auto sp1 = first.find(' ');
  const auto sp2 = first.find(' ', sp1 + 1);
  req.method = first.substr(0, sp1);
  req.target = first.substr(sp1 + 1, sp2 - sp1 - 1);
  size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    size_t next = head.find("\r\n", pos);
    if (next == std::string::npos) {
      next = head.size();
    }
    const std::string line = head.substr(pos, next - pos);
    const auto colon = line.find(':');
    if (colon != std::string::npos) {
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') {
        value.erase(0, 1);
      }
      req.headers[lower(line.substr(0, colon))] = value;
    }
    pos = next + 2;
  }
  size_t length = 0;
  if (auto it = req.headers.find("content-length"); it != req.headers.end()) {
    length = std::stoul(it->second);
  }
  if (buffer.size() < end + 4 + length) {
    return std::nullopt;
  }
  req.body = buffer.substr(end + 4, length);
  buffer.erase(0, end + 4 + length);
  return req;
}

std::string response(int status, const std::string& body,
                     const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " Whatever\r\n";
  for (const auto& [name, value] : headers) {
    out += name + ": " + value + "\r\n";
  }
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  return out;
}

// Answers each request with what `script` returns; an empty answer means never answer.
class HttpServer {
public:
  using Script = std::function<std::string(const ParsedRequest&)>;

  HttpServer(Loop& loop, Script script, TlsContextPtr tls = nullptr) : script_(std::move(script)) {
    auto listener = Listener::listen(loop, Endpoint{"127.0.0.1", 0}, [this](ConnectionPtr conn) {
      auto session = std::make_unique<Session>();
      session->server = this;
      peers.push_back(conn->peerAddress());
      alpns.push_back(conn->alpnSelected());
      if (abort_on_accept) {
        conn->abort();
      }
      session->conn = std::move(conn);
      session->conn->setHandler(session.get());
      sessions_.push_back(std::move(session));
    });
    EXPECT_TRUE(listener.has_value()) << listener.error().describe();
    if (listener) {
      listener_ = std::move(*listener);
      if (tls) {
        listener_->setTls(std::move(tls));
      }
    }
  }
  [[nodiscard]] uint16_t port() const { return listener_ ? listener_->port() : 0; }
  std::string url(const std::string& path, const std::string& scheme = "http") const {
    return scheme + "://127.0.0.1:" + std::to_string(port()) + path;
  }
  std::vector<ParsedRequest> requests;
  std::vector<std::string> peers; // of each accepted connection
  std::vector<std::string> alpns; // what each accepted connection agreed
  bool abort_on_accept = false;   // e.g. for an h2 client: this server speaks only HTTP/1.1

private:
  struct Session : Connection::Handler {
    HttpServer* server = nullptr;
    ConnectionPtr conn;
    std::string buffer;
    void onRead(std::span<const char> data) override {
      buffer.append(data.data(), data.size());
      while (auto req = parseRequest(buffer)) {
        server->requests.push_back(*req);
        const std::string answer = server->script_(*req);
        if (!answer.empty()) {
          conn->write(answer);
        }
      }
    }
    void onClose(const Error*) override {}
  };
  Script script_;
  ListenerPtr listener_;
  std::vector<std::unique_ptr<Session>> sessions_;
};

HttpClientPtr makeClient(Loop& loop) {
  auto client = HttpClient::create(loop);
  EXPECT_TRUE(client.has_value()) << client.error().describe();
  return client ? std::move(*client) : nullptr;
}

// Sends one request and runs the loop until it completes.
Result<HttpClientResponse> sendOne(TestLoop& loop, HttpClient& client, HttpClientRequest request) {
  std::optional<Result<HttpClientResponse>> got;
  bool inside_send = true;
  auto pending = client.send(std::move(request), [&](Result<HttpClientResponse> result) {
    EXPECT_FALSE(inside_send);
    got = std::move(result);
    loop->stop();
  });
  inside_send = false;
  loop.run();
  EXPECT_FALSE(loop.timedOut());
  if (!got) {
    return fail("test.none", "done never fired");
  }
  return std::move(*got);
}

std::string header(const HttpClientResponse& response, const std::string& name) {
  for (const auto& [n, v] : response.headers) {
    if (n == name) {
      return v;
    }
  }
  return "(missing)";
}

TEST(HttpClient, PostArrivesIntactAndResponseComesBack) {
  TestLoop loop;
  HttpServer server(*loop, [](const ParsedRequest&) {
    return response(201, "created!", {{"X-Reply", "yes"}, {"Content-Type", "text/plain"}});
  });
  auto client = makeClient(*loop);
  ASSERT_TRUE(client);
  HttpClientRequest request;
  request.url = server.url("/hook?x=1");
  request.headers = {{"Authorization", "Bearer s3cret"}, {"Content-Type", "application/json"}};
  request.body = R"({"event":"delivered"})";
  auto result = sendOne(loop, *client, request);
  ASSERT_TRUE(result.has_value()) << result.error().describe();
  EXPECT_EQ(result->status, 201);
  EXPECT_EQ(result->http_version, "1.1");
  EXPECT_EQ(result->body, "created!");
  EXPECT_EQ(header(*result, "x-reply"), "yes");
  EXPECT_EQ(header(*result, "content-type"), "text/plain");
  ASSERT_EQ(server.requests.size(), 1u);
  const auto& got = server.requests[0];
  EXPECT_EQ(got.method, "POST");
  EXPECT_EQ(got.target, "/hook?x=1");
  EXPECT_EQ(got.headers.at("authorization"), "Bearer s3cret");
  EXPECT_EQ(got.headers.at("content-type"), "application/json");
  EXPECT_EQ(got.body, request.body);
  EXPECT_EQ(got.headers.count("expect"), 0u);
}

TEST(HttpClient, GetAndPutWork) {
  TestLoop loop;
  HttpServer server(*loop, [](const ParsedRequest& req) { return response(200, req.method); });
  auto client = makeClient(*loop);
  ASSERT_TRUE(client);
  HttpClientRequest get;
  get.method = "GET";
  get.url = server.url("/");
  auto result = sendOne(loop, *client, get);
  ASSERT_TRUE(result.has_value()) << result.error().describe();
  EXPECT_EQ(result->body, "GET");
  HttpClientRequest put;
  put.method = "PUT";
  put.url = server.url("/");
  put.body = "data";
  TestLoop loop2;
  auto client2 = makeClient(*loop2);
  HttpServer server2(*loop2, [](const ParsedRequest& req) { return response(200, req.method); });
  put.url = server2.url("/");
  result = sendOne(loop2, *client2, put);
  ASSERT_TRUE(result.has_value()) << result.error().describe();
  EXPECT_EQ(result->body, "PUT");
  ASSERT_EQ(server2.requests.size(), 1u);
  EXPECT_EQ(server2.requests[0].body, "data");
}

TEST(HttpClient, ServerErrorIsAResponse) {
  TestLoop loop;
  HttpServer server(*loop, [](const ParsedRequest&) { return response(500, "oops"); });
  auto client = makeClient(*loop);
  ASSERT_TRUE(client);
  HttpClientRequest request;
  request.url = server.url("/");
  auto result = sendOne(loop, *client, request);
  ASSERT_TRUE(result.has_value()) << result.error().describe();
  EXPECT_EQ(result->status, 500);
  EXPECT_EQ(result->body, "oops");
}

TEST(HttpClient, RedirectIsNotFollowed) {
  TestLoop loop;
  HttpServer server(*loop, [](const ParsedRequest&) {
    return response(302, "", {{"Location", "http://127.0.0.1:1/elsewhere"}});
  });
  auto client = makeClient(*loop);
  ASSERT_TRUE(client);
  HttpClientRequest request;
  request.url = server.url("/");
  auto result = sendOne(loop, *client, request);
  ASSERT_TRUE(result.has_value()) << result.error().describe();
  EXPECT_EQ(result->status, 302);
  EXPECT_EQ(server.requests.size(), 1u);
}

TEST(HttpClient, BindAddressIsTheSource) {
  TestLoop loop;
  HttpServer server(*loop, [](const ParsedRequest&) { return response(200, "ok"); });
  auto client = makeClient(*loop);
  ASSERT_TRUE(client);
  HttpClientRequest request;
  request.url = server.url("/");
  request.bind_address = "127.0.0.1";
  auto result = sendOne(loop, *client, request);
  ASSERT_TRUE(result.has_value()) << result.error().describe();
  ASSERT_EQ(server.peers.size(), 1u);
  EXPECT_TRUE(server.peers[0].starts_with("127.0.0.1:")) << server.peers[0];
}

TEST(HttpClient, ConnectionsAreReused) {
  TestLoop loop;
  HttpServer server(*loop, [](const ParsedRequest&) { return response(200, "ok"); });
  auto client = makeClient(*loop);
  ASSERT_TRUE(client);
  HttpClientRequest request;
  request.method = "GET";
  request.url = server.url("/");
  int remaining = 3;
  PendingHttpPtr pending;
  std::function<void()> next = [&] {
    pending = client->send(request, [&](Result<HttpClientResponse> result) {
      EXPECT_TRUE(result.has_value());
      if (--remaining == 0) {
        loop->stop();
      } else {
        next();
      }
    });
  };
  next();
  loop.run();
  EXPECT_EQ(remaining, 0);
  EXPECT_EQ(server.requests.size(), 3u);
  EXPECT_EQ(server.peers.size(), 1u);
}

TEST(HttpClient, ConnectionRefused) {
  TestLoop loop;
  uint16_t port = 0;
  {
    auto listener = Listener::listen(*loop, Endpoint{"127.0.0.1", 0}, [](ConnectionPtr) {});
    ASSERT_TRUE(listener.has_value());
    port = (*listener)->port();
  }
  auto client = makeClient(*loop);
  ASSERT_TRUE(client);
  HttpClientRequest request;
  request.url = "http://127.0.0.1:" + std::to_string(port) + "/";
  auto result = sendOne(loop, *client, request);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, "http.connect") << result.error().describe();
  EXPECT_FALSE(result.error().hint.empty());
}

TEST(HttpClient, SilentServerTimesOut) {
  TestLoop loop;
  HttpServer server(*loop, [](const ParsedRequest&) { return std::string(); });
  auto client = makeClient(*loop);
  ASSERT_TRUE(client);
  HttpClientRequest request;
  request.url = server.url("/");
  request.timeout = milliseconds(200);
  request.body = "client_secret=hunter2";
  auto result = sendOne(loop, *client, request);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, "http.timeout") << result.error().describe();
  EXPECT_EQ(result.error().describe().find("hunter2"), std::string::npos);
}

TEST(HttpClient, ResponseTooLarge) {
  TestLoop loop;
  HttpServer server(*loop, [](const ParsedRequest&) { return response(200, test::pattern(5000)); });
  auto client = makeClient(*loop);
  ASSERT_TRUE(client);
  HttpClientRequest request;
  request.url = server.url("/");
  request.max_response_bytes = 1000;
  auto result = sendOne(loop, *client, request);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, "http.too_large") << result.error().describe();
}

TEST(HttpClient, ChunkedResponseTooLarge) {
  TestLoop loop;
  HttpServer server(*loop, [](const ParsedRequest&) {
    const std::string chunk = test::pattern(800);
    std::string out = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 3; ++i) {
      out += fmt::format("{:x}\r\n{}\r\n", chunk.size(), chunk);
    }
    return out + "0\r\n\r\n";
  });
  auto client = makeClient(*loop);
  ASSERT_TRUE(client);
  HttpClientRequest request;
  request.url = server.url("/");
  request.max_response_bytes = 1000;
  auto result = sendOne(loop, *client, request);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, "http.too_large") << result.error().describe();
}

TEST(HttpClient, BadRequestsAreRefusedWithoutLeakingValues) {
  const std::vector<HttpClientRequest> bad = {
      {.url = "ftp://127.0.0.1/"},
      {.url = "not a url"},
      {.method = "PO ST", .url = "http://127.0.0.1:1/"},
      {.url = "http://127.0.0.1:1/", .headers = {{"X-Token", "abc\r\nInjected: yes"}}},
      {.url = "http://127.0.0.1:1/", .headers = {{"Bad Name", "v"}}},
  };
  for (const auto& request : bad) {
    TestLoop loop; // a loop runs once
    auto client = makeClient(*loop);
    ASSERT_TRUE(client);
    auto result = sendOne(loop, *client, request);
    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().code, "http.request") << result.error().describe();
    EXPECT_EQ(result.error().describe().find("Injected"), std::string::npos);
  }
}

TEST(HttpClient, DestroyingPendingCancels) {
  TestLoop loop;
  HttpServer server(*loop, [](const ParsedRequest&) { return std::string(); });
  auto client = makeClient(*loop);
  ASSERT_TRUE(client);
  bool called = false;
  HttpClientRequest request;
  request.url = server.url("/");
  auto pending = client->send(request, [&](Result<HttpClientResponse>) { called = true; });
  auto timer = Timer::create(*loop);
  timer->start(milliseconds(50), [&] {
    pending.reset();
    EXPECT_EQ(client->inFlight(), 0u);
    timer->start(milliseconds(50), [&] { loop->stop(); });
  });
  loop.run();
  EXPECT_FALSE(called);
  EXPECT_FALSE(loop.timedOut());
}

TEST(HttpClient, DestroyingPendingRightAfterSendCancels) {
  TestLoop loop;
  HttpServer server(*loop, [](const ParsedRequest&) { return response(200, "x"); });
  auto client = makeClient(*loop);
  ASSERT_TRUE(client);
  bool called = false;
  HttpClientRequest request;
  request.url = server.url("/");
  client->send(request, [&](Result<HttpClientResponse>) { called = true; }).reset();
  // A bad request completes through a deferred call: cancelling must drop that too.
  request.url = "ftp://x/";
  client->send(request, [&](Result<HttpClientResponse>) { called = true; }).reset();
  auto timer = Timer::create(*loop);
  timer->start(milliseconds(100), [&] { loop->stop(); });
  loop.run();
  EXPECT_FALSE(called);
}

TEST(HttpClient, ManyConcurrentRequestsAllComplete) {
  TestLoop loop;
  HttpServer server(*loop, [](const ParsedRequest& req) { return response(200, req.target); });
  auto client = makeClient(*loop);
  ASSERT_TRUE(client);
  constexpr int kCount = 200;
  std::vector<PendingHttpPtr> pending;
  int completed = 0;
  int good = 0;
  bool inside_send = true;
  for (int i = 0; i < kCount; ++i) {
    HttpClientRequest request;
    request.method = "GET";
    request.url = server.url("/r" + std::to_string(i));
    const std::string expected = "/r" + std::to_string(i);
    pending.push_back(client->send(request, [&, expected](Result<HttpClientResponse> result) {
      EXPECT_FALSE(inside_send);
      ++completed;
      if (result && result->body == expected) {
        ++good;
      } else if (!result) {
        ADD_FAILURE() << result.error().describe();
      }
      if (completed == kCount) {
        loop->stop();
      }
    }));
  }
  inside_send = false;
  EXPECT_EQ(client->inFlight(), static_cast<size_t>(kCount));
  loop.run(std::chrono::seconds(60));
  EXPECT_FALSE(loop.timedOut());
  EXPECT_EQ(completed, kCount);
  EXPECT_EQ(good, kCount);
}

TEST(HttpClient, LoopStopWithRequestsInFlightIsClean) {
  TestLoop loop;
  HttpServer server(*loop, [](const ParsedRequest&) { return std::string(); });
  auto client = makeClient(*loop);
  ASSERT_TRUE(client);
  bool called = false;
  HttpClientRequest request;
  request.url = server.url("/");
  auto pending = client->send(request, [&](Result<HttpClientResponse>) { called = true; });
  auto timer = Timer::create(*loop);
  timer->start(milliseconds(50), [&] { loop->stop(); });
  loop.run();
  EXPECT_FALSE(called);
  // Both are inert now; destroying them after the loop stopped is safe.
  pending.reset();
  client.reset();
}

TEST(HttpClient, DestroyingClientCancelsEverything) {
  TestLoop loop;
  HttpServer server(*loop, [](const ParsedRequest&) { return std::string(); });
  auto client = makeClient(*loop);
  ASSERT_TRUE(client);
  bool called = false;
  HttpClientRequest request;
  request.url = server.url("/");
  auto pending = client->send(request, [&](Result<HttpClientResponse>) { called = true; });
  auto timer = Timer::create(*loop);
  timer->start(milliseconds(50), [&] {
    client.reset();
    timer->start(milliseconds(50), [&] { loop->stop(); });
  });
  loop.run();
  EXPECT_FALSE(called);
  pending.reset();
}

TEST(HttpClient, DoneMayDestroyTheClient) {
  TestLoop loop;
  HttpServer server(*loop, [](const ParsedRequest&) { return response(204, ""); });
  auto client = makeClient(*loop);
  ASSERT_TRUE(client);
  HttpClientRequest request;
  request.url = server.url("/");
  PendingHttpPtr pending;
  pending = client->send(request, [&](Result<HttpClientResponse> result) {
    EXPECT_TRUE(result.has_value());
    pending.reset();
    client.reset();
    loop->stop();
  });
  loop.run();
  EXPECT_FALSE(client);
}

void httpsRoundTrip(bool http2, const std::string& expected_version) {
  const auto* pki = test::pki();
  if (pki == nullptr) {
    GTEST_SKIP() << "no openssl command";
  }
  TestLoop loop;
  TlsServerOptions options;
  options.cert_file = pki->server_cert;
  options.key_file = pki->server_key;
  auto tls = TlsContext::server(options);
  ASSERT_TRUE(tls.has_value()) << tls.error().describe();
  HttpServer server(
      *loop, [](const ParsedRequest& req) { return response(200, req.body); }, *tls);
  auto client = makeClient(*loop);
  ASSERT_TRUE(client);
  HttpClientRequest request;
  request.url = server.url("/token", "https");
  request.ca_file = pki->ca_cert;
  request.body = "grant_type=client_credentials";
  request.http2 = http2;
  auto result = sendOne(loop, *client, request);
  ASSERT_TRUE(result.has_value()) << result.error().describe();
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->body, request.body);
  EXPECT_EQ(result->http_version, expected_version);
}

TEST(HttpClient, HttpsWithPrivateCa) {
  // The test server speaks only HTTP/1.1 and offers no ALPN, so even with h2 offered it is 1.1.
  httpsRoundTrip(true, "1.1");
}

TEST(HttpClient, HttpsWithoutTrustFailsWithTls) {
  const auto* pki = test::pki();
  if (pki == nullptr) {
    GTEST_SKIP() << "no openssl command";
  }
  TestLoop loop;
  TlsServerOptions options;
  options.cert_file = pki->server_cert;
  options.key_file = pki->server_key;
  auto tls = TlsContext::server(options);
  ASSERT_TRUE(tls.has_value()) << tls.error().describe();
  HttpServer server(
      *loop, [](const ParsedRequest&) { return response(200, "x"); }, *tls);
  auto client = makeClient(*loop);
  ASSERT_TRUE(client);
  HttpClientRequest request;
  request.url = server.url("/", "https");
  auto result = sendOne(loop, *client, request);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, "http.tls") << result.error().describe();
}

// The test server cannot speak h2, so the h2 case checks what was agreed and then hangs up.
TEST(HttpClient, OffersH2ViaAlpnOnlyWhenAsked) {
  const auto* pki = test::pki();
  if (pki == nullptr) {
    GTEST_SKIP() << "no openssl command";
  }
  for (const bool http2 : {true, false}) {
    TestLoop loop;
    TlsServerOptions options;
    options.cert_file = pki->server_cert;
    options.key_file = pki->server_key;
    options.alpn = {"h2", "http/1.1"};
    auto tls = TlsContext::server(options);
    ASSERT_TRUE(tls.has_value()) << tls.error().describe();
    HttpServer server(
        *loop, [](const ParsedRequest&) { return response(200, "one"); }, *tls);
    server.abort_on_accept = http2;
    auto client = makeClient(*loop);
    ASSERT_TRUE(client);
    HttpClientRequest request;
    request.url = server.url("/", "https");
    request.ca_file = pki->ca_cert;
    request.http2 = http2;
    auto result = sendOne(loop, *client, request);
    ASSERT_EQ(server.alpns.size(), 1u);
    if (http2) {
      EXPECT_EQ(server.alpns[0], "h2");
      EXPECT_FALSE(result.has_value());
    } else {
      EXPECT_EQ(server.alpns[0], "http/1.1");
      ASSERT_TRUE(result.has_value()) << result.error().describe();
      EXPECT_EQ(result->http_version, "1.1");
    }
  }
}

// nghttpd (nghttp2-server, installed by scripts/bootstrap): a real HTTP/2 server, started on a
// free loopback port with the test CA's certificate, stopped by PID.
class Nghttpd {
public:
  Nghttpd(const test::Pki& pki, const std::string& htdocs) {
    int probe = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    ::bind(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ::getsockname(probe, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    ::close(probe);
    std::vector<std::string> args{"nghttpd",      "-a",           "127.0.0.1",
                                  "-d",           htdocs,         std::to_string(port_),
                                  pki.server_key, pki.server_cert};
    std::vector<char*> argv;
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    if (posix_spawnp(&pid_, "nghttpd", nullptr, nullptr, argv.data(), environ) != 0) {
      pid_ = 0;
    }
  }
  ~Nghttpd() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  // Waits (bounded) until the port accepts; false if nghttpd did not start.
  bool ready() const {
    for (int i = 0; pid_ > 0 && i < 250; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(port_);
      bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
      ::close(fd);
      if (ok) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20)); // nghttpd is starting
    }
    return false;
  }
  [[nodiscard]] uint16_t port() const { return port_; }

private:
  pid_t pid_ = 0;
  uint16_t port_ = 0;
};

TEST(HttpClient, Http2AgainstRealNghttpd) {
  const auto* pki = test::pki();
  ASSERT_NE(pki, nullptr) << "the openssl command makes the test certificates";
  const std::string body = test::pattern(200 * 1024);
  {
    std::ofstream file(pki->dir + "/delta.json", std::ios::binary);
    file << body;
  }
  Nghttpd server(*pki, pki->dir);
  ASSERT_TRUE(server.ready()) << "nghttpd (nghttp2-server) did not start";
  TestLoop loop;
  auto client = makeClient(*loop);
  ASSERT_TRUE(client);
  HttpClientRequest request;
  request.method = "GET";
  request.url = fmt::format("https://localhost:{}/delta.json", server.port());
  request.ca_file = pki->ca_cert;
  request.headers = {{"Authorization", "Bearer not-a-real-token"}};
  auto result = sendOne(loop, *client, request);
  ASSERT_TRUE(result.has_value()) << result.error().describe();
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->http_version, "2");
  EXPECT_EQ(result->body, body);
  // The same file past the response limit is refused, not truncated.
  TestLoop loop2;
  auto client2 = makeClient(*loop2);
  ASSERT_TRUE(client2);
  request.max_response_bytes = 64 * 1024;
  auto limited = sendOne(loop2, *client2, request);
  ASSERT_FALSE(limited.has_value());
  EXPECT_EQ(limited.error().code, "http.too_large");
}

} // namespace
} // namespace mailgate::net

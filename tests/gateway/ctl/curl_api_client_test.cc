// The libcurl transport against a one-shot HTTP peer on 127.0.0.1: the bytes it sends and how
// each failure is classified.
#include "gateway/ctl/curl_api_client.h"

#include <arpa/inet.h>
#include <atomic>
#include <functional>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace mailgate::ctl {
namespace {

using namespace std::chrono_literals;

class Fd {
public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  [[nodiscard]] int get() const { return fd_; }

private:
  int fd_;
};

int listenLoopback(uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(::listen(fd, 8), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

// Accepts one connection, reads one request (headers and a Content-Length body, or whatever
// arrives until 1 s of silence), writes `answer(request)` and closes.
class OneShotPeer {
public:
  explicit OneShotPeer(std::function<std::string(const std::string&)> answer)
      : listener_(listenLoopback(port_)), answer_(std::move(answer)) {
    thread_ = std::thread([this] { serve(); });
  }
  ~OneShotPeer() { thread_.join(); }

  [[nodiscard]] std::string url(const std::string& path, const char* scheme = "http") const {
    return std::string(scheme) + "://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::string request; // read after the client returned (the peer has then finished)

private:
  void serve() {
    pollfd p{listener_.get(), POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) {
      return;
    }
    const Fd conn(::accept(listener_.get(), nullptr, nullptr));
    std::string in;
    char buf[4096];
    while (true) {
      pollfd q{conn.get(), POLLIN, 0};
      if (::poll(&q, 1, 1000) != 1) {
        break;
      }
      const ssize_t n = ::read(conn.get(), buf, sizeof buf);
      if (n <= 0) {
        break;
      }
      in.append(buf, static_cast<size_t>(n));
      const auto end = in.find("\r\n\r\n");
      if (end != std::string::npos) {
        std::size_t body = 0;
        const auto cl = in.find("Content-Length: ");
        if (cl != std::string::npos && cl < end) {
          body = std::stoul(in.substr(cl + 16));
        }
        if (in.size() >= end + 4 + body) {
          break;
        }
      }
    }
    const std::string out = answer_(in);
    request = in;
    if (!out.empty()) {
      (void)!::write(conn.get(), out.data(), out.size());
    }
  }

  uint16_t port_ = 0;
  Fd listener_;
  std::function<std::string(const std::string&)> answer_;
  std::thread thread_;
};

std::string http200(const std::string& body) {
  return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

ApiClientPtr client(CurlOptions o = {}) {
  auto c = makeCurlApiClient(std::move(o));
  EXPECT_TRUE(c.has_value());
  return std::move(*c);
}

TEST(CurlApiClient, GetSendsTheBearerAndReadsTheAnswer) {
  OneShotPeer peer([](const std::string&) { return http200(R"({"ready":true})"); });
  ApiRequest r{"GET", peer.url("/v1/status"), "", "", Secret("tok-abc")};
  auto a = client()->send(r);
  ASSERT_TRUE(a.has_value()) << a.error().describe();
  EXPECT_EQ(a->status, 200);
  EXPECT_EQ(a->content_type, "application/json");
  EXPECT_EQ(a->body, R"({"ready":true})");
  EXPECT_TRUE(peer.request.starts_with("GET /v1/status HTTP/1.1\r\n")) << peer.request;
  EXPECT_NE(peer.request.find("\r\nAuthorization: Bearer tok-abc\r\n"), std::string::npos);
  EXPECT_NE(peer.request.find("\r\nAccept: application/json\r\n"), std::string::npos);
  EXPECT_NE(peer.request.find("\r\nUser-Agent: mailgatectl"), std::string::npos);
}

TEST(CurlApiClient, PostCarriesTheJsonBody) {
  OneShotPeer peer([](const std::string&) { return http200("{}"); });
  ApiRequest r{"POST", peer.url("/v1/mailboxes/a%40b/failover"), R"({"reason":"x"})",
               "application/json", Secret("t")};
  ASSERT_TRUE(client()->send(r).has_value());
  EXPECT_TRUE(peer.request.starts_with("POST /v1/mailboxes/a%40b/failover HTTP/1.1\r\n"));
  EXPECT_NE(peer.request.find("\r\nContent-Type: application/json\r\n"), std::string::npos);
  EXPECT_NE(peer.request.find("\r\nContent-Length: 14\r\n"), std::string::npos);
  EXPECT_TRUE(peer.request.ends_with("\r\n\r\n{\"reason\":\"x\"}")) << peer.request;
}

TEST(CurlApiClient, EmptyPostAndDeleteSendNoContentType) {
  for (const char* method : {"POST", "DELETE"}) {
    OneShotPeer peer([](const std::string&) { return http200("{}"); });
    ApiRequest r{method, peer.url("/v1/messages/01J"), "", "", Secret("t")};
    ASSERT_TRUE(client()->send(r).has_value()) << method;
    EXPECT_TRUE(peer.request.starts_with(std::string(method) + " /v1/messages/01J HTTP/1.1\r\n"))
        << peer.request;
    EXPECT_EQ(peer.request.find("Content-Type"), std::string::npos) << peer.request;
    EXPECT_NE(peer.request.find("\r\nContent-Length: 0\r\n"), std::string::npos) << peer.request;
  }
}

TEST(CurlApiClient, AnyStatusIsAnAnswer) {
  OneShotPeer peer([](const std::string&) {
    return std::string("HTTP/1.1 409 Conflict\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
  });
  auto a = client()->send({"POST", peer.url("/v1/messages/x/retry"), "", "", Secret("t")});
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->status, 409);
}

TEST(CurlApiClient, RefusedConnectionIsNetConnect) {
  uint16_t port = 0;
  { const Fd closed(listenLoopback(port)); }
  auto a = client()->send(
      {"GET", "http://127.0.0.1:" + std::to_string(port) + "/v1/status", "", "", Secret("t")});
  ASSERT_FALSE(a.has_value());
  EXPECT_EQ(a.error().code, "net.connect");
  EXPECT_FALSE(a.error().hint.empty());
}

TEST(CurlApiClient, SilenceIsNetTimeout) {
  uint16_t port = 0;
  const Fd listener(listenLoopback(port)); // the kernel completes the handshake; nobody answers
  CurlOptions o;
  o.timeout = 300ms;
  const auto start = std::chrono::steady_clock::now();
  auto a = client(o)->send(
      {"GET", "http://127.0.0.1:" + std::to_string(port) + "/v1/status", "", "", Secret("t")});
  ASSERT_FALSE(a.has_value());
  EXPECT_EQ(a.error().code, "net.timeout");
  EXPECT_NE(a.error().hint.find("--timeout"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST(CurlApiClient, SomethingThatIsNotHttpIsNetIo) {
  OneShotPeer peer(
      [](const std::string&) { return std::string("220 mail.example ESMTP ready\r\n"); });
  auto a = client()->send({"GET", peer.url("/v1/status"), "", "", Secret("t")});
  ASSERT_FALSE(a.has_value());
  EXPECT_EQ(a.error().code, "net.io") << a.error().describe();
}

TEST(CurlApiClient, HttpsToAPlainPeerIsNetTls) {
  OneShotPeer peer([](const std::string&) { return http200("{}"); });
  auto a = client()->send({"GET", peer.url("/v1/status", "https"), "", "", Secret("t")});
  ASSERT_FALSE(a.has_value());
  EXPECT_EQ(a.error().code, "net.tls") << a.error().describe();
  EXPECT_NE(a.error().hint.find("--cacert"), std::string::npos);
}

TEST(CurlApiClient, Http2PriorKnowledgeStartsWithTheConnectionPreface) {
  OneShotPeer peer([](const std::string&) { return std::string(); });
  CurlOptions o;
  o.http2_prior_knowledge = true;
  o.timeout = 3s;
  auto a = client(o)->send({"GET", peer.url("/v1/status"), "", "", Secret("t")});
  EXPECT_FALSE(a.has_value());
  EXPECT_TRUE(peer.request.starts_with("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")) << peer.request;
}

TEST(CurlApiClient, ErrorsNeverHoldTheToken) {
  OneShotPeer peer([](const std::string&) { return std::string("garbage\r\n"); });
  auto a = client()->send({"GET", peer.url("/v1/status"), "", "", Secret("tok-never-shown")});
  ASSERT_FALSE(a.has_value());
  EXPECT_EQ(a.error().describe().find("tok-never-shown"), std::string::npos);
}

} // namespace
} // namespace mailgate::ctl

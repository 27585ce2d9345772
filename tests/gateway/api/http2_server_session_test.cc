// HTTP/2 side of HttpServerSession, driven by a real nghttp2 client session in memory: the
// client's bytes go into receive(), takeOutput() goes into the client, until both are quiet.
#include "gateway/api/http_server_session.h"
#include "tests/gateway/api/http_test_clients.h"
#include "tests/gateway/api/test_handler.h"

#include <algorithm>
#include <cstring>
#include <gtest/gtest.h>
#include <map>
#include <memory>
#include <nghttp2/nghttp2.h>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::api {
namespace {

using testing::echoHandler;
using testing::H2Client;
using testing::kPreface;

std::string errorCode(const H2Client::Response& r) {
  return nlohmann::json::parse(r.body)["error"]["code"].get<std::string>();
}

TEST(Http2Session, ConcurrentRequestsWithPriorKnowledge) {
  HttpServerSession server({}, echoHandler);
  H2Client client;
  std::vector<int32_t> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(client.submit("GET", "/v1/item/" + std::to_string(i) + "?n=" + std::to_string(i),
                                {}, {{"x-test", "v" + std::to_string(i)}}));
  }
  client.pump(server);
  EXPECT_EQ(server.protocol(), HttpServerSession::Protocol::kHttp2);
  for (int i = 0; i < 5; ++i) {
    const auto& r = client.response(ids[i]);
    EXPECT_TRUE(r.closed);
    EXPECT_EQ(r.error_code, NGHTTP2_NO_ERROR);
    EXPECT_EQ(r.status, "200");
    EXPECT_EQ(r.header("content-type"), "text/plain");
    EXPECT_EQ(r.header("x-echo"), "yes");
    const std::string si = std::to_string(i);
    EXPECT_EQ(r.body, "GET /v1/item/" + si + "?n=" + si + "|0|v" + si + "|gw.test\n");
    EXPECT_EQ(r.header("content-length"), std::to_string(r.body.size()));
  }
  EXPECT_FALSE(server.wantsClose());
}

TEST(Http2Session, PostBodySpreadOverSeveralDataFrames) {
  HttpServerSession server({}, echoHandler);
  H2Client client;
  std::string body;
  for (int i = 0; i < 3000; ++i) {
    body += static_cast<char>('a' + i % 26);
  }
  const int32_t id = client.submit("POST", "/v1/messages", body, {}, 500);
  client.pump(server);
  const auto& r = client.response(id);
  EXPECT_EQ(r.status, "200");
  EXPECT_EQ(r.body, "POST /v1/messages?|3000|-|gw.test\n" + body);
}

TEST(Http2Session, LargeResponseRespectsFlowControl) {
  // 200 KiB is over the client's default 64 KiB windows: only WINDOW_UPDATEs get it all through.
  const std::string big(200 * 1024, 'z');
  HttpServerSession server({}, [&](const HttpRequest&) {
    HttpResponse r;
    r.body = big;
    return r;
  });
  H2Client client;
  const int32_t a = client.submit("GET", "/big");
  const int32_t b = client.submit("GET", "/big");
  client.pump(server);
  EXPECT_EQ(client.response(a).body.size(), big.size());
  EXPECT_EQ(client.response(b).body, big);
}

TEST(Http2Session, StreamsBeyondTheUnacknowledgedLimitAreRefused) {
  HttpServerOptions o;
  o.max_concurrent_streams = 2;
  HttpServerSession server(o, echoHandler);
  H2Client client;
  std::vector<int32_t> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(client.submit("GET", "/s"));
  }
  // All five HEADERS leave before the client has seen the server's SETTINGS.
  client.pump(server);
  int ok = 0;
  int refused = 0;
  for (const int32_t id : ids) {
    const auto& r = client.response(id);
    EXPECT_TRUE(r.closed);
    if (r.status == "200") {
      ++ok;
    } else if (r.error_code == NGHTTP2_REFUSED_STREAM) {
      ++refused;
    }
  }
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(refused, 3);
  EXPECT_FALSE(server.wantsClose());
}

TEST(Http2Session, ClientThatHonoursTheLimitGetsEveryAnswer) {
  HttpServerOptions o;
  o.max_concurrent_streams = 2;
  HttpServerSession server(o, echoHandler);
  H2Client client;
  client.pump(server); // SETTINGS exchanged and acknowledged first
  std::vector<int32_t> ids;
  for (int i = 0; i < 7; ++i) {
    ids.push_back(client.submit("GET", "/s"));
  }
  client.pump(server);
  for (const int32_t id : ids) {
    EXPECT_EQ(client.response(id).status, "200");
  }
}

TEST(Http2Session, OversizedBodyGets413) {
  HttpServerOptions o;
  o.max_body_bytes = 1000;
  HttpServerSession server(o, echoHandler);
  H2Client client;
  const int32_t big = client.submit("POST", "/m", std::string(5000, 'b'), {}, 400);
  const int32_t small = client.submit("POST", "/m", std::string(1000, 's'));
  client.pump(server);
  const auto& r = client.response(big);
  EXPECT_TRUE(r.closed);
  EXPECT_EQ(r.status, "413");
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(errorCode(r), "http.body_too_large");
  EXPECT_EQ(client.response(small).status, "200");
  EXPECT_FALSE(server.wantsClose()); // a stream error, not a connection error
}

TEST(Http2Session, OversizedHeadersGet431) {
  HttpServerOptions o;
  o.max_header_bytes = 300;
  HttpServerSession server(o, echoHandler);
  H2Client client;
  const int32_t id = client.submit("GET", "/h", {}, {{"x-big", std::string(400, 'x')}});
  client.pump(server);
  EXPECT_EQ(client.response(id).status, "431");
  EXPECT_EQ(errorCode(client.response(id)), "http.headers_too_large");
  EXPECT_FALSE(server.wantsClose());
}

TEST(Http2Session, HandlerCannotSendConnectionHeadersOrSmuggle) {
  HttpServerSession server({}, echoHandler);
  H2Client client;
  const int32_t id = client.submit("GET", "/inject");
  client.pump(server);
  const auto& r = client.response(id);
  EXPECT_EQ(r.status, "200"); // nghttp2 would reset the stream on a connection header
  EXPECT_EQ(r.header("x-evil"), "<none>");
  EXPECT_EQ(r.header("connection"), "<none>");
  EXPECT_EQ(r.header("x-fine"), "ok");
}

TEST(Http2Session, GracefulShutdownSendsGoawayWithTheLastStream) {
  HttpServerSession server({}, echoHandler);
  H2Client client;
  const int32_t id = client.submit("GET", "/a");
  client.pump(server);
  ASSERT_EQ(client.response(id).status, "200");
  EXPECT_FALSE(server.wantsClose());
  server.shutdown();
  client.pump(server);
  ASSERT_TRUE(client.goaway().has_value());
  EXPECT_EQ(client.goaway()->error_code, NGHTTP2_NO_ERROR);
  EXPECT_EQ(client.goaway()->last_stream_id, id);
  EXPECT_TRUE(server.wantsClose());
}

TEST(Http2Session, GarbageAfterThePrefaceIsGoawayAndClose) {
  HttpServerSession server({}, echoHandler);
  const std::string in = std::string(kPreface) + "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
  server.receive(std::span<const char>(in.data(), in.size()));
  H2Client observer; // reads the server's bytes as a client would
  observer.recv(server.takeOutput());
  ASSERT_TRUE(observer.goaway().has_value());
  EXPECT_NE(observer.goaway()->error_code, NGHTTP2_NO_ERROR);
  EXPECT_TRUE(server.wantsClose());
}

TEST(Http2Session, AlpnH2WithoutThePrefaceIsGoawayAndClose) {
  HttpServerOptions o;
  o.tls_h2 = true;
  HttpServerSession server(o, echoHandler);
  EXPECT_EQ(server.protocol(), HttpServerSession::Protocol::kHttp2);
  const std::string in = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
  server.receive(std::span<const char>(in.data(), in.size()));
  (void)server.takeOutput();
  EXPECT_TRUE(server.wantsClose());
}

TEST(Http2Session, PrefaceFedByteByByte) {
  HttpServerSession server({}, echoHandler);
  H2Client client;
  const int32_t id = client.submit("GET", "/slow");
  const std::string bytes = client.send();
  for (const char c : bytes) {
    server.receive(std::span<const char>(&c, 1));
    if (server.protocol() == HttpServerSession::Protocol::kUnknown) {
      EXPECT_EQ(server.takeOutput(), "");
    }
  }
  client.recv(server.takeOutput());
  client.pump(server);
  EXPECT_EQ(client.response(id).status, "200");
  EXPECT_EQ(client.response(id).body, "GET /slow?|0|-|gw.test\n");
}

} // namespace
} // namespace mailgate::api

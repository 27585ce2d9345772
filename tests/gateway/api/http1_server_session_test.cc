// HTTP/1.1 side of HttpServerSession: responses are read back with http-parser in response mode,
// an implementation independent of the writer under test.
#include "gateway/api/http_server_session.h"
#include "tests/gateway/api/http_test_clients.h"
#include "tests/gateway/api/test_handler.h"

#include <gtest/gtest.h>
#include <http_parser.h>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::api {
namespace {

using testing::echoHandler;
using testing::Parsed;
using testing::parseResponses;

std::string feed(HttpServerSession& s, std::string_view in) {
  s.receive(std::span<const char>(in.data(), in.size()));
  return s.takeOutput();
}

std::string feedByteByByte(HttpServerSession& s, std::string_view in) {
  std::string out;
  for (const char c : in) {
    s.receive(std::span<const char>(&c, 1));
    out += s.takeOutput();
  }
  return out;
}

std::string errorCode(const Parsed& r) {
  return nlohmann::json::parse(r.body)["error"]["code"].get<std::string>();
}

TEST(Http1Session, GetWithQueryAndHeaders) {
  HttpServerSession s({}, echoHandler);
  const auto out = parseResponses(
      feed(s, "GET /v1/queue?state=deferred HTTP/1.1\r\nHost: gw.test\r\nX-Test: Hello\r\n\r\n"));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(s.protocol(), HttpServerSession::Protocol::kHttp1);
  EXPECT_EQ(out[0].status, 200);
  EXPECT_EQ(out[0].body, "GET /v1/queue?state=deferred|0|Hello|gw.test\n");
  EXPECT_EQ(out[0].header("Content-Type"), "text/plain");
  EXPECT_EQ(out[0].header("content-length"), std::to_string(out[0].body.size()));
  EXPECT_EQ(out[0].header("connection"), "<none>");
  EXPECT_FALSE(s.wantsClose());
}

TEST(Http1Session, PostWithContentLength) {
  HttpServerSession s({}, echoHandler);
  const auto out = parseResponses(
      feed(s, "POST /v1/messages HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world"));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].body, "POST /v1/messages?|11|-|h\nhello world");
  EXPECT_FALSE(s.wantsClose());
}

TEST(Http1Session, PostChunked) {
  HttpServerSession s({}, echoHandler);
  const auto out = parseResponses(feed(s, "POST /c HTTP/1.1\r\nHost: h\r\n"
                                          "Transfer-Encoding: chunked\r\n\r\n"
                                          "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n"
                                          "X-Trailer: t\r\n\r\n"));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].body, "POST /c?|11|-|h\nhello world");
}

constexpr std::string_view kPipelined = "GET /first HTTP/1.1\r\nHost: h\r\n\r\n"
                                        "POST /second?x=1 HTTP/1.1\r\nHost: h\r\n"
                                        "Transfer-Encoding: chunked\r\n\r\n"
                                        "3\r\nabc\r\n0\r\n\r\n"
                                        "GET /third HTTP/1.1\r\nHost: h\r\n\r\n";

TEST(Http1Session, PipelinedRequestsAnsweredInOrder) {
  HttpServerSession s({}, echoHandler);
  const auto out = parseResponses(feed(s, kPipelined));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].body, "GET /first?|0|-|h\n");
  EXPECT_EQ(out[1].body, "POST /second?x=1|3|-|h\nabc");
  EXPECT_EQ(out[2].body, "GET /third?|0|-|h\n");
  EXPECT_FALSE(s.wantsClose());
}

TEST(Http1Session, ByteByByteGivesTheSameBytesAsOnePiece) {
  HttpServerSession whole({}, echoHandler);
  HttpServerSession bytes({}, echoHandler);
  const std::string a = feed(whole, kPipelined);
  const std::string b = feedByteByByte(bytes, kPipelined);
  EXPECT_EQ(a, b);
  EXPECT_EQ(parseResponses(b).size(), 3u);
}

TEST(Http1Session, ConnectionCloseEndsAfterTheResponse) {
  HttpServerSession s({}, echoHandler);
  const auto out = parseResponses(feed(s, "GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
                                          "GET /ignored HTTP/1.1\r\nHost: h\r\n\r\n"));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].header("connection"), "close");
  EXPECT_TRUE(s.wantsClose());
  EXPECT_EQ(feed(s, "GET /later HTTP/1.1\r\nHost: h\r\n\r\n"), "");
}

TEST(Http1Session, Http10ClosesUnlessKeepAlive) {
  HttpServerSession plain({}, echoHandler);
  auto out = parseResponses(feed(plain, "GET /a HTTP/1.0\r\n\r\n"));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].header("connection"), "close");
  EXPECT_TRUE(plain.wantsClose());

  HttpServerSession kept({}, echoHandler);
  out = parseResponses(feed(kept, "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(kept.wantsClose());
}

TEST(Http1Session, MalformedRequestLineIs400AndCloses) {
  HttpServerSession s({}, echoHandler);
  const auto out = parseResponses(feed(s, "NOTAMETHOD /a HTTP/1.1\r\n\r\n"));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].status, 400);
  EXPECT_EQ(out[0].header("content-type"), "application/json");
  EXPECT_EQ(errorCode(out[0]), "http.malformed");
  EXPECT_TRUE(s.wantsClose());
}

TEST(Http1Session, TlsHandshakeOnThePlainPortIs400) {
  HttpServerSession s({}, echoHandler);
  const auto out = parseResponses(feed(s, std::string_view("\x16\x03\x01\x02\x00\x01\x00", 7)));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].status, 400);
  EXPECT_TRUE(s.wantsClose());
}

TEST(Http1Session, BadRequestAfterAGoodOneStillAnswersTheGoodOneFirst) {
  HttpServerSession s({}, echoHandler);
  const auto out =
      parseResponses(feed(s, "GET /ok HTTP/1.1\r\nHost: h\r\n\r\n\x01\x02 garbage\r\n\r\n"));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].status, 200);
  EXPECT_EQ(out[1].status, 400);
  EXPECT_TRUE(s.wantsClose());
}

TEST(Http1Session, OversizedContentLengthIs413Json) {
  HttpServerOptions o;
  o.max_body_bytes = 10;
  HttpServerSession s(o, echoHandler);
  const auto out =
      parseResponses(feed(s, "POST /m HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n"));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].status, 413);
  EXPECT_EQ(errorCode(out[0]), "http.body_too_large");
  EXPECT_TRUE(s.wantsClose());
}

TEST(Http1Session, OversizedChunkedBodyIs413Json) {
  HttpServerOptions o;
  o.max_body_bytes = 10;
  HttpServerSession s(o, echoHandler);
  const auto out = parseResponses(feed(s, "POST /m HTTP/1.1\r\nHost: h\r\n"
                                          "Transfer-Encoding: chunked\r\n\r\n"
                                          "6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n"));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].status, 413);
  EXPECT_EQ(errorCode(out[0]), "http.body_too_large");
  EXPECT_TRUE(s.wantsClose());
}

TEST(Http1Session, BodyExactlyAtTheLimitIsAccepted) {
  HttpServerOptions o;
  o.max_body_bytes = 10;
  HttpServerSession s(o, echoHandler);
  const auto out = parseResponses(
      feed(s, "POST /m HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789"));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].status, 200);
}

TEST(Http1Session, OversizedHeadersAre431) {
  HttpServerOptions o;
  o.max_header_bytes = 200;
  HttpServerSession s(o, echoHandler);
  const std::string big =
      "GET /a HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(300, 'x') + "\r\n\r\n";
  const auto out = parseResponses(feedByteByByte(s, big));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].status, 431);
  EXPECT_EQ(errorCode(out[0]), "http.headers_too_large");
  EXPECT_TRUE(s.wantsClose());
}

TEST(Http1Session, ManySmallHeadersAlsoCount) {
  HttpServerOptions o;
  o.max_header_bytes = 200;
  HttpServerSession s(o, echoHandler);
  std::string req = "GET /a HTTP/1.1\r\n";
  for (int i = 0; i < 40; ++i) {
    req += "A: b\r\n";
  }
  req += "\r\n";
  const auto out = parseResponses(feed(s, req));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].status, 431);
}

TEST(Http1Session, HeadGetsContentLengthButNoBody) {
  HttpServerSession s({}, echoHandler);
  const std::string raw = feed(s, "HEAD /a HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_TRUE(raw.ends_with("\r\n\r\n")) << raw;
  const auto out = parseResponses(raw, true);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].header("content-length"),
            std::to_string(std::string("HEAD /a?|0|-|h\n").size()));
}

TEST(Http1Session, HandlerCannotSmuggleHeadersOrChangeFraming) {
  HttpServerSession s({}, echoHandler);
  const std::string raw = feed(s, "GET /inject HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(raw.find("set-cookie"), std::string::npos);
  EXPECT_EQ(raw.find("upgrade"), std::string::npos);
  const auto out = parseResponses(raw);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].header("x-fine"), "ok");
  EXPECT_EQ(out[0].body, "injected");
  EXPECT_FALSE(s.wantsClose());
}

TEST(Http1Session, ShutdownWhenIdleClosesNow) {
  HttpServerSession s({}, echoHandler);
  ASSERT_EQ(parseResponses(feed(s, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n")).size(), 1u);
  EXPECT_FALSE(s.wantsClose());
  s.shutdown();
  EXPECT_TRUE(s.wantsClose());
}

TEST(Http1Session, ShutdownMidRequestAnswersItWithConnectionClose) {
  HttpServerSession s({}, echoHandler);
  EXPECT_EQ(feed(s, "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nab"), "");
  s.shutdown();
  EXPECT_FALSE(s.wantsClose());
  const auto out = parseResponses(feed(s, "cd"));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].body, "POST /a?|4|-|h\nabcd");
  EXPECT_EQ(out[0].header("connection"), "close");
  EXPECT_TRUE(s.wantsClose());
}

TEST(Http1Session, ShutdownBeforeAnyByteClosesNow) {
  HttpServerSession s({}, echoHandler);
  s.shutdown();
  EXPECT_TRUE(s.wantsClose());
  EXPECT_EQ(feed(s, "GET / HTTP/1.1\r\n\r\n"), "");
}

TEST(Http1Session, DecidedAsSoonAsTheBytesLeaveThePreface) {
  // "PU" diverges from "PRI * HTTP/2.0..." at byte 2: no waiting for 24 bytes.
  HttpServerSession s({}, echoHandler);
  EXPECT_EQ(feed(s, "P"), "");
  EXPECT_EQ(s.protocol(), HttpServerSession::Protocol::kUnknown);
  EXPECT_EQ(feed(s, "U"), "");
  EXPECT_EQ(s.protocol(), HttpServerSession::Protocol::kHttp1);
  const auto out = parseResponses(feed(s, "T /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].body, "PUT /x?|0|-|h\n");
}

} // namespace
} // namespace mailgate::api

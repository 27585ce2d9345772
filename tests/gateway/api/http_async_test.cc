// Answers that come later and answers that stream, over both protocols: the handler keeps the
// exchange and answers outside receive(), as the control API does after a store commit.
#include "gateway/api/http_server_session.h"
#include "tests/gateway/api/http_test_clients.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mailgate::api {
namespace {

using testing::H2Client;
using testing::parseResponses;

// Keeps every exchange it is given, unanswered, for the test to answer.
struct Parked {
  std::vector<HttpExchangePtr> exchanges;
  int wakeups = 0;
  AsyncHttpHandler handler() {
    return [this](const HttpExchangePtr& ex) { exchanges.push_back(ex); };
  }
};

HttpResponse text(std::string body) {
  HttpResponse r;
  r.headers.emplace_back("content-type", "text/plain");
  r.body = std::move(body);
  return r;
}

std::string feed(HttpServerSession& s, std::string_view in) {
  s.receive(std::span<const char>(in.data(), in.size()));
  return s.takeOutput();
}

TEST(HttpAsync, Http1PipelinedRequestsWaitForTheEarlierAnswer) {
  Parked parked;
  HttpServerSession session({}, parked.handler());
  session.setWakeup([&] { ++parked.wakeups; });
  const std::string out =
      feed(session, "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(out, "");
  ASSERT_EQ(parked.exchanges.size(), 1u) << "the second request is held until the first is done";
  EXPECT_EQ(parked.exchanges[0]->request().path, "/a");
  EXPECT_FALSE(session.wantsInput());

  parked.exchanges[0]->respond(text("first"));
  EXPECT_EQ(parked.wakeups, 1);
  std::string bytes = session.takeOutput();
  // Taking the output let the held request through: it is waiting now.
  ASSERT_EQ(parked.exchanges.size(), 2u);
  EXPECT_EQ(parked.exchanges[1]->request().path, "/b");
  parked.exchanges[1]->respond(text("second"));
  bytes += session.takeOutput();
  const auto responses = parseResponses(bytes);
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[0].body, "first");
  EXPECT_EQ(responses[1].body, "second");
  EXPECT_TRUE(session.wantsInput());
  EXPECT_FALSE(session.wantsClose());
}

TEST(HttpAsync, Http1StreamUsesChunkedCodingAndThenServesTheNextRequest) {
  Parked parked;
  HttpServerSession session({}, parked.handler());
  session.setWakeup([&] { ++parked.wakeups; });
  (void)feed(session,
             "GET /events HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n");
  ASSERT_EQ(parked.exchanges.size(), 1u);
  auto stream = parked.exchanges[0];
  stream->startStream(200, {{"content-type", "text/event-stream"}});
  EXPECT_TRUE(stream->write("data: 1\n\n"));
  EXPECT_GT(stream->pendingBytes(), 0u) << "nothing was taken yet";
  std::string bytes = session.takeOutput();
  EXPECT_EQ(stream->pendingBytes(), 0u);
  EXPECT_TRUE(stream->write("data: 2\n\n"));
  EXPECT_TRUE(stream->open());
  stream->end();
  EXPECT_FALSE(stream->open());
  EXPECT_FALSE(stream->write("late"));
  bytes += session.takeOutput();
  ASSERT_EQ(parked.exchanges.size(), 2u);
  parked.exchanges[1]->respond(text("next"));
  bytes += session.takeOutput();
  EXPECT_NE(bytes.find("transfer-encoding: chunked"), std::string::npos);
  const auto responses = parseResponses(bytes);
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[0].body, "data: 1\n\ndata: 2\n\n");
  EXPECT_EQ(responses[0].header("content-type"), "text/event-stream");
  EXPECT_EQ(responses[1].body, "next");
}

TEST(HttpAsync, Http10StreamEndsByClosingTheConnection) {
  Parked parked;
  HttpServerSession session({}, parked.handler());
  (void)feed(session, "GET /events HTTP/1.0\r\n\r\n");
  ASSERT_EQ(parked.exchanges.size(), 1u);
  parked.exchanges[0]->startStream(200, {});
  parked.exchanges[0]->write("abc");
  EXPECT_FALSE(session.wantsClose());
  parked.exchanges[0]->end();
  const std::string bytes = session.takeOutput();
  EXPECT_EQ(bytes.find("chunked"), std::string::npos);
  EXPECT_NE(bytes.find("connection: close"), std::string::npos);
  EXPECT_TRUE(bytes.ends_with("\r\n\r\nabc"));
  EXPECT_TRUE(session.wantsClose());
}

TEST(HttpAsync, DroppedExchangeIsAnswered500) {
  HttpServerSession session({}, [](const HttpExchangePtr&) { /* lets go without answering */ });
  const auto responses = parseResponses(feed(session, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].status, 500);
  EXPECT_EQ(nlohmann::json::parse(responses[0].body)["error"]["code"], "api.no_answer");
  EXPECT_TRUE(session.wantsClose());
}

TEST(HttpAsync, DestroyedSessionDetachesItsExchanges) {
  Parked parked;
  bool aborted = false;
  {
    HttpServerSession session({}, parked.handler());
    (void)feed(session, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    ASSERT_EQ(parked.exchanges.size(), 1u);
    parked.exchanges[0]->onAbort([&] { aborted = true; });
  }
  EXPECT_TRUE(aborted);
  EXPECT_FALSE(parked.exchanges[0]->open());
  parked.exchanges[0]->respond(text("nobody listens")); // harmless
  EXPECT_EQ(parked.exchanges[0]->pendingBytes(), 0u);
}

TEST(HttpAsync, Http2AnswersStreamsInTheOrderAnswersCome) {
  Parked parked;
  HttpServerSession session({}, parked.handler());
  session.setWakeup([&] { ++parked.wakeups; });
  H2Client client;
  const int32_t slow = client.submit("GET", "/slow");
  const int32_t fast = client.submit("GET", "/fast");
  client.pump(session);
  ASSERT_EQ(parked.exchanges.size(), 2u) << "HTTP/2 hands every stream over at once";
  parked.exchanges[1]->respond(text("fast"));
  client.pump(session);
  EXPECT_EQ(client.response(fast).body, "fast");
  EXPECT_TRUE(client.response(fast).closed);
  EXPECT_FALSE(client.response(slow).closed);
  parked.exchanges[0]->respond(text("slow"));
  EXPECT_GE(parked.wakeups, 2);
  client.pump(session);
  EXPECT_EQ(client.response(slow).body, "slow");
  EXPECT_EQ(client.response(slow).status, "200");
}

TEST(HttpAsync, Http2StreamDefersUntilWrittenAndStopsWhenTheClientCancels) {
  Parked parked;
  HttpServerSession session({}, parked.handler());
  H2Client client;
  const int32_t id = client.submit("GET", "/v1/events");
  client.pump(session);
  ASSERT_EQ(parked.exchanges.size(), 1u);
  auto stream = parked.exchanges[0];
  bool aborted = false;
  stream->onAbort([&] { aborted = true; });
  stream->startStream(200, {{"content-type", "text/event-stream"}});
  client.pump(session);
  EXPECT_EQ(client.response(id).status, "200");
  EXPECT_FALSE(client.response(id).closed);
  EXPECT_TRUE(stream->write("data: a\n\n"));
  EXPECT_TRUE(stream->write("data: b\n\n"));
  client.pump(session);
  EXPECT_EQ(client.response(id).body, "data: a\n\ndata: b\n\n");
  EXPECT_EQ(stream->pendingBytes(), 0u);

  client.reset(id);
  client.pump(session);
  EXPECT_TRUE(aborted);
  EXPECT_FALSE(stream->open());
  EXPECT_FALSE(stream->write("data: c\n\n"));
}

TEST(HttpAsync, Http2StreamEndsWithEndStream) {
  Parked parked;
  HttpServerSession session({}, parked.handler());
  H2Client client;
  const int32_t id = client.submit("GET", "/v1/events");
  client.pump(session);
  ASSERT_EQ(parked.exchanges.size(), 1u);
  parked.exchanges[0]->startStream(200, {});
  parked.exchanges[0]->write("x");
  parked.exchanges[0]->end();
  client.pump(session);
  EXPECT_EQ(client.response(id).body, "x");
  EXPECT_TRUE(client.response(id).closed);
  EXPECT_EQ(client.response(id).error_code, 0u);
}

TEST(HttpAsync, Http2WriterSeesBackpressureWhenOutputIsNotTaken) {
  Parked parked;
  HttpServerSession session({}, parked.handler());
  H2Client client;
  (void)client.submit("GET", "/v1/events");
  client.pump(session);
  ASSERT_EQ(parked.exchanges.size(), 1u);
  auto stream = parked.exchanges[0];
  stream->startStream(200, {});
  const std::string piece(1000, 'e');
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(stream->write(piece));
  }
  // The client's flow-control window (64 KiB) lets only part of it go; the rest waits here.
  (void)session.takeOutput();
  EXPECT_GT(stream->pendingBytes(), 100'000u);
}

TEST(HttpAsync, BodyLimitCanDependOnThePath) {
  HttpServerOptions options;
  options.max_body_bytes = 10;
  options.body_limit = [](const HttpRequest& head) -> std::size_t {
    return head.method == "POST" && head.path == "/big" && head.header("x-big") != nullptr ? 100
                                                                                           : 10;
  };
  HttpServerSession session(options, [](const HttpRequest& r) { return text(r.body); });
  const std::string body(50, 'b');
  auto ok = parseResponses(feed(
      session, "POST /big HTTP/1.1\r\nHost: h\r\nX-Big: 1\r\nContent-Length: 50\r\n\r\n" + body));
  ASSERT_EQ(ok.size(), 1u);
  EXPECT_EQ(ok[0].status, 200);
  EXPECT_EQ(ok[0].body, body);
  auto refused = parseResponses(
      feed(session, "POST /small HTTP/1.1\r\nHost: h\r\nContent-Length: 50\r\n\r\n" + body));
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].status, 413);

  HttpServerSession h2(options, [](const HttpRequest& r) { return text(r.body); });
  H2Client client;
  const int32_t big = client.submit("POST", "/big", body, {{"x-big", "1"}});
  const int32_t small = client.submit("POST", "/small", body);
  client.pump(h2);
  EXPECT_EQ(client.response(big).status, "200");
  EXPECT_EQ(client.response(big).body, body);
  EXPECT_EQ(client.response(small).status, "413");
}

TEST(HttpAsync, Http2ConnectionBodyBudgetRefusesTheStreamThatWouldPassIt) {
  HttpServerOptions options;
  options.max_body_bytes = 100'000;
  options.max_connection_body_bytes = 150'000;
  Parked parked;
  HttpServerSession session(options, parked.handler());
  H2Client client;
  // Two uploads in flight at once: the second one to pass 150,000 bytes held is refused; the
  // first completes. Small DATA frames interleave the two.
  const int32_t a = client.submit("POST", "/a", std::string(90'000, 'a'), {}, 1000);
  const int32_t b = client.submit("POST", "/b", std::string(90'000, 'b'), {}, 1000);
  client.pump(session);
  const bool a_refused = client.response(a).status == "429";
  const bool b_refused = client.response(b).status == "429";
  EXPECT_NE(a_refused, b_refused) << "exactly one of the two is refused";
  ASSERT_EQ(parked.exchanges.size(), 1u);
  EXPECT_EQ(parked.exchanges[0]->request().body.size(), 90'000u);
  const auto& refused = client.response(a_refused ? a : b);
  EXPECT_EQ(nlohmann::json::parse(refused.body)["error"]["code"], "http.too_many_bodies");
  // Once the first body went to its handler, the budget is free again.
  const int32_t c = client.submit("POST", "/c", std::string(90'000, 'c'), {}, 1000);
  client.pump(session);
  EXPECT_NE(client.response(c).status, "429");
  EXPECT_EQ(parked.exchanges.size(), 2u);
}

} // namespace
} // namespace mailgate::api

#include "gateway/api/http_server_session.h"
#include "gateway/api/http_types.h"
#include "gateway/api/protocol_server.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace mailgate::api {
namespace {

TEST(HttpTypes, JsonErrorHasTheProjectShape) {
  const HttpResponse r = jsonError(413, "http.body_too_large", "too big", "send less");
  EXPECT_EQ(r.status, 413);
  EXPECT_TRUE(r.headers.empty());
  EXPECT_EQ(r.content_type, "application/json");
  const auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["error"]["code"], "http.body_too_large");
  EXPECT_EQ(j["error"]["message"], "too big");
  EXPECT_EQ(j["error"]["hint"], "send less");
}

TEST(HttpTypes, JsonErrorReplacesInvalidUtf8InsteadOfThrowing) {
  const HttpResponse r = jsonError(400, "x", "bad \xff byte");
  EXPECT_TRUE(nlohmann::json::accept(r.body));
}

TEST(HttpTypes, SplitTarget) {
  std::string path;
  std::string query;
  ASSERT_TRUE(splitTarget("/v1/queue?state=deferred&page=2", path, query));
  EXPECT_EQ(path, "/v1/queue");
  EXPECT_EQ(query, "state=deferred&page=2");
  ASSERT_TRUE(splitTarget("/a#frag", path, query));
  EXPECT_EQ(path, "/a");
  EXPECT_EQ(query, "");
  ASSERT_TRUE(splitTarget("http://example.test:8080/x?y", path, query));
  EXPECT_EQ(path, "/x");
  EXPECT_EQ(query, "y");
  ASSERT_TRUE(splitTarget("http://example.test", path, query));
  EXPECT_EQ(path, "/");
  EXPECT_FALSE(splitTarget("relative", path, query));
  EXPECT_FALSE(splitTarget("", path, query));
}

TEST(HttpTypes, HeaderLookupAndSafety) {
  HttpRequest r;
  r.headers = {{"a", "1"}, {"b", "2"}, {"a", "3"}};
  ASSERT_NE(r.header("a"), nullptr);
  EXPECT_EQ(*r.header("a"), "1");
  EXPECT_EQ(r.header("c"), nullptr);
  EXPECT_TRUE(isSafeHeaderText("text/plain; q=1"));
  EXPECT_FALSE(isSafeHeaderText("a\r\nb"));
  EXPECT_FALSE(isSafeHeaderText(std::string("a\0b", 3)));
}

TEST(HttpTypes, HandlerExceptionBecomes500) {
  const HttpHandler throwing = [](const HttpRequest&) -> HttpResponse {
    throw std::runtime_error("boom");
  };
  HttpServerSession session({}, throwing);
  const std::string in = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  session.receive(std::span<const char>(in.data(), in.size()));
  const std::string out = session.takeOutput();
  ASSERT_TRUE(out.starts_with("HTTP/1.1 500 ")) << out;
  const std::string body = out.substr(out.find("\r\n\r\n") + 4);
  EXPECT_EQ(nlohmann::json::parse(body)["error"]["code"], "api.internal");
}

} // namespace
} // namespace mailgate::api

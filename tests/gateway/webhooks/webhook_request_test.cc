#include "gateway/webhooks/signing.h"
#include "gateway/webhooks/webhook_request.h"

#include <gtest/gtest.h>

namespace mailgate::webhooks {
namespace {

std::string header(const net::HttpClientRequest& r, std::string_view name) {
  for (const auto& [n, v] : r.headers) {
    if (n == name) {
      return v;
    }
  }
  return "<missing>";
}

store::StoredEvent sentEvent() {
  store::StoredEvent e;
  e.seq = 17;
  e.id = "ev-0000017";
  e.type = "message.sent";
  e.time = "2026-12-04T03:00:00Z";
  e.queue_id = "q1";
  e.tenant = "acme";
  e.mailbox = "rep1@acme.example";
  e.data = R"({"message_id":"<a@b>","route":"relay:default"})";
  return e;
}

TEST(WebhookRequest, PostsTheFeedEnvelopeSignedWithItsHeaders) {
  config::Webhook hook;
  hook.url = "https://hooks.example.test/in";
  hook.secret = Secret("whsec-test");
  const auto e = sentEvent();
  const auto r = buildRequest(hook, e, "1.2.3", std::chrono::milliseconds(10000));
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.url, hook.url);
  EXPECT_EQ(r.body, e.toJson()); // exactly the data line of GET /v1/events
  EXPECT_EQ(r.timeout, std::chrono::milliseconds(10000));
  EXPECT_EQ(header(r, "Content-Type"), "application/json");
  EXPECT_EQ(header(r, "X-Mailgate-Event"), "message.sent");
  EXPECT_EQ(header(r, "X-Mailgate-Event-Id"), "ev-0000017");
  EXPECT_EQ(header(r, "User-Agent"), "mailgate/1.2.3");
  EXPECT_EQ(header(r, "X-Mailgate-Signature"), signature(hook.secret, r.body));
  EXPECT_TRUE(signatureMatches(hook.secret, r.body, header(r, "X-Mailgate-Signature")));
}

TEST(WebhookRequest, OnlyA2xxAcknowledges) {
  EXPECT_TRUE(acknowledges(200));
  EXPECT_TRUE(acknowledges(204));
  EXPECT_TRUE(acknowledges(299));
  EXPECT_FALSE(acknowledges(0));
  EXPECT_FALSE(acknowledges(199));
  EXPECT_FALSE(acknowledges(301)); // redirects are not followed: not delivered
  EXPECT_FALSE(acknowledges(404));
  EXPECT_FALSE(acknowledges(500));
  EXPECT_FALSE(acknowledges(503));
}

TEST(WebhookRequest, LoggedUrlsLoseUserinfoQueryAndFragment) {
  EXPECT_EQ(redactUrl("https://user:pa55@hooks.example.test:8443/in?token=abc#x"),
            "https://hooks.example.test:8443/in");
  EXPECT_EQ(redactUrl("http://127.0.0.1:9000/hook"), "http://127.0.0.1:9000/hook");
  EXPECT_EQ(redactUrl("http://h.example?k=v"), "http://h.example");
  EXPECT_EQ(redactUrl("https://a@b@h.example/p"), "https://h.example/p");
  EXPECT_EQ(redactUrl("https://h.example/p@q"), "https://h.example/p@q"); // @ in the path stays
}

} // namespace
} // namespace mailgate::webhooks

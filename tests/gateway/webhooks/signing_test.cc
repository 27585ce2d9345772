#include "gateway/webhooks/signing.h"

#include <cctype>
#include <gtest/gtest.h>

namespace mailgate::webhooks {
namespace {

TEST(WebhookSignature, MatchesTheRfc4231Vectors) {
  // RFC 4231 section 4.2 (test case 1) and 4.3 (test case 2), HMAC-SHA-256.
  EXPECT_EQ(signature(Secret(std::string(20, '\x0b')), "Hi There"),
            "sha256=b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(signature(Secret("Jefe"), "what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(WebhookSignature, AReceiverChecksTheRawBody) {
  const Secret key("whsec-test-key");
  const std::string body = R"({"id":"ev1","type":"message.sent"})";
  const std::string header = signature(key, body);
  EXPECT_TRUE(signatureMatches(key, body, header));
  std::string upper = header;
  for (std::size_t i = 7; i < upper.size(); ++i) {
    upper[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(upper[i])));
  }
  EXPECT_TRUE(signatureMatches(key, body, upper)); // hex in any case
  EXPECT_FALSE(signatureMatches(key, body + " ", header));
  EXPECT_FALSE(signatureMatches(Secret("another-key"), body, header));
  EXPECT_FALSE(signatureMatches(key, body, header.substr(7))); // without "sha256="
  EXPECT_FALSE(signatureMatches(key, body, ""));
}

TEST(WebhookSignature, TheKeyNeverShowsInTheSignature) {
  const Secret key("a-secret-that-must-not-leak");
  EXPECT_EQ(signature(key, "body").find("a-secret"), std::string::npos);
}

config::Webhook hook(std::vector<std::string> events, std::vector<std::string> tenants) {
  config::Webhook h;
  h.url = "http://127.0.0.1:9000/hook";
  h.events = std::move(events);
  h.tenants = std::move(tenants);
  return h;
}

TEST(WebhookRouting, EventsAndTenantsFilter) {
  auto all = hook({"*"}, {"*"});
  EXPECT_TRUE(wants(all, "message.sent", "acme"));
  EXPECT_TRUE(wants(all, "route.failover", ""));

  auto some = hook({"message.received", "route.failover"}, {"acme", "globex"});
  EXPECT_TRUE(wants(some, "message.received", "acme"));
  EXPECT_TRUE(wants(some, "route.failover", "globex"));
  EXPECT_FALSE(wants(some, "message.sent", "acme"));        // type not listed
  EXPECT_FALSE(wants(some, "message.received", "initech")); // tenant not listed
  EXPECT_FALSE(wants(some, "message.received", ""));        // no tenant: only "*" hooks
  EXPECT_FALSE(wants(some, "message", "acme"));             // names compare exactly
  EXPECT_FALSE(wants(some, "ACME", "acme"));
}

} // namespace
} // namespace mailgate::webhooks

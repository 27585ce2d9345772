#include "gateway/ctl/api_url.h"

#include <gtest/gtest.h>

namespace mailgate::ctl {
namespace {

TEST(PercentEncode, KeepsUnreservedAndEscapesEverythingElse) {
  EXPECT_EQ(percentEncode("rep1@acme.example"), "rep1%40acme.example");
  EXPECT_EQ(percentEncode("AZaz09-._~"), "AZaz09-._~");
  EXPECT_EQ(percentEncode("a b/c?d#e&f=g+h%i"), "a%20b%2Fc%3Fd%23e%26f%3Dg%2Bh%25i");
  EXPECT_EQ(percentEncode("\r\n"), "%0D%0A");
  EXPECT_EQ(percentEncode("m\xC3\xBCller"), "m%C3%BCller");
  EXPECT_EQ(percentEncode(""), "");
}

TEST(BaseUrl, AcceptsHttpAndHttpsAndDropsTrailingSlashes) {
  EXPECT_EQ(normalizeBaseUrl("http://127.0.0.1:8025").value(), "http://127.0.0.1:8025");
  EXPECT_EQ(normalizeBaseUrl("http://127.0.0.1:8025/").value(), "http://127.0.0.1:8025");
  EXPECT_EQ(normalizeBaseUrl("HTTPS://gw.example").value(), "https://gw.example");
  EXPECT_EQ(normalizeBaseUrl("https://ops.example/mailgate//").value(),
            "https://ops.example/mailgate");
  EXPECT_EQ(normalizeBaseUrl("http://[::1]:8025").value(), "http://[::1]:8025");
}

TEST(BaseUrl, RefusesWhatCannotBeTheApi) {
  for (const char* bad :
       {"127.0.0.1:8025", "ftp://gw.example", "http://", "http://:8025", "http://gw.example/?x=1",
        "http://gw.example/#top", "http://gw.example /", "http://gw.example\n", ""}) {
    auto r = normalizeBaseUrl(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code, "ctl.url");
    EXPECT_FALSE(r.error().hint.empty());
  }
}

TEST(BaseUrl, RefusesCredentialsInTheUrl) {
  auto r = normalizeBaseUrl("https://ops:secret@gw.example");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().hint.find("MAILGATE_TOKEN"), std::string::npos);
  EXPECT_EQ(r.error().message.find("secret"), std::string::npos);
  // An '@' after the host is part of the path, not a user name.
  EXPECT_TRUE(normalizeBaseUrl("https://gw.example/a@b").has_value());
}

TEST(ApiUrl, JoinsPathAndEncodedQueryLeavingEmptyValuesOut) {
  EXPECT_EQ(apiUrl("http://h:1", "/v1/status"), "http://h:1/v1/status");
  EXPECT_EQ(apiUrl("http://h:1", "/v1/queue",
                   {{"state", "deferred"},
                    {"tenant", ""},
                    {"mailbox", "rep1@acme.example"},
                    {"limit", "50"}}),
            "http://h:1/v1/queue?state=deferred&mailbox=rep1%40acme.example&limit=50");
  EXPECT_EQ(apiUrl("http://h:1", "/v1/queue", {{"after", "a&b=c"}}),
            "http://h:1/v1/queue?after=a%26b%3Dc");
  EXPECT_EQ(apiUrl("https://ops.example/mailgate",
                   "/v1/mailboxes/" + percentEncode("rep1@acme.example") + "/failover"),
            "https://ops.example/mailgate/v1/mailboxes/rep1%40acme.example/failover");
}

TEST(ApiUrl, TellsHttpsApart) {
  EXPECT_TRUE(isHttps("https://gw.example/v1/status"));
  EXPECT_TRUE(isHttps("HTTPS://gw.example"));
  EXPECT_FALSE(isHttps("http://gw.example"));
  EXPECT_FALSE(isHttps("http"));
}

} // namespace
} // namespace mailgate::ctl

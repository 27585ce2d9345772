#include "config/values.h"

#include <gtest/gtest.h>

namespace mailgate::config {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

TEST(Duration, ParsesEachUnit) {
  EXPECT_EQ(parseDuration("250ms").value(), milliseconds(250));
  EXPECT_EQ(parseDuration("30s").value(), seconds(30));
  EXPECT_EQ(parseDuration("5m").value(), minutes(5));
  EXPECT_EQ(parseDuration("1h").value(), hours(1));
  EXPECT_EQ(parseDuration("5d").value(), hours(120));
}

TEST(Duration, ParsesSums) {
  EXPECT_EQ(parseDuration("1h30m").value(), minutes(90));
  EXPECT_EQ(parseDuration("1m500ms").value(), milliseconds(60500));
}

TEST(Duration, RejectsMissingUnitsAndGarbage) {
  for (const char* bad :
       {"", "300", "5x", "m", "5 m", "-5m", "1.5h", "5mm", "h5", "99999999999999d"}) {
    auto d = parseDuration(bad);
    ASSERT_FALSE(d.has_value()) << bad;
    EXPECT_EQ(d.error().code, "config.duration");
  }
}

TEST(Duration, FormatReadsBack) {
  for (const auto d : {milliseconds(250), milliseconds(60500), milliseconds(minutes(90)),
                       milliseconds(hours(120)), milliseconds(0)}) {
    EXPECT_EQ(parseDuration(formatDuration(d)).value(), d) << formatDuration(d);
  }
  EXPECT_EQ(formatDuration(minutes(90)), "1h30m");
}

TEST(Endpoint, ParsesIpv4AndBracketedIpv6) {
  auto v4 = parseEndpoint("127.0.0.1:2525");
  ASSERT_TRUE(v4.has_value());
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, 2525);
  auto v6 = parseEndpoint("[::1]:8025");
  ASSERT_TRUE(v6.has_value());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->str(), "[::1]:8025");
  EXPECT_EQ(parseEndpoint("0.0.0.0:0").value().port, 0);
}

TEST(Endpoint, RejectsHostNamesMissingPortsAndBadForms) {
  for (const char* bad :
       {"localhost:25", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "::1:25",
        "[127.0.0.1]:25", "[::1]25", "[::1]", ":25", "127.0.0.1:25x"}) {
    auto e = parseEndpoint(bad);
    ASSERT_FALSE(e.has_value()) << bad;
    EXPECT_EQ(e.error().code, "config.endpoint");
  }
}

TEST(HostName, AcceptsNamesAndIpLiterals) {
  EXPECT_TRUE(isHostName("smtp.office365.com"));
  EXPECT_TRUE(isHostName("localhost"));
  EXPECT_TRUE(isHostName("127.0.0.1"));
  EXPECT_TRUE(isHostName("::1"));
  EXPECT_FALSE(isHostName(""));
  EXPECT_FALSE(isHostName("a..b"));
  EXPECT_FALSE(isHostName("-a.example"));
  EXPECT_FALSE(isHostName("a b.example"));
  EXPECT_FALSE(isHostName(std::string(64, 'a') + ".example"));
}

TEST(Url, ChecksSchemeAndHost) {
  EXPECT_TRUE(checkUrl("https://graph.microsoft.com/v1.0", {"https", "http"}).has_value());
  EXPECT_TRUE(checkUrl("http://127.0.0.1:9000/hook", {"https", "http"}).has_value());
  EXPECT_TRUE(checkUrl("redis://:pw@[::1]:6379/0", {"redis"}).has_value());
  EXPECT_FALSE(checkUrl("ftp://example.com/", {"https", "http"}).has_value());
  EXPECT_FALSE(checkUrl("example.com/x", {"https"}).has_value());
  EXPECT_FALSE(checkUrl("https:///path", {"https"}).has_value());
  EXPECT_FALSE(checkUrl("https://exa mple.com/", {"https"}).has_value());
}

TEST(Url, ErrorDoesNotRepeatTheUrl) {
  auto r = checkUrl("redis:/:hunter2@host", {"redis"});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().describe().find("hunter2"), std::string::npos);
}

TEST(MailAddress, Plausibility) {
  EXPECT_TRUE(isMailAddress("rep1@acme.example"));
  EXPECT_TRUE(isMailAddress("first.last+tag@sub.acme.example"));
  EXPECT_FALSE(isMailAddress("rep1"));
  EXPECT_FALSE(isMailAddress("@acme.example"));
  EXPECT_FALSE(isMailAddress("a@b@acme.example"));
  EXPECT_FALSE(isMailAddress("rep 1@acme.example"));
  EXPECT_FALSE(isMailAddress("<rep1@acme.example>"));
  EXPECT_FALSE(isMailAddress("rep1@localhost"));
}

} // namespace
} // namespace mailgate::config

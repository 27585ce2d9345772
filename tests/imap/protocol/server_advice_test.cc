#include "imap/protocol/response_parser.h"
#include "imap/protocol/server_advice.h"

#include <gtest/gtest.h>

namespace mailgate::imap::protocol {
namespace {

using namespace std::chrono_literals;

// The status of one response line, as the parser reads it.
StatusResponse statusOf(std::string_view line) {
  ResponseParser parser;
  parser.feed(std::span<const char>(line.data(), line.size()));
  auto r = parser.next();
  EXPECT_TRUE(r.has_value() && r->has_value()) << line;
  if (!r || !*r) {
    return {};
  }
  return (*r)->status;
}

Advice adviceOf(std::string_view line) {
  return adviceFor(statusOf(line));
}

TEST(ServerAdvice, Microsoft365Throttling) {
  auto a = adviceOf("A7 NO Request is throttled. Suggested Backoff Time: 299910 milliseconds\r\n");
  EXPECT_EQ(a.kind, Advice::Kind::kThrottled);
  ASSERT_TRUE(a.backoff.has_value());
  EXPECT_EQ(*a.backoff, 299910ms);
  EXPECT_FALSE(a.hint.empty());

  a = adviceOf("A8 BAD Request is throttled. Suggested Backoff Time: 89117 milliseconds\r\n");
  EXPECT_EQ(a.kind, Advice::Kind::kThrottled);
  EXPECT_EQ(a.backoff, 89117ms);

  a = adviceOf("a9 bad REQUEST IS THROTTLED. suggested backoff time: 5 MILLISECONDS\r\n");
  EXPECT_EQ(a.kind, Advice::Kind::kThrottled);
  EXPECT_EQ(a.backoff, 5ms);
}

TEST(ServerAdvice, BackoffIsCappedAtOneHour) {
  auto a = adviceOf("A1 NO Request is throttled. Suggested Backoff Time: 99999999999999999999999 "
                    "milliseconds\r\n");
  EXPECT_EQ(a.kind, Advice::Kind::kThrottled);
  EXPECT_EQ(a.backoff, std::chrono::milliseconds(std::chrono::hours(1)));
  a = adviceOf("A1 NO Request is throttled. Suggested Backoff Time: 3600001 milliseconds\r\n");
  EXPECT_EQ(a.backoff, std::chrono::milliseconds(std::chrono::hours(1)));
}

TEST(ServerAdvice, ThrottledWithoutANumber) {
  auto a = adviceOf("A1 NO [THROTTLED] slow down\r\n");
  EXPECT_EQ(a.kind, Advice::Kind::kThrottled);
  EXPECT_FALSE(a.backoff.has_value());
  a = adviceOf("A1 NO Request is throttled.\r\n");
  EXPECT_EQ(a.kind, Advice::Kind::kThrottled);
  EXPECT_FALSE(a.backoff.has_value());
  // Gmail marks a successful command's text.
  a = adviceOf("A2 OK Success [THROTTLED]\r\n");
  EXPECT_EQ(a.kind, Advice::Kind::kThrottled);
  EXPECT_EQ(adviceOf("A1 NO [LIMIT] too many\r\n").kind, Advice::Kind::kThrottled);
  EXPECT_EQ(adviceOf("A1 NO [INUSE] mailbox in use\r\n").kind, Advice::Kind::kThrottled);
}

TEST(ServerAdvice, Unavailable) {
  EXPECT_EQ(adviceOf("A3 NO Server Unavailable. 15\r\n").kind, Advice::Kind::kUnavailable);
  EXPECT_EQ(adviceOf("* BYE Connection closed. 14\r\n").kind, Advice::Kind::kUnavailable);
  EXPECT_EQ(adviceOf("A3 NO [UNAVAILABLE] Backend down\r\n").kind, Advice::Kind::kUnavailable);
  EXPECT_EQ(adviceOf("* BYE server unavailable\r\n").kind, Advice::Kind::kUnavailable);
}

TEST(ServerAdvice, AuthenticationFailures) {
  for (const char* line :
       {"A1 NO AUTHENTICATE failed.\r\n", "A1 NO LOGIN failed.\r\n",
        "A1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n",
        "A1 NO [AUTHORIZATIONFAILED] not allowed\r\n", "A1 NO [EXPIRED] password expired\r\n"}) {
    auto a = adviceOf(line);
    EXPECT_EQ(a.kind, Advice::Kind::kAuthFailed) << line;
    EXPECT_NE(a.hint.find("App Password"), std::string::npos);
    EXPECT_NE(a.hint.find("reconnect"), std::string::npos);
  }
}

TEST(ServerAdvice, TooManyLogins) {
  auto a = adviceOf("A3 BAD User is authenticated but not connected.\r\n");
  EXPECT_EQ(a.kind, Advice::Kind::kAuthTrouble);
  EXPECT_NE(a.hint.find("too many"), std::string::npos);
}

TEST(ServerAdvice, LoginDisabled) {
  for (const char* line :
       {"A1 NO [PRIVACYREQUIRED] Use TLS\r\n", "A1 BAD Basic authentication is disabled\r\n",
        "A1 NO LOGINDISABLED\r\n", "A1 NO Login disabled for this account\r\n"}) {
    auto a = adviceOf(line);
    EXPECT_EQ(a.kind, Advice::Kind::kLoginDisabled) << line;
    EXPECT_NE(a.hint.find("use OAuth2 (XOAUTH2)"), std::string::npos);
  }
}

TEST(ServerAdvice, OrdinaryResponsesAskNothing) {
  for (const char* line :
       {"A1 OK LOGIN completed.\r\n", "A1 NO [TRYCREATE] Mailbox doesn't exist\r\n",
        "A1 BAD Command Error. 12\r\n", "* OK The Microsoft Exchange IMAP4 service is ready.\r\n",
        "* BYE Microsoft Exchange Server IMAP4 server signing off.\r\n", "* PREAUTH welcome\r\n"}) {
    auto a = adviceOf(line);
    EXPECT_EQ(a.kind, Advice::Kind::kNone) << line;
    EXPECT_TRUE(a.hint.empty());
    EXPECT_FALSE(a.backoff.has_value());
  }
}

} // namespace
} // namespace mailgate::imap::protocol

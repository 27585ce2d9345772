#include "relay/smtp/protocol/reply.h"

#include <gtest/gtest.h>

namespace mailgate::relay::smtp {
namespace {

std::vector<Reply> parseAll(ReplyParser& p, std::string_view bytes, bool bytewise) {
  std::vector<Reply> out;
  auto drain = [&] {
    while (true) {
      auto r = p.next();
      if (!r || !*r) {
        return;
      }
      out.push_back(**r);
    }
  };
  if (bytewise) {
    for (const char c : bytes) {
      p.feed(std::string_view(&c, 1));
      drain();
    }
  } else {
    p.feed(bytes);
    drain();
  }
  return out;
}

class ReplyParserSplit : public ::testing::TestWithParam<bool> {};

TEST_P(ReplyParserSplit, ParsesSingleAndMultiLineReplies) {
  ReplyParser p;
  const std::string wire = "220 mx.example.org ESMTP ready\r\n"
                           "250-mx.example.org greets you\r\n"
                           "250-PIPELINING\r\n"
                           "250-SIZE 10240000\r\n"
                           "250 AUTH PLAIN LOGIN\r\n"
                           "550-5.1.1 The email account that you tried to reach does not exist.\r\n"
                           "550 5.1.1 Please try double-checking the recipient's address.\r\n"
                           "354\r\n"
                           "421 4.7.0 Try again later\n";
  const auto replies = parseAll(p, wire, GetParam());
  ASSERT_EQ(replies.size(), 5u);
  EXPECT_EQ(replies[0].code, 220);
  EXPECT_EQ(replies[0].enhanced, "");
  EXPECT_EQ(replies[0].text(), "mx.example.org ESMTP ready");
  EXPECT_EQ(replies[1].code, 250);
  ASSERT_EQ(replies[1].lines.size(), 4u);
  EXPECT_EQ(replies[1].lines[3], "AUTH PLAIN LOGIN");
  EXPECT_EQ(replies[2].code, 550);
  EXPECT_EQ(replies[2].enhanced, "5.1.1");
  EXPECT_EQ(replies[2].lines[1], "Please try double-checking the recipient's address.");
  EXPECT_TRUE(replies[2].isPermanent());
  EXPECT_EQ(replies[3].code, 354);
  EXPECT_EQ(replies[3].lines.size(), 1u);
  EXPECT_EQ(replies[3].lines[0], "");
  EXPECT_EQ(replies[4].code, 421);
  EXPECT_EQ(replies[4].enhanced, "4.7.0");
  EXPECT_TRUE(replies[4].isTransient());
  EXPECT_FALSE(p.hasPartialInput());
}

INSTANTIATE_TEST_SUITE_P(OnePieceAndByteByByte, ReplyParserSplit, ::testing::Bool());

TEST(ReplyParser, EnhancedCodeMustMatchTheReplyClass) {
  ReplyParser p;
  const auto replies = parseAll(p, "550 4.1.1 odd\r\n250 2.0.0\r\n250 2.0.0x\r\n", false);
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_EQ(replies[0].enhanced, "");
  EXPECT_EQ(replies[0].text(), "4.1.1 odd");
  EXPECT_EQ(replies[1].enhanced, "2.0.0");
  EXPECT_EQ(replies[1].text(), "");
  EXPECT_EQ(replies[2].enhanced, "");
}

TEST(ReplyParser, RejectsMalformedLines) {
  for (const char* bad : {"hello\r\n", "25\r\n", "2500 x\r\n", "250x\r\n", "650 x\r\n", "190 x\r\n",
                          "260 x\r\n", "250-a\r\n251 b\r\n"}) {
    ReplyParser p;
    p.feed(bad);
    auto r = p.next();
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code, "smtp.reply.syntax") << bad;
    p.feed("250 ok\r\n");
    EXPECT_FALSE(p.next().has_value()) << "the parser stays failed";
  }
}

TEST(ReplyParser, BoundsLineLengthWithoutBuffering) {
  ReplyParser p(ReplyParser::Limits{100, 5});
  p.feed("250 " + std::string(200, 'x')); // no line end yet: must fail already
  auto r = p.next();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, "smtp.reply.too_long");
  EXPECT_FALSE(p.hasPartialInput());
}

TEST(ReplyParser, BoundsLineCount) {
  ReplyParser p(ReplyParser::Limits{100, 3});
  p.feed("250-a\r\n250-b\r\n250-c\r\n250 d\r\n");
  auto r = p.next();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, "smtp.reply.too_many_lines");
}

TEST(ReplyParser, RepliesBeforeAnErrorAreStillDelivered) {
  ReplyParser p;
  p.feed("250 ok\r\ngarbage\r\n");
  auto first = p.next();
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(first->has_value());
  EXPECT_EQ((*first)->code, 250);
  EXPECT_FALSE(p.next().has_value());
  p.reset();
  p.feed("220 again\r\n");
  auto after = p.next();
  ASSERT_TRUE(after.has_value() && after->has_value());
  EXPECT_EQ((*after)->code, 220);
}

TEST(FormatReply, SingleMultiAndSanitised) {
  EXPECT_EQ(formatReply(250, "2.0.0", "Ok"), "250 2.0.0 Ok\r\n");
  EXPECT_EQ(formatReply(220, "", "mx ESMTP"), "220 mx ESMTP\r\n");
  EXPECT_EQ(formatReply(334, "", ""), "334 \r\n");
  EXPECT_EQ(formatReply(250, "", "mx\nPIPELINING\nSIZE 10"),
            "250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
  EXPECT_EQ(formatReply(451, "4.3.0", std::string_view("a\r\0b", 4)), "451 4.3.0 a  b\r\n");
  EXPECT_EQ(formatReply(550, "5.0.0", "evil\r\n250 ok"), "550-5.0.0 evil \r\n550 5.0.0 250 ok\r\n");
}

TEST(Reply, Describe) {
  Reply r{550, "5.1.1", {"no such user", "check the address"}};
  EXPECT_EQ(r.describe(), "550 5.1.1 no such user / check the address");
}

} // namespace
} // namespace mailgate::relay::smtp

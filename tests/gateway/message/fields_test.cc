#include "gateway/message/fields.h"
#include "gateway/message/submission.h"

#include <gtest/gtest.h>
#include <set>
#include <string>

namespace mailgate::message::detail {
namespace {

TEST(Echo, QuotesShortensAndSanitises) {
  EXPECT_EQ(echo("abc"), "\"abc\"");
  EXPECT_EQ(echo("a\r\nb\"c\\\xc3\xa9"), "\"a??b?c???\"");
  EXPECT_EQ(echo(std::string(100, 'x')), "\"" + std::string(kMaxEchoBytes, 'x') + "\"...");
}

TEST(HeaderText, LineBreaksNulAndControls) {
  EXPECT_EQ(headerTextProblem("plain text\twith tab, caf\xc3\xa9"), TextProblem::kNone);
  EXPECT_EQ(headerTextProblem("a\rb"), TextProblem::kInjection);
  EXPECT_EQ(headerTextProblem("a\nb"), TextProblem::kInjection);
  EXPECT_EQ(headerTextProblem(std::string_view("a\0b", 3)), TextProblem::kInjection);
  EXPECT_EQ(headerTextProblem("bell\x07"), TextProblem::kControl);
  EXPECT_EQ(headerTextProblem("del\x7f"), TextProblem::kControl);
  EXPECT_EQ(headerTextProblem("\x07then\n"), TextProblem::kInjection) << "injection wins";
  const auto e = checkHeaderText("subject", "a\nb");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, kHeaderInjection);
  EXPECT_EQ(e->message, "subject: holds a line break (CR or LF) or a NUL byte");
  EXPECT_FALSE(checkHeaderText("subject", "fine").has_value());
}

TEST(FieldName, Rfc5322) {
  EXPECT_TRUE(isFieldName("X-Campaign"));
  EXPECT_TRUE(isFieldName("List-Unsubscribe-Post"));
  EXPECT_FALSE(isFieldName(""));
  EXPECT_FALSE(isFieldName("X Campaign"));
  EXPECT_FALSE(isFieldName("X:Campaign"));
  EXPECT_FALSE(isFieldName("X-Caf\xc3\xa9"));
}

TEST(MessageId, Syntax) {
  for (const char* ok :
       {"<a@b>", "<order.4711@acme.example>", "<x@[192.0.2.1]>", "<a+b=c@d-e.f>"}) {
    EXPECT_TRUE(isMessageId(ok)) << ok;
  }
  for (const char* bad : {"a@b", "<a@b", "<>", "<@b>", "<a@>", "<a b@c>", "<a@b c>", "<a..b@c>",
                          "<a@b@c>", "<caf\xc3\xa9@b>", "<a@[b\\]>"}) {
    EXPECT_FALSE(isMessageId(bad)) << bad;
  }
  EXPECT_FALSE(isMessageId("<" + std::string(250, 'a') + "@b>"));
}

TEST(MessageId, TokensAsReadersTakeThem) {
  for (const char* ok : {"<a@b>", "<no-at-sign>", "<\"quoted\"@x>", "<a..b@c>"}) {
    EXPECT_TRUE(isMessageIdToken(ok)) << ok;
  }
  for (const char* bad : {"<>", "a@b", "<a b@c>", "<a<b@c>", "<a@b>>", "<caf\xc3\xa9@b>"}) {
    EXPECT_FALSE(isMessageIdToken(bad)) << bad;
  }
}

TEST(MessageId, GeneratedIdsAreRandomAndWellFormed) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    auto id = generateMessageId("node1.example");
    ASSERT_TRUE(id.has_value());
    EXPECT_EQ(id->size(), 1 + 26 + 1 + 13 + 1);
    EXPECT_TRUE(isMessageId(*id)) << *id;
    seen.insert(*id);
  }
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_TRUE(generateMessageId("")->ends_with("@mailgate.invalid>"));
  EXPECT_TRUE(generateMessageId("a..b")->ends_with("@mailgate.invalid>"));
  EXPECT_TRUE(generateMessageId("host\r\nX: y")->ends_with("@mailgate.invalid>"));
}

TEST(Date, Rfc5322InUtc) {
  EXPECT_EQ(formatDate(0), "Thu, 01 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(formatDate(1709632800000), "Tue, 05 Mar 2024 10:00:00 +0000");
  EXPECT_EQ(formatDate(951782400999), "Tue, 29 Feb 2000 00:00:00 +0000");
  EXPECT_EQ(formatDate(1709683199999), "Tue, 05 Mar 2024 23:59:59 +0000");
  EXPECT_EQ(formatDate(-5), "Thu, 01 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(formatDate(INT64_MAX), "Fri, 31 Dec 9999 23:59:59 +0000");
}

} // namespace
} // namespace mailgate::message::detail

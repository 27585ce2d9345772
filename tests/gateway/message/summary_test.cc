#include "gateway/message/summary.h"

#include <gtest/gtest.h>
#include <string>
#include <vector>

namespace mailgate::message {
namespace {

using Addrs = std::vector<std::string>;

TEST(Summary, ReadsTheFieldsOfATypicalMessage) {
  const std::string raw = "Received: from x\r\n\tby y; Tue, 1 Dec 2026 10:00:00 +0000\r\n"
                          "From: \"Rep One\" <rep1@acme.example>\r\n"
                          "To: a@x.example, \"B\" <b@x.example>\r\n"
                          "Cc: team: c@x.example, d@x.example;\r\n"
                          "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= und\r\n mehr\r\n"
                          "Date: Thu, 03 Dec 2026 19:30:00 +0100\r\n"
                          "Message-ID: <abc.123@acme.example>\r\n"
                          "\r\n"
                          "To: not@header.example\r\n";
  const MessageSummary s = summarize(raw);
  EXPECT_EQ(s.message_id, "<abc.123@acme.example>");
  EXPECT_EQ(s.from, "rep1@acme.example");
  EXPECT_EQ(s.to, (Addrs{"a@x.example", "b@x.example"}));
  EXPECT_EQ(s.cc, (Addrs{"c@x.example", "d@x.example"}));
  EXPECT_EQ(s.subject, "Grüße und mehr");
  EXPECT_EQ(s.date, "2026-12-03T18:30:00Z");
}

TEST(Summary, MissingFieldsAreEmpty) {
  const MessageSummary s = summarize("X-Other: 1\r\n\r\nbody\r\n");
  EXPECT_EQ(s.message_id, "");
  EXPECT_EQ(s.from, "");
  EXPECT_TRUE(s.to.empty());
  EXPECT_TRUE(s.cc.empty());
  EXPECT_EQ(s.subject, "");
  EXPECT_EQ(s.date, "");
  const MessageSummary none = summarize("");
  EXPECT_EQ(none.from, "");
}

TEST(Summary, TheFirstFieldOfANameCountsAndNamesCompareWithoutCase) {
  const MessageSummary s = summarize("SUBJECT : first\nsubject: second\nfrom: a@b.example\n"
                                     "FROM: c@d.example\n\n");
  EXPECT_EQ(s.subject, "first");
  EXPECT_EQ(s.from, "a@b.example");
}

TEST(Summary, AnUnreadableDateIsKeptAsWrittenAndABadAddressListIsDropped) {
  const MessageSummary s = summarize("Date:  sometime soon \r\nTo: a@b.example;evil@c.example\r\n"
                                     "From: rep@acme.example\r\n\r\n");
  EXPECT_EQ(s.date, "sometime soon");
  EXPECT_TRUE(s.to.empty()); // GMime alone would read a@b.example and skip the rest
  EXPECT_EQ(s.from, "rep@acme.example");
}

TEST(Summary, AMessageIdWithoutBracketsIsNone) {
  EXPECT_EQ(summarize("Message-ID: abc@def\r\n\r\n").message_id, "");
}

TEST(Summary, BoundsAreKept) {
  std::string raw = "Subject: " + std::string(kMaxSummaryFieldBytes * 2, 'x') + "\r\n";
  raw += "To: " + std::string(kMaxSummaryFieldBytes * 2, ' ') + "a@b.example\r\n\r\n";
  const MessageSummary s = summarize(raw);
  EXPECT_LE(s.subject.size(), kMaxSummaryFieldBytes);
  EXPECT_TRUE(s.to.empty());
}

} // namespace
} // namespace mailgate::message

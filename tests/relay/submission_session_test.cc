#include "relay/submission_session.h"

#include <gtest/gtest.h>

namespace mailgate::relay {
namespace {

TEST(SubmissionHelpers, HostOfAddress) {
  EXPECT_EQ(hostOfAddress("127.0.0.1:2525"), "127.0.0.1");
  EXPECT_EQ(hostOfAddress("[::1]:2525"), "::1");
  EXPECT_EQ(hostOfAddress("[fe80::1%eth0]:25"), "fe80::1%eth0");
  EXPECT_EQ(hostOfAddress("10.0.0.1"), "10.0.0.1");
}

TEST(SubmissionHelpers, ReceivedHeaderNamesProtocolAndDate) {
  // 2026-11-23T14:27:00Z
  const std::string h =
      receivedHeader("crm.example", "192.0.2.7", "gw-1", true, true, 1795444020000);
  EXPECT_EQ(h, "Received: from crm.example ([192.0.2.7])\r\n\tby gw-1 (mailgate) with ESMTPSA;\r\n"
               "\tMon, 23 Nov 2026 14:27:00 +0000\r\n");
  EXPECT_NE(receivedHeader("", "::1", "gw", false, false, 0).find("from unknown ([::1])"),
            std::string::npos);
  EXPECT_NE(receivedHeader("h", "::1", "gw", false, false, 0).find("with ESMTP;"),
            std::string::npos);
}

TEST(SubmissionHelpers, FindMessageIdInHeaderBlockOnly) {
  EXPECT_EQ(findMessageId("Subject: x\r\nMessage-ID: <a@b>\r\n\r\nbody"), "<a@b>");
  EXPECT_EQ(findMessageId("message-id:   <x.y@z> trailing\r\n\r\n"), "<x.y@z>");
  EXPECT_EQ(findMessageId("Subject: x\r\n\r\nMessage-ID: <in@body>\r\n"), "");
  EXPECT_EQ(findMessageId("Message-ID: no brackets\r\n\r\n"), "");
  EXPECT_EQ(findMessageId(""), "");
}

} // namespace
} // namespace mailgate::relay

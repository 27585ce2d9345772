#include "imap/protocol/mailbox_name.h"

#include <gtest/gtest.h>
#include <random>

namespace mailgate::imap::protocol {
namespace {

TEST(MailboxName, EncodesRfc3501Examples) {
  // RFC 3501 5.1.3: "~peter/mail/台北/日本語".
  EXPECT_EQ(
      encodeMailboxName("~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e")
          .value(),
      "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
  EXPECT_EQ(encodeMailboxName("Tom & Jerry").value(), "Tom &- Jerry");
  EXPECT_EQ(encodeMailboxName("INBOX").value(), "INBOX");
  EXPECT_EQ(encodeMailboxName("").value(), "");
  // Localised Sent folders as Microsoft 365 names them.
  EXPECT_EQ(encodeMailboxName("Gel\xc3\xb6schte Elemente").value(), "Gel&APY-schte Elemente");
  EXPECT_EQ(encodeMailboxName("\xc3\x89l\xc3\xa9ments envoy\xc3\xa9s").value(),
            "&AMk-l&AOk-ments envoy&AOk-s");
  // Outside the BMP: a surrogate pair.
  EXPECT_EQ(encodeMailboxName("\xf0\x9f\x93\xa7").value(), "&2D3c5w-");
}

TEST(MailboxName, DecodesWhatItEncodes) {
  EXPECT_EQ(decodeMailboxName("~peter/mail/&U,BTFw-/&ZeVnLIqe-").value(),
            "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e");
  EXPECT_EQ(decodeMailboxName("Tom &- Jerry").value(), "Tom & Jerry");
  EXPECT_EQ(decodeMailboxName("&2D3c5w-").value(), "\xf0\x9f\x93\xa7");
  EXPECT_EQ(decodeMailboxName("Gel&APY-schte Elemente").value(), "Gel\xc3\xb6schte Elemente");
}

TEST(MailboxName, PassesRawUtf8WithoutAmpersand) {
  EXPECT_EQ(decodeMailboxName("Gel\xc3\xb6scht").value(), "Gel\xc3\xb6scht");
  EXPECT_FALSE(decodeMailboxName("Gel\xc3\xb6scht &-").has_value());
  EXPECT_FALSE(decodeMailboxName("bad \xc3").has_value());
}

TEST(MailboxName, RefusesMalformedShifts) {
  for (const char* bad : {"&", "&U,BTFw", "&-&", "&U,B-", "&AGE-", "&2D0-", "&3nc-", "&!!-", "&AP-",
                          "a\tb", "&Jjo", "&2D3YPQ-"}) {
    auto r = decodeMailboxName(bad);
    EXPECT_FALSE(r.has_value()) << bad;
    if (!r) {
      EXPECT_EQ(r.error().code, "imap.mailbox_name");
    }
  }
}

TEST(MailboxName, RefusesInvalidUtf8) {
  for (const char* bad : {"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "abc\xe6\x97"}) {
    auto r = encodeMailboxName(bad);
    EXPECT_FALSE(r.has_value());
    if (!r) {
      EXPECT_EQ(r.error().code, "imap.mailbox_name");
    }
  }
}

TEST(MailboxName, RandomUtf8RoundTrips) {
  std::mt19937 rng(42);
  const std::vector<std::string> pieces = {
      "a", "&", " ", "/", "\xc3\xa9", "~", "\x01", "\x7f", "\xe2\x82\xac", "\xf0\x9f\x93\xa7"};
  for (int i = 0; i < 2000; ++i) {
    std::string name;
    const int n = static_cast<int>(rng() % 12);
    for (int k = 0; k < n; ++k) {
      name += pieces[rng() % pieces.size()];
    }
    auto encoded = encodeMailboxName(name);
    ASSERT_TRUE(encoded.has_value());
    for (const char c : *encoded) {
      ASSERT_TRUE(c >= 0x20 && c < 0x7f) << *encoded;
    }
    auto decoded = decodeMailboxName(*encoded);
    ASSERT_TRUE(decoded.has_value()) << *encoded;
    EXPECT_EQ(*decoded, name);
  }
}

TEST(MailboxName, InboxIsCaseInsensitiveOnly) {
  EXPECT_TRUE(sameMailbox("INBOX", "inbox"));
  EXPECT_TRUE(sameMailbox("Inbox", "iNbOx"));
  EXPECT_FALSE(sameMailbox("Sent", "sent"));
  EXPECT_TRUE(sameMailbox("Sent Items", "Sent Items"));
  EXPECT_FALSE(sameMailbox("INBOX/a", "inbox/a"));
}

} // namespace
} // namespace mailgate::imap::protocol

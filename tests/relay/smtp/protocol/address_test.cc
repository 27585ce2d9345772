#include "relay/smtp/protocol/address.h"

#include <gtest/gtest.h>

namespace mailgate::relay::smtp {
namespace {

TEST(Address, AcceptsOrdinaryAndUnusualValidMailboxes) {
  for (const char* ok :
       {"user@example.com", "first.last+tag@sub.example.co.uk", "!#$%&'*+-/=?^_`{|}~@example.com",
        "\"john doe\"@example.com", "\"quoted\\\"quote\"@example.com", "\"a@b\"@example.com",
        "user@[192.0.2.1]", "user@[IPv6:2001:db8::1]", "user@[IPv6:::1]",
        "user@[IPv6:1:2:3:4:5:6:7:8]", "user@[IPv6:::ffff:192.0.2.1]", "x@a",
        "user@xn--bcher-kva.example"}) {
    EXPECT_TRUE(isValidMailbox(ok, false)) << ok;
  }
}

TEST(Address, RejectsInvalidMailboxes) {
  for (const char* bad : {"",
                          "user",
                          "@example.com",
                          "user@",
                          "us er@example.com",
                          "user@exa mple.com",
                          ".user@example.com",
                          "user.@example.com",
                          "us..er@example.com",
                          "user@-example.com",
                          "user@example-.com",
                          "user@example..com",
                          "user@example.com.",
                          "user@[300.1.1.1]",
                          "user@[IPv6:1:2:3:4:5:6:7:8:9]",
                          "user@[IPv6:1::2::3]",
                          "user@[1.2.3]",
                          "\"unterminated@example.com",
                          "\"a\"b@example.com",
                          "user@exa_mple.com",
                          "user@example.com\r\nRCPT TO:<x@y>",
                          "user<x>@example.com",
                          "user@\xc3\xa9xample.com"}) {
    EXPECT_FALSE(isValidMailbox(bad, false)) << bad;
  }
}

TEST(Address, LengthLimits) {
  const std::string local64(64, 'a');
  EXPECT_TRUE(isValidMailbox(local64 + "@example.com", false));
  EXPECT_FALSE(isValidMailbox(local64 + "a@example.com", false));
  const std::string label63(63, 'b');
  EXPECT_TRUE(isValidDomain(label63 + ".com", false));
  EXPECT_FALSE(isValidDomain(label63 + "b.com", false));
  std::string long_domain;
  while (long_domain.size() < 260) {
    long_domain += "abcdefghi.";
  }
  long_domain += "com";
  EXPECT_FALSE(isValidDomain(long_domain, false));
}

TEST(Address, Utf8OnlyWhenAllowedAndWellFormed) {
  const std::string utf8 = "j\xc3\xb6rg@b\xc3\xbc"
                           "cher.example";
  EXPECT_FALSE(isValidMailbox(utf8, false));
  EXPECT_TRUE(isValidMailbox(utf8, true));
  EXPECT_FALSE(isValidMailbox("j\xc3@example.com", true));         // truncated sequence
  EXPECT_FALSE(isValidMailbox("j\xc0\xaf@example.com", true));     // overlong
  EXPECT_FALSE(isValidMailbox("j\xed\xa0\x80@example.com", true)); // surrogate
  EXPECT_TRUE(isValidUtf8("\xf0\x9f\x93\xa7"));
  EXPECT_FALSE(isValidUtf8("\xf4\x90\x80\x80")); // above U+10FFFF
}

TEST(Address, ParsesPaths) {
  auto p = parsePath("<user@example.com>", PathKind::kReversePath);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->address, "user@example.com");
  EXPECT_FALSE(p->non_ascii);

  auto null_sender = parsePath("<>", PathKind::kReversePath);
  ASSERT_TRUE(null_sender);
  EXPECT_EQ(null_sender->address, "");
  EXPECT_FALSE(parsePath("<>", PathKind::kForwardPath));

  auto pm = parsePath("<PostMaster>", PathKind::kForwardPath);
  ASSERT_TRUE(pm);
  EXPECT_TRUE(pm->is_postmaster);
  EXPECT_EQ(pm->address, "postmaster");
  EXPECT_FALSE(parsePath("<postmaster>", PathKind::kReversePath));

  auto routed =
      parsePath("<@relay1.example,@relay2.example:user@example.com>", PathKind::kForwardPath);
  ASSERT_TRUE(routed);
  EXPECT_EQ(routed->address, "user@example.com");

  auto utf8 = parsePath("<\xc3\xbc@example.com>", PathKind::kForwardPath);
  ASSERT_TRUE(utf8);
  EXPECT_TRUE(utf8->non_ascii);

  for (const char* bad : {"user@example.com", "<user@example.com", "<user>", "<@relay:>",
                          "<@relay,:user@example.com>", " <user@example.com>"}) {
    auto r = parsePath(bad, PathKind::kForwardPath);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_EQ(r.error().code, "smtp.address");
    }
  }
  EXPECT_FALSE(parsePath("<" + std::string(250, 'a') + "@b.com>", PathKind::kForwardPath));
}

} // namespace
} // namespace mailgate::relay::smtp

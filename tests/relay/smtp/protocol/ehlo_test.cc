#include "relay/smtp/protocol/ehlo.h"

#include <gtest/gtest.h>

namespace mailgate::relay::smtp {
namespace {

TEST(EhloCapabilities, ReadsKeywords) {
  const Reply reply{250,
                    "",
                    {"smtp.office365.com Hello [192.0.2.1]", "SIZE 157286400", "PIPELINING", "DSN",
                     "ENHANCEDSTATUSCODES", "STARTTLS", "auth login Plain XOAUTH2", "8BITMIME",
                     "BINARYMIME", "CHUNKING", "SMTPUTF8"}};
  const EhloCapabilities caps = parseEhloCapabilities(reply);
  EXPECT_TRUE(caps.pipelining);
  EXPECT_TRUE(caps.starttls);
  EXPECT_TRUE(caps.eight_bit_mime);
  EXPECT_TRUE(caps.smtputf8);
  EXPECT_TRUE(caps.enhanced_status_codes);
  EXPECT_TRUE(caps.chunking);
  EXPECT_TRUE(caps.dsn);
  EXPECT_TRUE(caps.size);
  EXPECT_EQ(caps.max_size, 157286400u);
  EXPECT_TRUE(caps.auth);
  EXPECT_EQ(caps.auth_mechanisms, (std::vector<std::string>{"LOGIN", "PLAIN", "XOAUTH2"}));
  EXPECT_TRUE(caps.hasAuthMechanism("xoauth2"));
  EXPECT_FALSE(caps.hasAuthMechanism("CRAM-MD5"));
}

TEST(EhloCapabilities, FirstLineIsNotAKeywordAndOldAuthFormWorks) {
  const Reply reply{250, "", {"PIPELINING", "AUTH=LOGIN PLAIN", "SIZE"}};
  const EhloCapabilities caps = parseEhloCapabilities(reply);
  EXPECT_FALSE(caps.pipelining);
  EXPECT_TRUE(caps.auth);
  EXPECT_EQ(caps.auth_mechanisms, (std::vector<std::string>{"LOGIN", "PLAIN"}));
  EXPECT_TRUE(caps.size);
  EXPECT_EQ(caps.max_size, 0u);
}

TEST(EhloCapabilities, IgnoresMalformedValues) {
  const Reply reply{250, "", {"mx", "SIZE 12x", "SIZE 99999999999999999999999"}};
  const EhloCapabilities caps = parseEhloCapabilities(reply);
  EXPECT_TRUE(caps.size);
  EXPECT_EQ(caps.max_size, 0u);
  EXPECT_FALSE(caps.auth);
}

} // namespace
} // namespace mailgate::relay::smtp

#include "config/cidr.h"

#include <gtest/gtest.h>

namespace mailgate::config {
namespace {

Cidr cidr(std::string_view text) {
  auto c = Cidr::parse(text);
  EXPECT_TRUE(c.has_value()) << text;
  return c.value_or(Cidr());
}

TEST(Cidr, Ipv4NetworkContainsItsAddressesOnly) {
  const Cidr net = cidr("10.1.0.0/16");
  EXPECT_TRUE(net.contains("10.1.0.0"));
  EXPECT_TRUE(net.contains("10.1.255.255"));
  EXPECT_FALSE(net.contains("10.2.0.0"));
  EXPECT_FALSE(net.contains("10.0.255.255"));
  EXPECT_EQ(net.str(), "10.1.0.0/16");
}

TEST(Cidr, PrefixNotOnAByteBoundary) {
  const Cidr net = cidr("192.168.4.0/22");
  EXPECT_TRUE(net.contains("192.168.7.200"));
  EXPECT_FALSE(net.contains("192.168.8.0"));
  EXPECT_FALSE(net.contains("192.168.3.255"));
}

TEST(Cidr, BareAddressIsASingleHost) {
  const Cidr host = cidr("127.0.0.1");
  EXPECT_EQ(host.prefixLength(), 32);
  EXPECT_TRUE(host.contains("127.0.0.1"));
  EXPECT_FALSE(host.contains("127.0.0.2"));
  const Cidr v6 = cidr("::1");
  EXPECT_EQ(v6.prefixLength(), 128);
  EXPECT_TRUE(v6.contains("::1"));
  EXPECT_FALSE(v6.contains("::2"));
}

TEST(Cidr, ZeroPrefixMatchesEveryAddressOfItsFamily) {
  EXPECT_TRUE(cidr("0.0.0.0/0").contains("203.0.113.9"));
  EXPECT_FALSE(cidr("0.0.0.0/0").contains("2001:db8::1"));
  EXPECT_TRUE(cidr("::/0").contains("2001:db8::1"));
}

TEST(Cidr, Ipv6Network) {
  const Cidr net = cidr("fd00:1234::/32");
  EXPECT_TRUE(net.isV6());
  EXPECT_TRUE(net.contains("fd00:1234:ffff::1"));
  EXPECT_FALSE(net.contains("fd00:1235::1"));
  EXPECT_FALSE(net.contains("10.0.0.1"));
  EXPECT_EQ(net.str(), "fd00:1234::/32");
}

TEST(Cidr, Ipv4MappedAddressMatchesIpv4Network) {
  const Cidr net = cidr("127.0.0.0/8");
  EXPECT_TRUE(net.contains("::ffff:127.0.0.1"));
  EXPECT_FALSE(net.contains("::ffff:10.0.0.1"));
  EXPECT_FALSE(net.contains("::127.0.0.1")); // IPv4-compatible form is not mapped
}

TEST(Cidr, ZoneSuffixIgnored) {
  EXPECT_TRUE(cidr("fe80::/10").contains("fe80::1%eth0"));
}

TEST(Cidr, GarbageNeverMatches) {
  const Cidr net = cidr("0.0.0.0/0");
  EXPECT_FALSE(net.contains(""));
  EXPECT_FALSE(net.contains("localhost"));
  EXPECT_FALSE(net.contains("1.2.3.4.5"));
  EXPECT_FALSE(net.contains("1.2.3.4/8"));
}

TEST(Cidr, RejectsBadNetworks) {
  for (const char* bad : {"", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/8x", "::/129",
                          "300.0.0.0/8", "example.com/8", "10.0.0/8", "/8"}) {
    auto c = Cidr::parse(bad);
    ASSERT_FALSE(c.has_value()) << bad;
    EXPECT_EQ(c.error().code, "config.cidr");
  }
}

TEST(Cidr, RejectsHostBitsAndSuggestsTheNetwork) {
  auto c = Cidr::parse("10.0.0.1/8");
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().hint, "did you mean 10.0.0.0/8?");
  auto v6 = Cidr::parse("fd00::1/64");
  ASSERT_FALSE(v6.has_value());
  EXPECT_EQ(v6.error().hint, "did you mean fd00::/64?");
}

} // namespace
} // namespace mailgate::config

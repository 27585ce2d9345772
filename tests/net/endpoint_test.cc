#include "net/endpoint.h"

#include <gtest/gtest.h>

namespace mailgate::net {
namespace {

TEST(Endpoint, ParsesIpv4NamesAndIpv6) {
  EXPECT_EQ(parseEndpoint("127.0.0.1:2525").value(), (Endpoint{"127.0.0.1", 2525}));
  EXPECT_EQ(parseEndpoint("localhost:25").value(), (Endpoint{"localhost", 25}));
  EXPECT_EQ(parseEndpoint("smtp.office365.com:587").value(), (Endpoint{"smtp.office365.com", 587}));
  EXPECT_EQ(parseEndpoint("[::1]:2525").value(), (Endpoint{"::1", 2525}));
  EXPECT_EQ(parseEndpoint("[::]:0").value(), (Endpoint{"::", 0}));
  EXPECT_EQ(parseEndpoint("[fe80::1%eth0]:25").value(), (Endpoint{"fe80::1%eth0", 25}));
  EXPECT_EQ(parseEndpoint("[::ffff:127.0.0.1]:65535").value(),
            (Endpoint{"::ffff:127.0.0.1", 65535}));
  EXPECT_EQ(parseEndpoint("0.0.0.0:0").value(), (Endpoint{"0.0.0.0", 0}));
}

TEST(Endpoint, FormatIsTheInverse) {
  for (const char* text : {"127.0.0.1:2525", "[::1]:2525", "localhost:25", "[fe80::1%eth0]:1"}) {
    auto parsed = parseEndpoint(text);
    ASSERT_TRUE(parsed) << text;
    EXPECT_EQ(formatEndpoint(*parsed), text);
  }
}

TEST(Endpoint, RejectsBadInputWithAHint) {
  struct Case {
    std::string text;
    const char* message_part;
  };
  const Case cases[] = {
      {"", "empty"},
      {"127.0.0.1", "no port"},
      {"127.0.0.1:", "no port"},
      {"localhost:65536", "above 65535"},
      {"localhost:99999999", "not a number"},
      {"localhost:-1", "not a number"},
      {"localhost:25x", "not a number"},
      {"::1:25", "without brackets"},
      {"[::1]", "no port"},
      {"[::1]25", "no port"},
      {"[::1:25", "without ']'"},
      {"[localhost]:25", "not an IPv6 address"},
      {"[fe80::1%]:25", "empty IPv6 zone"},
      {":25", "no host"},
      {"bad host:25", "not a valid host"},
      {"a/b:25", "not a valid host"},
      {std::string(300, 'a') + ":25", "not a valid host"},
  };
  for (const auto& c : cases) {
    auto parsed = parseEndpoint(c.text);
    ASSERT_FALSE(parsed) << "accepted '" << c.text << "'";
    EXPECT_EQ(parsed.error().code, "net.endpoint");
    EXPECT_NE(parsed.error().message.find(c.message_part), std::string::npos)
        << c.text << " -> " << parsed.error().message;
  }
  EXPECT_NE(parseEndpoint("::1:25").error().hint.find("[::1]:25"), std::string::npos);
}

} // namespace
} // namespace mailgate::net

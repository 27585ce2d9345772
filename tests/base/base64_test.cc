#include "base/base64.h"

#include <gtest/gtest.h>

namespace mailgate {
namespace {

TEST(Base64, EncodesRfc4648Vectors) {
  EXPECT_EQ(base64Encode(""), "");
  EXPECT_EQ(base64Encode("f"), "Zg==");
  EXPECT_EQ(base64Encode("fo"), "Zm8=");
  EXPECT_EQ(base64Encode("foo"), "Zm9v");
  EXPECT_EQ(base64Encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64Encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64Encode(std::string("\0user\0pass", 10)), "AHVzZXIAcGFzcw==");
}

TEST(Base64, DecodesRfc4648Vectors) {
  EXPECT_EQ(base64Decode("").value(), "");
  EXPECT_EQ(base64Decode("Zg==").value(), "f");
  EXPECT_EQ(base64Decode("Zm8=").value(), "fo");
  EXPECT_EQ(base64Decode("Zm9v").value(), "foo");
  EXPECT_EQ(base64Decode("Zm9vYmFy").value(), "foobar");
  EXPECT_EQ(base64Decode("VXNlcm5hbWU6").value(), "Username:");
}

TEST(Base64, RoundTripsEveryByte) {
  std::string all;
  for (int i = 0; i < 256; ++i) {
    all += static_cast<char>(i);
  }
  for (std::size_t n = 0; n <= all.size(); n += 7) {
    const std::string part = all.substr(0, n);
    EXPECT_EQ(base64Decode(base64Encode(part)).value(), part);
  }
}

TEST(Base64, RejectsNonCanonicalOrMalformedInput) {
  for (const char* bad : {"Zg=", "Zg", "Z===", "====", "Zh==", "Zm9=", "Zm 9v", "Zm9v\r\n",
                          "Zg==Zg==", "Zm9-", "Zm9_", "=Zm9", "Zm=v"}) {
    auto r = base64Decode(bad);
    EXPECT_FALSE(r.has_value()) << bad;
    if (!r) {
      EXPECT_EQ(r.error().code, "base64.invalid");
    }
  }
}

} // namespace
} // namespace mailgate

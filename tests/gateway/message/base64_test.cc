#include "gateway/message/base64.h"

#include <glib.h>
#include <gtest/gtest.h>
#include <string>

namespace mailgate::message::detail {
namespace {

std::string decoded(std::string_view text) {
  auto out = decodeBase64(text);
  EXPECT_TRUE(out.has_value()) << text << " fails at " << out.error().offset;
  return out ? *out : std::string();
}

TEST(Base64, Rfc4648Vectors) {
  EXPECT_EQ(decoded(""), "");
  EXPECT_EQ(decoded("Zg=="), "f");
  EXPECT_EQ(decoded("Zm8="), "fo");
  EXPECT_EQ(decoded("Zm9v"), "foo");
  EXPECT_EQ(decoded("Zm9vYg=="), "foob");
  EXPECT_EQ(decoded("Zm9vYmE="), "fooba");
  EXPECT_EQ(decoded("Zm9vYmFy"), "foobar");
}

TEST(Base64, WhiteSpaceAndMissingPadding) {
  EXPECT_EQ(decoded("Zm9v\r\nYmFy\n"), "foobar");
  EXPECT_EQ(decoded(" Zm 9v\tYg = = "), "foob");
  EXPECT_EQ(decoded("Zm9vYg"), "foob");
  EXPECT_EQ(decoded("Zm9vYmE"), "fooba");
}

TEST(Base64, RefusesWhatIsNotBase64AndSaysWhere) {
  struct Case {
    std::string_view text;
    std::size_t offset;
    bool url;
  };
  for (const Case& c :
       {Case{"Zm9v*mFy", 4, false}, Case{"Zm9v-mFy", 4, true}, Case{"Zm9v_mFy", 4, true},
        Case{"Zg==Zg==", 4, false}, Case{"Zm9=v", 4, false}, Case{"=Zm9", 0, false},
        Case{"Zg===", 4, false}, Case{"Zm9vY", 4, false}, Case{"Z\xc3\xa9", 1, false}}) {
    const auto out = decodeBase64(c.text);
    ASSERT_FALSE(out.has_value()) << c.text;
    EXPECT_EQ(out.error().offset, c.offset) << c.text;
    EXPECT_EQ(out.error().url_alphabet, c.url) << c.text;
  }
}

TEST(Base64, RoundTripsEveryByteValue) {
  std::string bytes;
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 256; ++i) {
      bytes.push_back(static_cast<char>(i));
    }
    bytes.push_back(static_cast<char>(round));
    gchar* text = g_base64_encode(reinterpret_cast<const guchar*>(bytes.data()), bytes.size());
    EXPECT_EQ(decoded(text), bytes);
    EXPECT_LE(bytes.size(), decodedSizeBound(text));
    g_free(text);
  }
}

} // namespace
} // namespace mailgate::message::detail

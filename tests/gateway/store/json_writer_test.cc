#include "gateway/store/json_writer.h"

#include <gtest/gtest.h>
#include <string>

namespace mailgate::store {
namespace {

TEST(JsonWriterTest, WritesNestedObjectsAndArraysWithCommas) {
  JsonWriter w;
  w.beginObject();
  w.key("a").value(1);
  w.key("b").value("x");
  w.key("c").beginArray().value(true).value(false).beginObject().endObject().endArray();
  w.key("d").value(int64_t{-5});
  w.key("e").raw("{\"k\":null}");
  w.key("f").null();
  w.key("g").beginArray().null().null().endArray();
  w.endObject();
  EXPECT_EQ(
      w.str(),
      R"({"a":1,"b":"x","c":[true,false,{}],"d":-5,"e":{"k":null},"f":null,"g":[null,null]})");
}

TEST(JsonWriterTest, EscapesQuotesBackslashesAndControlBytes) {
  std::string out;
  appendJsonString(out, std::string("q\"b\\n\nr\rt\tz") + std::string(1, '\0') + "\x1f\x7f");
  EXPECT_EQ(out, "\"q\\\"b\\\\n\\nr\\rt\\tz\\u0000\\u001f\\u007f\"");
}

TEST(JsonWriterTest, KeepsValidUtf8AndReplacesInvalidBytes) {
  std::string out;
  appendJsonString(out, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x93\xa7"); // é € 📧
  EXPECT_EQ(out, "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x93\xa7\"");

  const std::string bad[] = {
      "\xff",             // never valid
      "\xc3",             // truncated
      "\xc0\xaf",         // overlong '/'
      "\xed\xa0\x80",     // surrogate
      "\xf4\x90\x80\x80", // above U+10FFFF
      "\x80",             // lone continuation
  };
  for (const auto& b : bad) {
    std::string o;
    appendJsonString(o, b);
    // Each byte of an invalid sequence becomes one U+FFFD; nothing raw survives.
    std::string expected = "\"";
    for (size_t i = 0; i < b.size(); ++i) {
      expected += "\xef\xbf\xbd";
    }
    expected += "\"";
    EXPECT_EQ(o, expected) << testing::PrintToString(b);
  }
}

TEST(JsonWriterTest, FormatsRfc3339InUtcWithMilliseconds) {
  EXPECT_EQ(formatRfc3339(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(formatRfc3339(1'790'000'000'123), "2026-09-21T14:13:20.123Z");
  EXPECT_EQ(formatRfc3339(951'782'400'000), "2000-02-29T00:00:00.000Z");
  EXPECT_EQ(formatRfc3339(-1), "1969-12-31T23:59:59.999Z");
}

} // namespace
} // namespace mailgate::store

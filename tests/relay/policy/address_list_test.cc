#include "relay/policy/address_list.h"

#include <gtest/gtest.h>
#include <string>
#include <string_view>

namespace mailgate::relay::policy {
namespace {

std::expected<ParsedAddressList, std::string> parse(std::string_view value) {
  return parseAddressList(value, {.max_colons = 64});
}

TEST(CountRaw, SkipsQuotesCommentsAndLiterals) {
  EXPECT_EQ(countRaw("a@b.example").ats, 1u);
  EXPECT_EQ(countRaw("\"x@y\" <a@b.example> (c@d (e@f))").ats, 1u);
  EXPECT_EQ(countRaw("a@[1@2]").ats, 1u);
  EXPECT_EQ(countRaw("G: a@b, \"q:\" <c@d>;").colons, 2u);
  EXPECT_FALSE(countRaw("\"a\" <b@c> (d) e@[f]").unclosed);
  for (const char* open : {"\"a <b@c>", "b@c (d", "b@[c", "b@c ((d)"}) {
    EXPECT_TRUE(countRaw(open).unclosed) << open;
  }
}

TEST(ParseAddressList, FlattensGroupsAndDecodesNames) {
  const auto parsed = parse("=?utf-8?q?J=C3=B6rg?= <j@example.com>, Team: a@example.com, "
                            "B <b@b\xc3\xbc"
                            "cher.example>;, c@example.com");
  ASSERT_TRUE(parsed.has_value()) << parsed.error();
  EXPECT_EQ(parsed->groups, 1u);
  ASSERT_EQ(parsed->mailboxes.size(), 4u);
  EXPECT_EQ(parsed->mailboxes[0].name, "J\xc3\xb6rg");
  EXPECT_EQ(parsed->mailboxes[0].addr, "j@example.com");
  EXPECT_EQ(parsed->mailboxes[1].addr, "a@example.com");
  EXPECT_EQ(parsed->mailboxes[2].addr, "b@b\xc3\xbc"
                                       "cher.example");
  EXPECT_EQ(parsed->mailboxes[2].envelope, "b@xn--bcher-kva.example");
  EXPECT_EQ(parsed->mailboxes[3].addr, "c@example.com");
}

TEST(ParseAddressList, RefusesWhatLooseParsingWouldDrop) {
  EXPECT_EQ(parse("a@b.example;evil@c.example").error(), "holds text that is not an address list");
  EXPECT_EQ(parse(std::string(65, ':')).error(), "holds more than 64 ':' (groups)");
  EXPECT_EQ(parse(std::string("a@b\0c", 5)).error(), "holds a NUL byte");
  // GMime 3.2 leaks memory on a domain literal followed by an unclosed comment.
  EXPECT_EQ(parse("a@[192.0.2.1] (y").error(),
            "holds an unclosed quote, comment or domain literal");
  // Deep group nesting within the bound parses without trouble.
  std::string nested;
  for (int i = 0; i < 64; ++i) {
    nested += "g" + std::to_string(i) + ":";
  }
  EXPECT_TRUE(parse(nested + "a@example.com").has_value());
}

TEST(ParseAddressList, EmptyListsAndEmptyGroups) {
  auto parsed = parse("");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_TRUE(parsed->mailboxes.empty());
  parsed = parse("undisclosed-recipients:;");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_TRUE(parsed->mailboxes.empty());
  EXPECT_EQ(parsed->groups, 1u);
}

} // namespace
} // namespace mailgate::relay::policy

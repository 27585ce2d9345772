#include "relay/policy/address_list.h"

#include <gtest/gtest.h>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mailgate::relay::policy {
namespace {

using Addresses = std::vector<std::string>;

std::expected<ParsedAddressList, std::string> parse(std::string_view value) {
  return parseAddressList(value, {.bytes = HeaderBytes::kUtf8, .max_colons = 64});
}

// The envelope form of every mailbox, or the error phrase as the only element.
Addresses envelopes(std::string_view value, HeaderBytes bytes = HeaderBytes::kUtf8) {
  const auto parsed = parseAddressList(value, {.bytes = bytes});
  if (!parsed) {
    return {"error: " + parsed.error()};
  }
  Addresses out;
  for (const auto& m : parsed->mailboxes) {
    out.push_back(m.envelope);
  }
  return out;
}

const std::string kNotAList = "error: holds text that is not an address list";
const std::string kControl = "error: holds a control character";
const std::string kUnclosed = "error: holds an unclosed quote, comment or domain literal";

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

TEST(ParseAddressList, ReadsWhatMailUses) {
  const std::vector<std::pair<std::string, Addresses>> cases = {
      {"rep@acme.example", {"rep@acme.example"}},
      {"<rep@acme.example>", {"rep@acme.example"}},
      {"< rep@acme.example >", {"rep@acme.example"}},
      {"Rep One <rep@acme.example>", {"rep@acme.example"}},
      {"J. Doe <j@acme.example>", {"j@acme.example"}},
      {"\"Doe, J. (sales)\" <j@acme.example>", {"j@acme.example"}},
      {"\"a@b.example\" <rep@acme.example>", {"rep@acme.example"}},
      {"Rep\tOne <rep@acme.example>", {"rep@acme.example"}},
      {"=?UTF-8?B?UsOpcCBPbmU=?= <rep@acme.example>", {"rep@acme.example"}},
      {"R\xc3\xa9p <rep@acme.example>", {"rep@acme.example"}},
      {"rep@acme.example (Rep (the first), x@y.example)", {"rep@acme.example"}},
      {"rep@acme.example(Rep)", {"rep@acme.example"}},
      {"Rep <rep@acme.example> (c)", {"rep@acme.example"}},
      {"\"john doe\"@acme.example", {"\"john doe\"@acme.example"}},
      {"Rep.One@Acme.Example", {"Rep.One@Acme.Example"}},
      {"rep@[192.0.2.1], ops@[IPv6:2001:db8::1]", {"rep@[192.0.2.1]", "ops@[IPv6:2001:db8::1]"}},
      {"rep@b\xc3\xbc"
       "cher.example",
       {"rep@xn--bcher-kva.example"}},
      {"rep@xn--bcher-kva.example", {"rep@xn--bcher-kva.example"}},
      {"rep@xn--bcher-kva.EXAMPLE", {"rep@xn--bcher-kva.example"}}, // GMime lower-cases IDNA
      {"j\xc3\xb6rg@acme.example", {"j\xc3\xb6rg@acme.example"}},
      {"a@acme.example,, b@acme.example,", {"a@acme.example", "b@acme.example"}},
      {"Sales: a@acme.example, B <b@acme.example>;, c@acme.example",
       {"a@acme.example", "b@acme.example", "c@acme.example"}},
      {"Sales: a@acme.example", {"a@acme.example"}}, // a group still open at the end
      {"rep", {"rep"}},                              // a mailbox without domain, as GMime reads it
  };
  for (const auto& [value, expected] : cases) {
    EXPECT_EQ(envelopes(value), expected) << value;
  }
}

// GMime returns part of these, or skips part of them; a reader may show them otherwise.
TEST(ParseAddressList, RefusesWhatGMimeWouldReadShortOrSkip) {
  for (const char* value : {
           "rep@acme.example\x7f.evil.example",
           "rep@acme.example\x01.evil.example",
           "rep@acme.example\x1b.evil.example",
           "rep@acme.example\r.evil.example",
           "rep@acme.example\n.evil.example",
           "Rep\x0b <rep@acme.example>",
       }) {
    EXPECT_EQ(envelopes(value), Addresses{kControl}) << value;
  }
  EXPECT_EQ(envelopes(std::string("rep@acme.example\0.evil.example", 31)),
            Addresses{"error: holds a NUL byte"});
  for (const char* value : {
           "rep@acme.example.",
           "rep@acme.example>",
           "rep@acme.example garbage",
           "rep@acme.example .evil.example",
           "rep@acme.example (x).evil.example",
           "rep@acme.example;evil@other.example",
           "rep@acme.example evil@other.example",
           "rep@acme.example <evil@other.example>",
           "rep@acme.example<evil@other.example>",
           "<rep@acme.example> junk",
           "<rep@acme.example>junk",
           "Rep <rep@acme.example> <evil@other.example>",
           "Rep One, rep@acme.example",
           "rep@acme.example, Rep One",
           "rep @ acme.example",
           "rep(c)@acme.example",
           "rep@acme..example",
           ".rep@acme.example",
           "rep.@acme.example",
           "<@relay.example:rep@acme.example>",
           "<>",
           "@",
           "a@",
           "[EXT] Rep <rep@acme.example>",
           "rep@[192.0.2[1]]",
           "rep@acme.example)",
           "rep@acme.example]",
           "rep\\@acme.example",
           "Team: a@acme.example; b@acme.example",
           "a@acme.example;",
           ": a@acme.example;",
           // Not punycode: GMime decodes it to nothing and returns "rep@.example".
           "rep@xn--aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example",
       }) {
    EXPECT_EQ(envelopes(value), Addresses{kNotAList}) << value;
  }
}

TEST(ParseAddressList, RefusesUnclosedQuotesCommentsAndLiterals) {
  for (const char* value : {
           "\"Rep <rep@acme.example>",
           "Rep <rep@acme.example> (c",
           "rep@acme.example ((c)",
           "rep@[192.0.2.1",
           "a@[x] (y",
           "\"Rep\\\" <rep@acme.example>",
           "rep@acme.example (c\\",
       }) {
    EXPECT_EQ(envelopes(value), Addresses{kUnclosed}) << value;
  }
}

TEST(ParseAddressList, AcceptsEightBitOnlyAsUtf8AndOnlyWhenAllowed) {
  const std::string name = "R\xc3\xa9p <rep@acme.example>";
  EXPECT_EQ(envelopes(name, HeaderBytes::kUtf8), Addresses{"rep@acme.example"});
  EXPECT_EQ(envelopes(name, HeaderBytes::kAscii),
            Addresses{"error: holds bytes above 0x7f (encode names as RFC 2047 words, or send "
                      "with 8BITMIME or SMTPUTF8)"});
  EXPECT_EQ(envelopes("rep@b\xc3\xbc"
                      "cher.example",
                      HeaderBytes::kAscii)
                .front()
                .substr(0, 24),
            "error: holds bytes above");
  // The A-label form is ASCII, so it needs neither.
  EXPECT_EQ(envelopes("rep@xn--bcher-kva.example", HeaderBytes::kAscii),
            Addresses{"rep@xn--bcher-kva.example"});
  for (const char* bad : {"R\xe9p <rep@acme.example>", "rep@acme.example\xff",
                          "rep@acme.example\xc3", "\xed\xa0\x80 <rep@acme.example>"}) {
    EXPECT_EQ(envelopes(bad),
              Addresses{"error: holds bytes that are not UTF-8 (encode names as RFC 2047 words)"})
        << bad;
  }
  // C1 controls (here NEL, U+0085) are control characters, though well-formed UTF-8.
  EXPECT_EQ(envelopes("rep@acme.example\xc2\x85.evil.example"), Addresses{kControl});
}

TEST(ParseAddressList, BoundsMailboxesBeforeGMimeReadsThem) {
  std::string many;
  for (int i = 0; i < 65; ++i) {
    many += "a" + std::to_string(i) + "@acme.example, ";
  }
  const auto parsed = parseAddressList(many, {.max_mailboxes = 64});
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error(), "holds more than 64 addresses");
  EXPECT_EQ(parseAddressList(many, {.max_mailboxes = 65})->mailboxes.size(), 65u);
}

} // namespace
} // namespace mailgate::relay::policy

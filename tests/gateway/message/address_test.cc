#include "gateway/message/address.h"

#include <gtest/gtest.h>
#include <string>
#include <vector>

namespace mailgate::message::detail {
namespace {

TEST(AddrSpec, AcceptsWhatMailUses) {
  for (const char* ok :
       {"jane@example.com", "j.doe+tag@sub.example.co.uk", "\"john doe\"@example.com",
        "\"a\\\"b\"@example.com", "ops@[192.0.2.1]", "ops@[IPv6:2001:db8::1]", "x@localhost",
        "o'brien@example.ie", "j\xc3\xb6rg@example.com",
        "a@b\xc3\xbc"
        "cher.example",
        "a@xn--bcher-kva.example", "!#$%&'*+-/=?^_`{|}~@example.com"}) {
    EXPECT_FALSE(addrSpecProblem(ok).has_value()) << ok << ": " << *addrSpecProblem(ok);
  }
}

TEST(AddrSpec, RefusesWhatIsNotAnAddress) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "the address is empty"},
      {"jane", "there is no @domain"},
      {"@example.com", "the local part (before the @) is empty"},
      {"jane@", "the domain (after the @) is empty"},
      {".jane@example.com", "the local part has a misplaced dot"},
      {"ja..ne@example.com", "the local part has a misplaced dot"},
      {"ja ne@example.com", "the local part holds a character that needs quoting"},
      {"a<b@example.com", "the local part holds a character that needs quoting"},
      {"\"open@example.com", "the quoted local part is malformed"},
      {"\"a\"b@example.com", "the quoted local part is malformed"},
      {std::string(65, 'a') + "@example.com",
       "the local part (before the @) is longer than 64 octets"},
      {"a@example..com", "the domain has an empty label (a misplaced dot)"},
      {"a@-example.com", "a label of the domain starts or ends with '-'"},
      {"a@example.com-", "a label of the domain starts or ends with '-'"},
      {"a@exa_mple.com", "the domain holds a character that is not a letter, digit, '-' or '.'"},
      {"a@b@example.com", "the domain holds a character that is not a letter, digit, '-' or '.'"},
      {"a@" + std::string(64, 'd') + ".com", "a label of the domain is longer than 63 octets"},
      {"a@[192.0.2.1", "the domain literal is malformed"},
      {"a@[]", "the domain literal is malformed"},
      {"a@" + std::string(253, 'd'), "the address is longer than 254 octets"},
      {"j\xc3@example.com", "the address is not valid UTF-8"},
  };
  for (const auto& [addr, problem] : cases) {
    const auto found = addrSpecProblem(addr);
    ASSERT_TRUE(found.has_value()) << addr;
    EXPECT_EQ(*found, problem) << addr;
  }
}

TEST(MakeMailbox, GivesTheAsciiFormOfAnInternationalDomain) {
  const auto m = makeMailbox("Ann", "ann@b\xc3\xbc"
                                    "cher.example");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->envelope, "ann@xn--bcher-kva.example");
  EXPECT_EQ(makeMailbox("", "j\xc3\xb6rg@example.com")->envelope, "j\xc3\xb6rg@example.com");
  EXPECT_EQ(makeMailbox("", "ann@xn--bcher-kva.example")->envelope, "ann@xn--bcher-kva.example");
  EXPECT_EQ(makeMailbox("", "Ann@Example.COM")->envelope, "Ann@Example.COM");
}

// GMime turns an "xn--" label that is not valid punycode into other characters.
TEST(MakeMailbox, RefusesAnAsciiAddressGMimeWouldRewrite) {
  EXPECT_FALSE(makeMailbox("", "rep1@xn--" + std::string(40, 'a') + ".example").has_value());
}

TEST(RecipientSet, KeepsTheFirstSpellingAndStopsAtTheLimit) {
  RecipientSet set;
  EXPECT_TRUE(set.add("Jane@Example.com", 2));
  EXPECT_TRUE(set.add("jane@example.COM", 2));
  EXPECT_TRUE(set.add("bob@example.com", 2));
  EXPECT_TRUE(set.add("BOB@example.com", 2)) << "a duplicate does not count against the limit";
  EXPECT_FALSE(set.add("carol@example.com", 2));
  EXPECT_EQ(set.take(), (std::vector<std::string>{"Jane@Example.com", "bob@example.com"}));
}

} // namespace
} // namespace mailgate::message::detail

#include "relay/policy/message_headers.h"

#include <gtest/gtest.h>
#include <string>
#include <vector>

namespace mailgate::relay::policy {
namespace {

using namespace std::string_literals;
using Addresses = std::vector<std::string>;

HeaderFacts scan(std::string_view message, HeaderBytes bytes = HeaderBytes::kAscii) {
  auto facts = scanHeaders(message, bytes);
  EXPECT_TRUE(facts.has_value()) << (facts ? "" : facts.error().describe());
  return facts ? *facts : HeaderFacts{};
}

std::string scanError(std::string_view message, HeaderBytes bytes = HeaderBytes::kAscii) {
  auto facts = scanHeaders(message, bytes);
  EXPECT_FALSE(facts.has_value()) << message;
  return facts ? std::string() : facts.error().code;
}

// The error message of a refused message (its code must be header.bad_from).
std::string badFromText(std::string_view message, HeaderBytes bytes = HeaderBytes::kAscii) {
  auto facts = scanHeaders(message, bytes);
  EXPECT_FALSE(facts.has_value()) << message;
  if (facts) {
    return {};
  }
  EXPECT_EQ(facts.error().code, "header.bad_from") << message;
  return facts.error().message;
}

// --- scanHeaders: From -------------------------------------------------------------------------

TEST(ScanHeaders, ReadsFromWithDisplayNamesCommentsAndEncodedWords) {
  const auto facts = scan(
      "Subject: hi\r\n"
      "From: =?UTF-8?B?UsOpcCBPbmU=?= <rep1@acme.example>, \"Two, Rep\" <Rep2@Acme.Example>,\r\n"
      "  rep3@acme.example (Rep \"Three\" (the third), x@y.example)\r\n"
      "To: a@b.example\r\n"
      "\r\n"
      "body\r\n");
  EXPECT_TRUE(facts.from_present);
  EXPECT_FALSE(facts.from_repeated);
  EXPECT_EQ(facts.from, (Addresses{"rep1@acme.example", "Rep2@Acme.Example", "rep3@acme.example"}));
  EXPECT_FALSE(facts.priority.has_value());
}

TEST(ScanHeaders, FlattensGroups) {
  const auto facts =
      scan("From: Sales: a@acme.example, B <b@acme.example>;, c@acme.example\r\n\r\n");
  EXPECT_EQ(facts.from, (Addresses{"a@acme.example", "b@acme.example", "c@acme.example"}));
}

TEST(ScanHeaders, AcceptsAnAtInsideQuotesCommentsAndLiterals) {
  EXPECT_EQ(scan("From: \"a@b.example\" <rep1@acme.example>\r\n\r\n").from,
            (Addresses{"rep1@acme.example"}));
  EXPECT_EQ(scan("From: rep1@acme.example (sent for x@y.example)\r\n\r\n").from,
            (Addresses{"rep1@acme.example"}));
  EXPECT_EQ(scan("From: \"[ext] a@b\" <rep1@[192.0.2.1]>\r\n\r\n").from,
            (Addresses{"rep1@[192.0.2.1]"}));
}

TEST(ScanHeaders, GivesAnInternationalDomainInItsAsciiForm) {
  // Written in UTF-8, so read as a message sent with 8BITMIME or SMTPUTF8 (see EightBit... below).
  EXPECT_EQ(scan("From: Rep <rep1@b\xc3\xbc"
                 "cher.example>\r\n\r\n",
                 HeaderBytes::kUtf8)
                .from,
            (Addresses{"rep1@xn--bcher-kva.example"}));
  EXPECT_EQ(scan("From: rep1@xn--bcher-kva.example\r\n\r\n").from,
            (Addresses{"rep1@xn--bcher-kva.example"}));
}

TEST(ScanHeaders, FieldNamesAreCaseInsensitiveAndMayHaveSpaceBeforeTheColon) {
  EXPECT_EQ(scan("FROM: a@acme.example\r\n\r\n").from, (Addresses{"a@acme.example"}));
  EXPECT_EQ(scan("from \t: a@acme.example\r\n\r\n").from, (Addresses{"a@acme.example"}));
  EXPECT_FALSE(scan("From-Address: a@acme.example\r\n\r\n").from_present);
  EXPECT_FALSE(scan("X-From: a@acme.example\r\n\r\n").from_present);
}

TEST(ScanHeaders, CollectsEveryFromField) {
  const auto facts = scan("From: a@acme.example\r\nSubject: s\r\nfrom: b@other.example\r\n\r\n");
  EXPECT_TRUE(facts.from_present);
  EXPECT_TRUE(facts.from_repeated);
  EXPECT_EQ(facts.from, (Addresses{"a@acme.example", "b@other.example"}));
}

TEST(ScanHeaders, ReadsOnlyTheHeaderBlock) {
  const auto facts = scan("Subject: s\r\n\r\nFrom: evil@other.example\r\n"
                          "X-Mailgate-Priority: personal\r\n");
  EXPECT_FALSE(facts.from_present);
  EXPECT_TRUE(facts.from.empty());
  EXPECT_FALSE(facts.priority.has_value());

  const auto body_from = scan("From: a@acme.example\r\n\r\nFrom: b@other.example\r\n");
  EXPECT_FALSE(body_from.from_repeated);
  EXPECT_EQ(body_from.from, (Addresses{"a@acme.example"}));
}

TEST(ScanHeaders, WholeMessageIsTheHeaderWithoutAnEmptyLine) {
  const auto facts = scan("Subject: s\r\nFrom: a@acme.example");
  EXPECT_EQ(facts.from, (Addresses{"a@acme.example"}));
  EXPECT_FALSE(scan("").from_present);
}

TEST(ScanHeaders, LineEndsAreCrlfBareLfAndBareCr) {
  EXPECT_EQ(scan("Subject: s\nFrom: a@acme.example\n\nbody\n").from, (Addresses{"a@acme.example"}));
  // A bare CR is a line end (DotStuffer sends it as CRLF), so this From is a field of its own.
  const auto cr = scan("Subject: s\rFrom: b@other.example\r\n\r\n");
  EXPECT_EQ(cr.from, (Addresses{"b@other.example"}));
  // And "\r\r\n" is a line end followed by the empty line: the From below is in the body.
  EXPECT_FALSE(scan("Subject: s\r\r\nFrom: b@other.example\r\n").from_present);
}

TEST(ScanHeaders, IgnoresMalformedLinesAndTheirContinuations) {
  const auto facts = scan(" orphan continuation\r\n"
                          "From: a@acme.example\r\n"
                          "not a field line\r\n"
                          " b@other.example\r\n"
                          "Bad Name: c@other.example\r\n"
                          "\r\n");
  EXPECT_EQ(facts.from, (Addresses{"a@acme.example"}));
}

TEST(ScanHeaders, RefusesFromFieldsThatAreNotAddressLists) {
  for (const char* message : {
           "From:\r\n\r\n",
           "From:   \r\n\r\n",
           "From: <>\r\n\r\n",
           "From: @\r\n\r\n",
           "From: a@\r\n\r\n",
           "From: undisclosed-recipients:;\r\n\r\n",
           // Text GMime's loose parser would skip, but a mail reader may show.
           "From: rep1@acme.example;evil@other.example\r\n\r\n",
           "From: rep1@acme.example <evil@other.example>\r\n\r\n",
           "From: <@relay.example:rep1@acme.example>\r\n\r\n",
       }) {
    EXPECT_EQ(scanError(message), "header.bad_from") << message;
  }
  std::string with_nul = "From: rep1@acme.example";
  with_nul += '\0';
  with_nul += "evil@other.example\r\n\r\n";
  EXPECT_EQ(scanError(with_nul), "header.bad_from");
}

TEST(ScanHeaders, RefusesTooManyAddresses) {
  std::string many = "From: ";
  for (std::size_t i = 0; i < kMaxFromAddresses; ++i) {
    many += "a" + std::to_string(i) + "@acme.example, ";
  }
  EXPECT_EQ(scan(many + "\r\n\r\n").from.size(), kMaxFromAddresses);
  EXPECT_EQ(scanError(many + "last@acme.example\r\n\r\n"), "header.bad_from");

  // Spread over two fields: the bound holds for the message.
  std::string two = many + "\r\nFrom: last@acme.example\r\n\r\n";
  EXPECT_EQ(scanError(two), "header.bad_from");

  // Without '@' the raw count cannot see them; GMime's count can.
  std::string bare = "From: ";
  for (std::size_t i = 0; i <= kMaxFromAddresses; ++i) {
    bare += "a" + std::to_string(i) + ", ";
  }
  EXPECT_EQ(scanError(bare + "\r\n\r\n"), "header.bad_from");
}

TEST(ScanHeaders, RefusesDeeplyNestedGroupsWithoutRecursing) {
  // GMime parses nested groups recursively; this many would overflow its stack.
  std::string nested = "From: ";
  for (int i = 0; i < 100000; ++i) {
    nested += "g:";
  }
  nested += "a@acme.example\r\n\r\n";
  ASSERT_LT(nested.size(), kMaxHeaderBytes);
  EXPECT_EQ(scanError(nested), "header.bad_from");
}

TEST(ScanHeaders, RefusesAnOverlongFromField) {
  std::string from = "From: \"" + std::string(kMaxFromBytes, 'x') + "\" <a@acme.example>\r\n\r\n";
  EXPECT_EQ(scanError(from), "header.bad_from");
}

// GMime's loose parser reads each of these as rep1@acme.example alone, which checkFrom would
// accept for that mailbox, while a mail reader may show something else. Never a partial reading.
TEST(ScanHeaders, RefusesFromFieldsGMimeWouldReadShort) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"From: rep1@acme.example\x7f.evil.example\r\n\r\n",
       "the From field holds a control character"},
      {"From: rep1@acme.example\x01.evil.example\r\n\r\n",
       "the From field holds a control character"},
      {"From: rep1@acme.example\x1b.evil.example\r\n\r\n",
       "the From field holds a control character"},
      {"From: rep1@acme.example\x7f\r\n\r\n", "the From field holds a control character"},
      {"From: Rep\x08 <rep1@acme.example>\r\n\r\n", "the From field holds a control character"},
      {"From: rep1@acme.example\0.evil.example\r\n\r\n"s, "the From field holds a NUL byte"},
      // Trailing junk after the address.
      {"From: rep1@acme.example.\r\n\r\n", "the From field holds text that is not an address list"},
      {"From: rep1@acme.example>\r\n\r\n", "the From field holds text that is not an address list"},
      {"From: rep1@acme.example .evil.example\r\n\r\n",
       "the From field holds text that is not an address list"},
      {"From: rep1@acme.example evil\r\n\r\n",
       "the From field holds text that is not an address list"},
      {"From: <rep1@acme.example> evil\r\n\r\n",
       "the From field holds text that is not an address list"},
      {"From: Rep <rep1@acme.example>.evil.example\r\n\r\n",
       "the From field holds text that is not an address list"},
      // Text GMime skips.
      {"From: rep1@acme.example;evil@other.example\r\n\r\n",
       "the From field holds text that is not an address list"},
      {"From: a@b.example;evil@c.example\r\n\r\n",
       "the From field holds text that is not an address list"},
      {"From: Evil Corp, rep1@acme.example\r\n\r\n",
       "the From field holds text that is not an address list"},
      {"From: rep1@acme.example, ceo@other.example (x\r\n\r\n",
       "the From field holds an unclosed quote, comment or domain literal"},
      // Unclosed quoted string, comment and domain literal.
      {"From: \"Rep <rep1@acme.example>\r\n\r\n",
       "the From field holds an unclosed quote, comment or domain literal"},
      {"From: rep1@acme.example (Rep\r\n\r\n",
       "the From field holds an unclosed quote, comment or domain literal"},
      {"From: rep1@[192.0.2.1\r\n\r\n",
       "the From field holds an unclosed quote, comment or domain literal"},
      // GMime 3.2.13 leaks 128 bytes on every call with this one.
      {"From: a@[x] (y\r\n\r\n",
       "the From field holds an unclosed quote, comment or domain literal"},
      // Folded: the continuation line is part of the field.
      {"From: rep1@acme.example\r\n\t\x7f.evil.example\r\n\r\n",
       "the From field holds a control character"},
      {"From: rep1@acme.example\r\n .evil.example\r\n\r\n",
       "the From field holds text that is not an address list"},
  };
  for (const auto& [message, text] : cases) {
    EXPECT_EQ(badFromText(message), text) << message;
    EXPECT_EQ(badFromText(message, HeaderBytes::kUtf8), text) << message;
  }
}

TEST(ScanHeaders, ABareCrEndsTheFromLine) {
  // A bare CR is a line end here as in the DATA decoder, which stores it as CRLF: the From value
  // never holds a CR. What follows is a continuation line (part of From) or a line of its own.
  EXPECT_EQ(badFromText("From: rep1@acme.example\r evil@other.example\r\n\r\n"),
            "the From field holds text that is not an address list");
  EXPECT_EQ(badFromText("From: rep1@acme.example\r\t.evil.example\r\n\r\n"),
            "the From field holds text that is not an address list");
  // Not a field and not a continuation: ignored with its continuations, as every such line
  // (IgnoresMalformedLinesAndTheirContinuations), and not part of From.
  EXPECT_EQ(scan("From: rep1@acme.example\r.evil.example\r\n\r\n").from,
            (Addresses{"rep1@acme.example"}));
}

TEST(ScanHeaders, KeepsTheLegitimateForms) {
  const std::vector<std::pair<std::string, Addresses>> cases = {
      {"From: \"Rep, One\" <rep1@acme.example>\r\n\r\n", {"rep1@acme.example"}},
      {"From: \"Rep \\\"One\\\"\" <rep1@acme.example>\r\n\r\n", {"rep1@acme.example"}},
      {"From: =?UTF-8?Q?R=C3=A9p_One?= <rep1@acme.example>\r\n\r\n", {"rep1@acme.example"}},
      {"From: Rep One\r\n\t<rep1@acme.example>\r\n\r\n", {"rep1@acme.example"}},
      {"From:\r\n rep1@acme.example\r\n\r\n", {"rep1@acme.example"}},
      {"From: rep1@acme.example (Rep One)\r\n\r\n", {"rep1@acme.example"}},
      {"From: (the rep) rep1@acme.example\r\n\r\n", {"rep1@acme.example"}},
      {"From: J. Rep <rep1@acme.example>\r\n\r\n", {"rep1@acme.example"}},
      {"From: <rep1@acme.example>\r\n\r\n", {"rep1@acme.example"}},
      {"From: Sales: rep1@acme.example;\r\n\r\n", {"rep1@acme.example"}},
      {"From: rep1@xn--bcher-kva.example\r\n\r\n", {"rep1@xn--bcher-kva.example"}},
      {"From: rep1@acme.example,\r\n\r\n", {"rep1@acme.example"}},
  };
  for (const auto& [message, from] : cases) {
    EXPECT_EQ(scan(message).from, from) << message;
  }
}

TEST(ScanHeaders, EightBitFromOnlyWithEightBitMimeOrSmtputf8AndOnlyAsUtf8) {
  const std::string name = "From: R\xc3\xa9p <rep1@acme.example>\r\n\r\n";
  const std::string idn = "From: rep1@b\xc3\xbc"
                          "cher.example\r\n\r\n";
  EXPECT_EQ(scan(name, HeaderBytes::kUtf8).from, (Addresses{"rep1@acme.example"}));
  EXPECT_EQ(scan(idn, HeaderBytes::kUtf8).from, (Addresses{"rep1@xn--bcher-kva.example"}));
  const std::string ascii_only = "the From field holds bytes above 0x7f (encode names as RFC 2047 "
                                 "words, or send with 8BITMIME or SMTPUTF8)";
  EXPECT_EQ(badFromText(name), ascii_only);
  EXPECT_EQ(badFromText(idn), ascii_only);
  const std::string not_utf8 =
      "the From field holds bytes that are not UTF-8 (encode names as RFC 2047 words)";
  for (const char* message :
       {"From: R\xe9p <rep1@acme.example>\r\n\r\n", "From: rep1@acme.example\xc3\r\n\r\n",
        "From: rep1@acme.example\xff.evil.example\r\n\r\n"}) {
    EXPECT_EQ(badFromText(message, HeaderBytes::kUtf8), not_utf8) << message;
    EXPECT_EQ(badFromText(message), ascii_only) << message;
  }
  EXPECT_EQ(badFromText("From: rep1@acme.example\xc2\x85.evil.example\r\n\r\n", HeaderBytes::kUtf8),
            "the From field holds a control character");
  // Only From is held to this here; the rest of the header is not scanHeaders' to judge.
  EXPECT_EQ(scan("Subject: caf\xc3\xa9\r\nFrom: rep1@acme.example\r\n\r\n").from,
            (Addresses{"rep1@acme.example"}));
}

TEST(ScanHeaders, BoundsTheHeaderBlock) {
  const std::string filler = "X-Filler: ";
  auto header = [&](std::size_t bytes) {
    // "X-Filler: xxx...\r\n" of exactly `bytes` bytes.
    return filler + std::string(bytes - filler.size() - 2, 'x') + "\r\n";
  };
  EXPECT_TRUE(scanHeaders(header(kMaxHeaderBytes)).has_value());
  EXPECT_TRUE(scanHeaders(header(kMaxHeaderBytes) + "\r\nbody").has_value());
  EXPECT_EQ(scanError(header(kMaxHeaderBytes + 1)), "header.too_large");
  EXPECT_EQ(scanError(header(kMaxHeaderBytes + 1) + "\r\nbody"), "header.too_large");
  // A large body behind a small header is fine.
  EXPECT_EQ(scan("From: a@acme.example\r\n\r\n" + std::string(3 * kMaxHeaderBytes, 'b')).from,
            (Addresses{"a@acme.example"}));
}

// --- scanHeaders: X-Mailgate-Priority ------------------------------------------------------------

TEST(ScanHeaders, ReadsThePriorityUnfoldedAndTrimmed) {
  EXPECT_EQ(scan("X-Mailgate-Priority: personal\r\n\r\n").priority, "personal");
  EXPECT_EQ(scan("X-Mailgate-Priority: Personal\r\n\r\n").priority, "Personal");
  EXPECT_EQ(scan("X-Mailgate-Priority: bulk \r\n\r\n").priority, "bulk");
  EXPECT_EQ(scan("x-mailgate-priority:\tbulk\t\r\n\r\n").priority, "bulk");
  EXPECT_EQ(scan("X-Mailgate-Priority:\r\n personal\r\n\r\n").priority, "personal");
  EXPECT_EQ(scan("X-Mailgate-Priority: per\r\n\tsonal\r\nSubject: s\r\n\r\n").priority,
            "per\tsonal");
  EXPECT_EQ(scan("X-Mailgate-Priority: urgent!\r\n\r\n").priority, "urgent!");
  EXPECT_EQ(scan("X-Mailgate-Priority:\r\n\r\n").priority, "");
  EXPECT_FALSE(scan("X-Mailgate-Priority-Hint: personal\r\n\r\n").priority.has_value());
}

TEST(ScanHeaders, TheFirstPriorityFieldWins) {
  EXPECT_EQ(scan("X-Mailgate-Priority: bulk\r\nX-Mailgate-Priority: personal\r\n\r\n").priority,
            "bulk");
}

// --- removeHeaderField -------------------------------------------------------------------------

constexpr std::string_view kPriority = "X-Mailgate-Priority";

TEST(RemoveHeaderField, RemovesAFoldedField) {
  EXPECT_EQ(removeHeaderField("Subject: s\r\n"
                              "X-Mailgate-Priority:\r\n"
                              " personal\r\n"
                              "\t(folded twice)\r\n"
                              "To: a@b.example\r\n"
                              "\r\n"
                              "body\r\n",
                              kPriority),
            "Subject: s\r\nTo: a@b.example\r\n\r\nbody\r\n");
}

TEST(RemoveHeaderField, RemovesTheFirstAndTheLastHeaderLine) {
  EXPECT_EQ(removeHeaderField("X-Mailgate-Priority: bulk\r\nSubject: s\r\n\r\nbody", kPriority),
            "Subject: s\r\n\r\nbody");
  EXPECT_EQ(removeHeaderField("Subject: s\r\nX-Mailgate-Priority: bulk\r\n\r\nbody", kPriority),
            "Subject: s\r\n\r\nbody");
  // The last line of a message that has no body and no final line end.
  EXPECT_EQ(removeHeaderField("Subject: s\r\nX-Mailgate-Priority: bulk", kPriority),
            "Subject: s\r\n");
  EXPECT_EQ(removeHeaderField("X-Mailgate-Priority: bulk\r\n", kPriority), "");
}

TEST(RemoveHeaderField, RemovesEveryOccurrenceInAnyCase) {
  EXPECT_EQ(removeHeaderField("x-mailgate-priority: bulk\r\n"
                              "Subject: s\r\n"
                              "X-MAILGATE-PRIORITY : personal\r\n"
                              "X-Mailgate-Priority-Hint: kept\r\n"
                              "\r\n",
                              kPriority),
            "Subject: s\r\nX-Mailgate-Priority-Hint: kept\r\n\r\n");
}

TEST(RemoveHeaderField, LeavesAMessageWithoutTheFieldUnchanged) {
  const std::string message = "Subject: s\r\n folded\r\n orphan?\r\nTo: x@y.example\r\n\r\nbody";
  EXPECT_EQ(removeHeaderField(message, kPriority), message);
  EXPECT_EQ(removeHeaderField("", kPriority), "");
}

TEST(RemoveHeaderField, NeverTouchesTheBody) {
  const std::string body = "X-Mailgate-Priority: personal\r\n"
                           " continued\r\n"
                           "\r\n"
                           "X-Mailgate-Priority: bulk\r\n";
  EXPECT_EQ(removeHeaderField("X-Mailgate-Priority: bulk\r\nSubject: s\r\n\r\n" + body, kPriority),
            "Subject: s\r\n\r\n" + body);
  EXPECT_EQ(removeHeaderField("\r\n" + body, kPriority), "\r\n" + body);
}

TEST(RemoveHeaderField, KeepsEveryLineEndAsItWas) {
  EXPECT_EQ(removeHeaderField("Subject: s\nX-Mailgate-Priority: bulk\n folded\nTo: t\n\nX-Mailgate-"
                              "Priority: body\n",
                              kPriority),
            "Subject: s\nTo: t\n\nX-Mailgate-Priority: body\n");
  EXPECT_EQ(removeHeaderField("Subject: s\rX-Mailgate-Priority: bulk\r\nTo: t\r\n", kPriority),
            "Subject: s\rTo: t\r\n");
}

TEST(RemoveHeaderField, NeverMergesABareCrWithTheEmptyLine) {
  // Dropped as is, "Subject: s\r" + "\nbody" would read "Subject: s" CRLF, "body": a header.
  const std::string out =
      removeHeaderField("Subject: s\rX-Mailgate-Priority: bulk\r\n\nbody", kPriority);
  EXPECT_EQ(out, "Subject: s\r\n\nbody");
  EXPECT_FALSE(scan(out + "\r\nFrom: a@acme.example\r\n").from_present);
}

TEST(RemoveHeaderField, LeavesMalformedLinesAndTheirContinuations) {
  const std::string message = "Subject: s\r\n"
                              "X-Mailgate-Priority bulk\r\n"
                              " continued\r\n"
                              "\r\n";
  EXPECT_EQ(removeHeaderField(message, kPriority), message);
}

TEST(RemoveHeaderField, IgnoresNamesThatCannotBeFieldNames) {
  const std::string message = ": x\r\nA B: y\r\n\r\n";
  EXPECT_EQ(removeHeaderField(message, ""), message);
  EXPECT_EQ(removeHeaderField(message, "A B"), message);
  EXPECT_EQ(removeHeaderField(message, "A:"), message);
}

TEST(RemoveHeaderField, OnlyRemovesWhatScanHeadersSees) {
  const std::string message = "From: a@acme.example\r\n"
                              "X-Mailgate-Priority: personal\r\n"
                              "\r\n"
                              "body\r\n";
  const std::string stripped = removeHeaderField(message, kPriority);
  const auto facts = scan(stripped);
  EXPECT_FALSE(facts.priority.has_value());
  EXPECT_EQ(facts.from, (Addresses{"a@acme.example"}));
}

} // namespace
} // namespace mailgate::relay::policy

#include "gateway/message/submission.h"
#include "message_test_support.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <regex>
#include <string>

namespace mailgate::message {
namespace {

using namespace testing;
using Addresses = std::vector<std::string>;

constexpr std::string_view kDate = "Date: Tue, 05 Mar 2024 10:00:00 +0000\r\n";

SubmittedMessage prepare(std::string_view raw, std::string_view priority = {},
                         const ComposeContext& ctx = context()) {
  auto out = prepareRaw(raw, ctx, priority);
  EXPECT_TRUE(out.has_value()) << (out ? "" : out.error().describe());
  if (!out) {
    return {};
  }
  EXPECT_TRUE(crlfOnly(out->data)) << out->data;
  return *out;
}

Error prepareError(std::string_view raw, std::string_view priority = {},
                   const ComposeContext& ctx = context()) {
  auto out = prepareRaw(raw, ctx, priority);
  EXPECT_FALSE(out.has_value()) << raw.substr(0, 200);
  if (out) {
    return {};
  }
  expectTidyError(out.error());
  return out.error();
}

// The data after the Date and Message-ID prepareRaw put at the top.
std::string_view afterAdded(const SubmittedMessage& out) {
  std::string_view data = out.data;
  if (data.starts_with(kDate)) {
    data.remove_prefix(kDate.size());
  }
  const std::string id_line = "Message-ID: " + out.message_id + "\r\n";
  if (data.starts_with(id_line)) {
    data.remove_prefix(id_line.size());
  }
  return data;
}

// --- what changes, what does not ---------------------------------------------------------------

TEST(PrepareRaw, AddsDateAndMessageIdAtTheTopAndChangesNothingElse) {
  const std::string raw = "From: Rep <rep1@acme.example>\r\n"
                          "To: Jane <jane@example.com>\r\n"
                          "Subject: hi\r\n"
                          "\r\n"
                          "Hello\r\n"
                          ".leading dot\r\n";
  const auto out = prepare(raw);
  EXPECT_TRUE(std::regex_match(out.message_id, std::regex("<[a-z2-7]{26}@node1\\.example>")));
  EXPECT_EQ(out.data, std::string(kDate) + "Message-ID: " + out.message_id + "\r\n" + raw);
  EXPECT_EQ(out.from, "rep1@acme.example");
  EXPECT_EQ(out.recipients, Addresses{"jane@example.com"});
  EXPECT_EQ(out.priority, "bulk");
  EXPECT_FALSE(out.smtputf8);
  EXPECT_FALSE(out.body_8bit);
  EXPECT_EQ(out.data.find("MIME-Version"), std::string::npos) << "nothing else is added";
}

TEST(PrepareRaw, KeepsDateAndMessageIdWhenPresent) {
  const std::string raw = "Message-ID:\r\n <abc.123@client.example>\r\n"
                          "From: rep1@acme.example\r\n"
                          "To: jane@example.com\r\n"
                          "date: Mon, 04 Mar 2024 09:00:00 +0100\r\n"
                          "\r\n"
                          "Hello\r\n";
  const auto out = prepare(raw);
  EXPECT_EQ(out.data, raw);
  EXPECT_EQ(out.message_id, "<abc.123@client.example>");
}

TEST(PrepareRaw, AddsOnlyWhatIsMissing) {
  auto out = prepare("From: rep1@acme.example\r\nTo: a@example.com\r\n"
                     "Message-ID: <x@y.example> (a comment)\r\n\r\nb\r\n");
  EXPECT_TRUE(out.data.starts_with(std::string(kDate) + "From:")) << out.data;
  EXPECT_EQ(out.message_id, "<x@y.example>");
  out = prepare("From: rep1@acme.example\r\nTo: a@example.com\r\n"
                "Date: Mon, 04 Mar 2024 09:00:00 +0100\r\n\r\nb\r\n");
  EXPECT_TRUE(out.data.starts_with("Message-ID: " + out.message_id + "\r\nFrom:")) << out.data;
}

TEST(PrepareRaw, EveryLineEndBecomesCrlf) {
  const auto out = prepare("From: rep1@acme.example\n"
                           "To: a@example.com\r\n"
                           "Subject: mixed\n"
                           "\n"
                           "lf\n"
                           "crlf\r\n"
                           "cr\r"
                           "cr cr\r\r"
                           "crcrlf\r\r\n"
                           "no final line end");
  EXPECT_EQ(afterAdded(out), "From: rep1@acme.example\r\n"
                             "To: a@example.com\r\n"
                             "Subject: mixed\r\n"
                             "\r\n"
                             "lf\r\n"
                             "crlf\r\n"
                             "cr\r\n"
                             "cr cr\r\n\r\n"
                             "crcrlf\r\n\r\n"
                             "no final line end\r\n");
}

TEST(PrepareRaw, AMessageThatIsAllHeader) {
  auto out = prepare("From: rep1@acme.example\nTo: a@example.com");
  EXPECT_EQ(afterAdded(out), "From: rep1@acme.example\r\nTo: a@example.com\r\n");
  out = prepare("From: rep1@acme.example\r\nTo: a@example.com\r\n\r\n");
  EXPECT_EQ(afterAdded(out), "From: rep1@acme.example\r\nTo: a@example.com\r\n\r\n");
}

TEST(PrepareRaw, RemovesEveryBccFieldAndTakesItsRecipients) {
  const auto out = prepare("From: rep1@acme.example\r\n"
                           "Bcc: first@example.com\r\n"
                           "To: a@example.com\r\n"
                           "BCC : second@example.com,\r\n"
                           "\tthird@example.com\r\n"
                           "Subject: s\r\n"
                           "bcc:\r\n"
                           "Bcc: Fourth <fourth@example.com>\r\n"
                           "\r\n"
                           "Bcc: in the body stays\r\n");
  EXPECT_EQ(out.recipients, (Addresses{"a@example.com", "first@example.com", "second@example.com",
                                       "third@example.com", "fourth@example.com"}));
  EXPECT_EQ(afterAdded(out), "From: rep1@acme.example\r\n"
                             "To: a@example.com\r\n"
                             "Subject: s\r\n"
                             "\r\n"
                             "Bcc: in the body stays\r\n");
  const auto message = parseMessage(out.data);
  EXPECT_FALSE(hasHeader(message.get(), "Bcc"));
}

TEST(PrepareRaw, RecipientsFromFoldedFieldsAndGroupsInOrderWithoutDuplicates) {
  const auto out = prepare("From: rep1@acme.example\r\n"
                           "Cc: Team: c@example.com, \"D, Dee\" <d@example.com>;,\r\n"
                           "  e@example.com (comment, with@at)\r\n"
                           "To: A <a@example.com>,\r\n"
                           " b@example.com,\r\n"
                           "\tC@Example.com\r\n"
                           "Bcc: undisclosed-recipients:;\r\n"
                           "Resent-To: resent@example.com\r\n"
                           "Resent-Bcc: resent-bcc@example.com\r\n"
                           "\r\n");
  EXPECT_EQ(out.recipients, (Addresses{"a@example.com", "b@example.com", "C@Example.com",
                                       "d@example.com", "e@example.com"}));
  EXPECT_NE(out.data.find("Resent-Bcc: resent-bcc@example.com\r\n"), std::string::npos)
      << "Resent-* fields are not touched";
}

TEST(PrepareRaw, UndisclosedRecipientsWithBcc) {
  const auto out = prepare("From: rep1@acme.example\r\nTo: undisclosed-recipients:;\r\n"
                           "Bcc: x@example.com, y@example.com\r\n\r\nhi\r\n");
  EXPECT_EQ(out.recipients, (Addresses{"x@example.com", "y@example.com"}));
  EXPECT_EQ(out.data.find("y@example.com"), std::string::npos);
}

TEST(PrepareRaw, PriorityFromTheQueryOrTheHeaderWhichIsRemoved) {
  const std::string raw = "From: rep1@acme.example\r\nTo: a@example.com\r\n"
                          "X-Mailgate-Priority: Personal\r\nSubject: s\r\n\r\n"
                          "X-Mailgate-Priority: bulk\r\n";
  auto out = prepare(raw);
  EXPECT_EQ(out.priority, "personal");
  EXPECT_EQ(afterAdded(out), "From: rep1@acme.example\r\nTo: a@example.com\r\nSubject: s\r\n\r\n"
                             "X-Mailgate-Priority: bulk\r\n");
  out = prepare(raw, "bulk");
  EXPECT_EQ(out.priority, "bulk");
  EXPECT_EQ(out.data.find("X-Mailgate-Priority: Personal"), std::string::npos);
  out = prepare("From: rep1@acme.example\r\nTo: a@example.com\r\n\r\n", " PERSONAL ");
  EXPECT_EQ(out.priority, "personal");
  // The query decides, so a header it overrides need not be valid.
  out = prepare("From: rep1@acme.example\r\nTo: a@example.com\r\nX-Mailgate-Priority: high\r\n"
                "\r\n",
                "personal");
  EXPECT_EQ(out.priority, "personal");
  EXPECT_EQ(out.data.find("X-Mailgate"), std::string::npos);
}

TEST(PrepareRaw, InternationalAddressesAnd8BitData) {
  auto out = prepare("From: rep1@b\xc3\xbc"
                     "cher.example\r\nTo: j\xc3\xb6rg@example.com\r\n\r\nhi\r\n");
  EXPECT_EQ(out.from, "rep1@xn--bcher-kva.example");
  EXPECT_TRUE(out.smtputf8);
  EXPECT_TRUE(out.body_8bit);
  out = prepare("From: rep1@acme.example\r\nTo: a@example.com\r\n\r\ncaf\xc3\xa9\r\n");
  EXPECT_FALSE(out.smtputf8);
  EXPECT_TRUE(out.body_8bit);
}

TEST(PrepareRaw, RecipientLimitCountsDistinctAddresses) {
  ComposeContext ctx = context();
  ctx.limits.max_recipients = 2;
  EXPECT_EQ(prepare("From: rep1@acme.example\r\nTo: a@example.com, A@example.com\r\n"
                    "Cc: b@example.com\r\nBcc: a@EXAMPLE.com\r\n\r\n",
                    {}, ctx)
                .recipients.size(),
            2u);
  const Error e = prepareError("From: rep1@acme.example\r\nTo: a@example.com\r\n"
                               "Cc: b@example.com\r\nBcc: c@example.com\r\n\r\n",
                               {}, ctx);
  EXPECT_EQ(e.code, kTooManyRecipients);
}

// --- refusals ----------------------------------------------------------------------------------

TEST(PrepareRawErrors, BareCrInTheHeaderBlockIsInjection) {
  for (const std::string_view raw :
       {std::string_view("From: rep1@acme.example\r\nTo: a@example.com\rBcc: x@evil.example\r\n"
                         "\r\nbody\r\n"),
        std::string_view("From: rep1@acme.example\rTo: a@example.com\r\n\r\n"),
        std::string_view("From: rep1@acme.example\r\nTo: a@example.com\r\n\rbody\r\n"),
        std::string_view("From: rep1@acme.example\r\nTo: a@example.com\r")}) {
    const Error e = prepareError(raw);
    EXPECT_EQ(e.code, kHeaderInjection) << raw;
    EXPECT_TRUE(e.message.starts_with("header: line ")) << e.message;
  }
}

TEST(PrepareRawErrors, NulAnywhere) {
  using namespace std::string_literals;
  for (const std::string& raw : {"From: rep1@acme.example\r\nTo: a@\0x.example\r\n\r\n"s,
                                 "From: rep1@acme.example\r\nTo: a@example.com\r\n\r\nb\0dy"s}) {
    const Error e = prepareError(raw);
    EXPECT_EQ(e.code, kInvalid);
    EXPECT_EQ(e.message, "message: holds a NUL byte");
  }
}

TEST(PrepareRawErrors, ExactlyOneFromMailbox) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"To: a@example.com\r\n\r\n", "From: the message has no From field"},
      {"From: rep1@acme.example\r\nFrom: rep2@acme.example\r\nTo: a@example.com\r\n\r\n",
       "From: the message has more than one From field"},
      {"From: rep1@acme.example, rep2@acme.example\r\nTo: a@example.com\r\n\r\n",
       "From: names 2 mailboxes"},
      {"From: Team: rep1@acme.example, rep2@acme.example;\r\nTo: a@example.com\r\n\r\n",
       "From: names 2 mailboxes"},
      {"From: rep1\r\nTo: a@example.com\r\n\r\n", "From: \"rep1\" is not an email address"},
      {"From: a@b.example;evil@c.example\r\nTo: a@example.com\r\n\r\n", "From: "},
  };
  for (const auto& [raw, message] : cases) {
    const Error e = prepareError(raw);
    EXPECT_EQ(e.code, kInvalid) << raw;
    EXPECT_TRUE(e.message.starts_with(message)) << e.describe();
    EXPECT_NE(e.hint.find("one mailbox"), std::string::npos) << e.hint;
  }
}

TEST(PrepareRawErrors, Recipients) {
  Error e = prepareError("From: rep1@acme.example\r\nSubject: s\r\n\r\n");
  EXPECT_EQ(e.code, kInvalid);
  EXPECT_TRUE(e.message.starts_with("To: the message has no recipients")) << e.message;
  e = prepareError("From: rep1@acme.example\r\nTo: undisclosed-recipients:;\r\n\r\n");
  EXPECT_TRUE(e.message.starts_with("To: the message has no recipients")) << e.message;
  e = prepareError("From: rep1@acme.example\r\nTo: a@example.com\r\ncc: postmaster\r\n\r\n");
  EXPECT_EQ(e.code, kInvalid);
  EXPECT_EQ(e.message, "cc: \"postmaster\" is not an email address: there is no @domain");
  e = prepareError("From: rep1@acme.example\r\nTo: a@x.example;b@y.example\r\n\r\n");
  EXPECT_EQ(e.code, kInvalid);
  EXPECT_EQ(e.message, "To: holds text that is not an address list");
  e = prepareError("From: rep1@acme.example\r\nTo: " + std::string(100, ':') + "\r\n\r\n");
  EXPECT_EQ(e.code, kInvalid);
  EXPECT_EQ(e.message, "To: holds more than 64 ':' (groups)");
}

TEST(PrepareRawErrors, LinesThatAreNotFields) {
  const std::string fields = "From: rep1@acme.example\r\nTo: a@example.com\r\n";
  const std::vector<std::pair<std::string, int>> cases = {
      {"From rep1@acme.example Mon Mar  4 09:00:00 2024\r\n" + fields + "\r\n", 1},
      {" leading continuation\r\n" + fields + "\r\n", 1},
      {fields + "no colon here\r\n\r\n", 3},
      {fields + "Bad Name: x\r\n\r\n", 3},
      {fields + "X-Mailgate-Pri\x98ority: personal\r\n\r\n", 3},
      {fields + ": no name\r\n\r\n", 3},
  };
  for (const auto& [raw, line] : cases) {
    const Error e = prepareError(raw);
    EXPECT_EQ(e.code, kInvalid) << raw;
    EXPECT_EQ(e.message, fmt::format("header: line {} is not a header field", line)) << raw;
  }
}

// GMime's loose parser returns what came before a byte it does not expect ("a@e" of
// "a@e\x7fxample.com"); such addresses are refused rather than read short.
TEST(PrepareRawErrors, AddressesThatWouldBeReadShort) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"From: rep1@acme.example\r\nTo: a@e\x7fxample.com\r\n\r\n", "To: holds a control character"},
      {"From: rep1@acme.example\r\nTo: a@e\x01xample.com\r\n\r\n", "To: holds a control character"},
      {"From: rep1@acme.example\r\nCc: a@example.com\xff\r\n\r\n",
       "Cc: holds bytes that are not UTF-8"},
      {"From: rep1@acme.example\x7f.evil.example\r\nTo: a@example.com\r\n\r\n",
       "From: holds a control character"},
      {"From: rep1@acme.example\r\nTo: jane @ example.com\r\n\r\n",
       "To: holds text that is not an address list"},
      {"From: rep1@[192.0.2.1] (y\r\nTo: a@example.com\r\n\r\n",
       "From: holds an unclosed quote, comment or domain literal"},
  };
  for (const auto& [raw, message] : cases) {
    const Error e = prepareError(raw);
    EXPECT_EQ(e.code, kInvalid) << raw;
    EXPECT_TRUE(e.message.starts_with(message)) << e.message;
  }
}

TEST(PrepareRawErrors, PriorityAndForeignGatewayFields) {
  const std::string base = "From: rep1@acme.example\r\nTo: a@example.com\r\n";
  Error e = prepareError(base + "X-Mailgate-Priority: urgent\r\n\r\n");
  EXPECT_EQ(e.code, kInvalid);
  EXPECT_EQ(e.message, "X-Mailgate-Priority: \"urgent\" is not a priority");
  e = prepareError(base + "\r\n", "urgent");
  EXPECT_EQ(e.code, kInvalid);
  EXPECT_EQ(e.message, "priority: \"urgent\" is not a priority");
  e = prepareError(base + "X-Mailgate-Priorty: personal\r\n\r\n");
  EXPECT_EQ(e.code, kInvalid);
  EXPECT_EQ(e.message, "\"X-Mailgate-Priorty\": X-Mailgate-* fields are the gateway's own");
}

TEST(PrepareRawErrors, MessageIds) {
  const std::string base = "From: rep1@acme.example\r\nTo: a@example.com\r\n";
  Error e =
      prepareError(base + "Message-ID: <a@example.com>\r\nMessage-Id: <b@example.com>\r\n\r\n");
  EXPECT_EQ(e.code, kInvalid);
  EXPECT_EQ(e.message, "Message-ID: the message has 2 Message-ID fields");
  for (const char* bad : {"Message-ID: no-brackets@example.com\r\n", "Message-ID:\r\n",
                          "Message-ID: <>\r\n", "Message-ID: <a b@example.com>\r\n"}) {
    e = prepareError(base + bad + "\r\n");
    EXPECT_EQ(e.code, kInvalid) << bad;
    EXPECT_TRUE(e.message.starts_with("Message-ID: ")) << e.message;
  }
}

TEST(PrepareRawErrors, Sizes) {
  ComposeContext ctx = context();
  ctx.limits.max_message_bytes = 200;
  const std::string head = "From: rep1@acme.example\r\nTo: a@example.com\r\n\r\n";
  Error e = prepareError(head + std::string(201 - head.size(), 'x'), {}, ctx);
  EXPECT_EQ(e.code, kTooLarge);
  EXPECT_EQ(e.message, "message: 201 bytes; at most 200");
  // Within the limit as sent, over it once the line ends are CRLF and Date/Message-ID added.
  std::string lf_body;
  while (lf_body.size() < 100) {
    lf_body += "x\n";
  }
  e = prepareError(head + lf_body, {}, ctx);
  EXPECT_EQ(e.code, kTooLarge);
  EXPECT_TRUE(e.message.starts_with("message: ")) << e.message;
}

TEST(PrepareRawErrors, HugeHeaders) {
  std::string fields = "From: rep1@acme.example\r\nTo: a@example.com\r\n";
  while (fields.size() <= relay::policy::kMaxHeaderBytes) {
    fields += "X-Filler: " + std::string(100, 'f') + "\r\n";
  }
  Error e = prepareError(fields + "\r\nbody\r\n");
  EXPECT_EQ(e.code, kTooLarge);
  EXPECT_EQ(e.message, "header: the header block is larger than 256 KiB");
  e = prepareError(fields); // no empty line at all
  EXPECT_EQ(e.code, kTooLarge);

  // Just under 256 KiB with LF line ends: over it once they are CRLF.
  std::string lf = "From: rep1@acme.example\nTo: a@example.com\n";
  while (lf.size() < relay::policy::kMaxHeaderBytes - 200) {
    lf += "X: y\n";
  }
  e = prepareError(lf + "\nbody\n");
  EXPECT_EQ(e.code, kTooLarge);

  // A header block of 200 KiB passes, with one long folded To field.
  std::string to = "To: first@example.com";
  for (int i = 0; i < 900; ++i) {
    to += ",\r\n r" + std::to_string(i) + "@example.com";
  }
  std::string big = "From: rep1@acme.example\r\n" + to + "\r\n";
  while (big.size() < 200 * 1024) {
    big += "X-Filler: " + std::string(100, 'f') + "\r\n";
  }
  const auto out = prepare(big + "\r\nbody\r\n");
  EXPECT_EQ(out.recipients.size(), 901u);
}

} // namespace
} // namespace mailgate::message

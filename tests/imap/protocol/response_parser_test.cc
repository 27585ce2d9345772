#include "imap/protocol/response_parser.h"

#include <chrono>
#include <gtest/gtest.h>
#include <random>

namespace mailgate::imap::protocol {
namespace {

struct Parsed {
  std::vector<Response> responses;
  std::optional<Error> error;
};

void feed(ResponseParser& p, std::string_view bytes) {
  p.feed(std::span<const char>(bytes.data(), bytes.size()));
}

// Drains every response the parser has; records an error (and checks that it is final).
void drain(ResponseParser& p, Parsed& out) {
  while (!out.error) {
    auto r = p.next();
    if (!r) {
      out.error = r.error();
      auto again = p.next();
      EXPECT_FALSE(again.has_value());
      if (!again) {
        EXPECT_EQ(again.error().code, r.error().code);
      }
      return;
    }
    if (!*r) {
      return;
    }
    out.responses.push_back(std::move(**r));
  }
}

Parsed parseAll(std::string_view wire, bool bytewise, ParserLimits limits = {}) {
  ResponseParser p(limits);
  Parsed out;
  if (bytewise) {
    for (std::size_t i = 0; i < wire.size() && !out.error; ++i) {
      feed(p, wire.substr(i, 1));
      drain(p, out);
    }
  } else {
    feed(p, wire);
    drain(p, out);
  }
  if (!out.error) {
    EXPECT_EQ(p.bufferedBytes(), 0u) << "bytes left over";
  }
  return out;
}

std::string lit(std::string_view bytes) {
  return "{" + std::to_string(bytes.size()) + "}\r\n" + std::string(bytes);
}

template <typename T> const T& dataOf(const Response& r) {
  EXPECT_EQ(r.kind, Response::Kind::kUntagged);
  const T* d = std::get_if<T>(&r.data);
  EXPECT_NE(d, nullptr);
  static const T kEmpty{};
  return d != nullptr ? *d : kEmpty;
}

class Split : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(OnePieceAndByteByByte, Split, ::testing::Bool());

const std::string kHeader = "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
                            "From: Terry Gray <gray@cac.washington.edu>\r\n"
                            "Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
                            "To: imap@cac.washington.edu\r\n"
                            "Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
                            "\r\n";

// RFC 3501 section 8 (the server's side of the sample session).
TEST_P(Split, Rfc3501SampleSession) {
  const std::string wire =
      "* OK IMAP4rev1 Service Ready\r\n"
      "a001 OK LOGIN completed\r\n"
      "* 18 EXISTS\r\n"
      "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
      "* 2 RECENT\r\n"
      "* OK [UNSEEN 17] Message 17 is the first unseen message\r\n"
      "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
      "a002 OK [READ-WRITE] SELECT completed\r\n"
      "* 12 FETCH (FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 4286 "
      "ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \"IMAP4rev1 WG mtg summary and "
      "minutes\" ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((\"Terry Gray\" NIL "
      "\"gray\" \"cac.washington.edu\")) ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
      "((NIL NIL \"imap\" \"cac.washington.edu\")) ((NIL NIL \"minutes\" "
      "\"CNRI.Reston.VA.US\")(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL "
      "\"<B27397-0100000@cac.washington.edu>\") BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" "
      "\"US-ASCII\") NIL NIL \"7BIT\" 3028 92))\r\n"
      "a003 OK FETCH completed\r\n"
      "* 12 FETCH (BODY[HEADER] " +
      lit(kHeader) +
      ")\r\n"
      "a004 OK FETCH completed\r\n"
      "* 12 FETCH (FLAGS (\\Seen \\Deleted))\r\n"
      "a005 OK +FLAGS completed\r\n"
      "* BYE IMAP4rev1 server logging out\r\n"
      "a006 OK LOGOUT completed\r\n";
  const Parsed p = parseAll(wire, GetParam());
  ASSERT_FALSE(p.error) << p.error->describe();
  ASSERT_EQ(p.responses.size(), 16u);
  const auto& r = p.responses;

  EXPECT_EQ(dataOf<StatusResponse>(r[0]).status, Status::kOk);
  EXPECT_EQ(r[0].status.text, "IMAP4rev1 Service Ready");
  EXPECT_EQ(r[1].kind, Response::Kind::kTagged);
  EXPECT_EQ(r[1].tag, "a001");
  EXPECT_EQ(r[1].status.text, "LOGIN completed");
  EXPECT_EQ(dataOf<NumberData>(r[2]).kind, NumberData::Kind::kExists);
  EXPECT_EQ(dataOf<NumberData>(r[2]).number, 18u);
  EXPECT_EQ(
      dataOf<FlagsData>(r[3]).flags,
      (std::vector<std::string>{"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"}));
  EXPECT_EQ(dataOf<NumberData>(r[4]).kind, NumberData::Kind::kRecent);
  ASSERT_TRUE(r[5].status.code.has_value());
  EXPECT_EQ(r[5].status.code->name, "UNSEEN");
  EXPECT_EQ(r[5].status.code->number, 17u);
  EXPECT_EQ(r[5].status.text, "Message 17 is the first unseen message");
  EXPECT_EQ(r[6].status.code->number, 3857529045u);
  EXPECT_EQ(r[7].status.code->name, "READ-WRITE");
  EXPECT_EQ(r[7].status.code->raw, "");

  const FetchData& f = dataOf<FetchData>(r[8]);
  EXPECT_EQ(f.seq, 12u);
  EXPECT_EQ(f.flags, (std::vector<std::string>{"\\Seen"}));
  EXPECT_EQ(f.internal_date, "17-Jul-1996 02:44:25 -0700");
  EXPECT_EQ(f.rfc822_size, 4286u);
  ASSERT_TRUE(f.envelope.has_value());
  const Envelope& e = *f.envelope;
  EXPECT_EQ(e.date, "Wed, 17 Jul 1996 02:23:25 -0700 (PDT)");
  EXPECT_EQ(e.subject, "IMAP4rev1 WG mtg summary and minutes");
  ASSERT_EQ(e.from.size(), 1u);
  EXPECT_EQ(e.from[0].name, "Terry Gray");
  EXPECT_EQ(e.from[0].email(), "gray@cac.washington.edu");
  ASSERT_EQ(e.cc.size(), 2u);
  EXPECT_EQ(e.cc[0].name, "");
  EXPECT_EQ(e.cc[1].email(), "KLENSIN@MIT.EDU");
  EXPECT_TRUE(e.bcc.empty());
  EXPECT_EQ(e.in_reply_to, "");
  EXPECT_EQ(e.message_id, "<B27397-0100000@cac.washington.edu>");
  ASSERT_EQ(f.other.size(), 1u);
  EXPECT_EQ(f.other[0].first, "BODY");
  EXPECT_EQ(f.other[0].second.kind, Value::Kind::kList);
  EXPECT_EQ(f.other[0].second.items.size(), 8u);
  EXPECT_EQ(f.other[0].second.items[6].number, 3028u);

  const FetchData& h = dataOf<FetchData>(r[10]);
  ASSERT_EQ(h.sections.size(), 1u);
  EXPECT_EQ(h.sections[0].section, "HEADER");
  EXPECT_EQ(h.sections[0].data, kHeader);
  EXPECT_FALSE(h.sections[0].origin.has_value());
  EXPECT_EQ(dataOf<FetchData>(r[12]).flags, (std::vector<std::string>{"\\Seen", "\\Deleted"}));
  EXPECT_EQ(dataOf<StatusResponse>(r[14]).status, Status::kBye);
  EXPECT_EQ(r[15].tag, "a006");
}

// Microsoft 365: greeting, capabilities, login, folders, fetch, throttling and the goodbye.
TEST_P(Split, Microsoft365Session) {
  const std::string wire =
      "* OK The Microsoft Exchange IMAP4 service is ready. "
      "[TQBXADQAUABSADAAMQBDAEEAMAAwADEAMgAuAGUAeABhAG0AcABsAGUA]\r\n"
      "* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT "
      "CHILDREN IDLE NAMESPACE LITERAL+\r\n"
      "A0 OK CAPABILITY completed.\r\n"
      "+ \r\n"
      "A1 OK AUTHENTICATE completed.\r\n"
      "* LIST (\\Marked \\HasNoChildren) \"/\" INBOX\r\n"
      "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n"
      "* LIST (\\HasChildren) \"/\" \"Gel&APY-schte Elemente\"\r\n"
      "A2 OK LIST completed.\r\n"
      "* ID (\"name\" \"Microsoft.Exchange.Imap4.Imap4Server\" \"version\" \"15.20\")\r\n"
      "A3 OK ID completed.\r\n"
      "* 2 EXISTS\r\n"
      "* 0 RECENT\r\n"
      "* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $MDNSent)\r\n"
      "* OK [PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $MDNSent)] Permanent "
      "flags\r\n"
      "* OK [UIDVALIDITY 14] UIDVALIDITY value\r\n"
      "* OK [UIDNEXT 391] The next unique identifier value\r\n"
      "A4 OK [READ-WRITE] SELECT completed.\r\n"
      "A5 OK [APPENDUID 14 391] APPEND completed.\r\n"
      "A6 NO Request is throttled. Suggested Backoff Time: 299910 milliseconds\r\n"
      "A7 BAD User is authenticated but not connected.\r\n"
      "* BYE Connection closed. 14\r\n";
  const Parsed p = parseAll(wire, GetParam());
  ASSERT_FALSE(p.error) << p.error->describe();
  ASSERT_EQ(p.responses.size(), 22u);
  const auto& r = p.responses;
  EXPECT_FALSE(r[0].status.code.has_value());
  EXPECT_EQ(r[0].status.text.rfind("The Microsoft Exchange IMAP4 service is ready.", 0), 0u);
  EXPECT_EQ(dataOf<CapabilityData>(r[1]).capabilities,
            (std::vector<std::string>{"IMAP4", "IMAP4REV1", "AUTH=PLAIN", "AUTH=XOAUTH2", "SASL-IR",
                                      "UIDPLUS", "MOVE", "ID", "UNSELECT", "CHILDREN", "IDLE",
                                      "NAMESPACE", "LITERAL+"}));
  EXPECT_EQ(r[3].kind, Response::Kind::kContinuation);
  EXPECT_EQ(r[3].continuation, "");
  const ListData& inbox = dataOf<ListData>(r[5]);
  EXPECT_EQ(inbox.name, "INBOX");
  EXPECT_EQ(inbox.delimiter, '/');
  EXPECT_TRUE(inbox.hasAttribute("\\marked"));
  const ListData& sent = dataOf<ListData>(r[6]);
  EXPECT_EQ(sent.name, "Sent Items");
  EXPECT_TRUE(sent.hasAttribute("\\Sent"));
  EXPECT_FALSE(sent.hasAttribute("\\Drafts"));
  EXPECT_EQ(dataOf<ListData>(r[7]).name, "Gel&APY-schte Elemente");
  const OtherData& id = dataOf<OtherData>(r[9]);
  EXPECT_EQ(id.name, "ID");
  ASSERT_EQ(id.values.size(), 1u);
  ASSERT_EQ(id.values[0].items.size(), 4u);
  EXPECT_EQ(id.values[0].items[1].asString(), "Microsoft.Exchange.Imap4.Imap4Server");
  EXPECT_EQ(r[14].status.code->flags.size(), 6u);
  EXPECT_EQ(r[14].status.code->flags[5], "$MDNSent");
  EXPECT_EQ(r[15].status.code->number, 14u);
  EXPECT_EQ(r[16].status.code->number, 391u);
  EXPECT_EQ(r[18].status.code->uidvalidity, 14u);
  EXPECT_EQ(r[18].status.code->uids.format(), "391");
  EXPECT_EQ(r[19].status.status, Status::kNo);
  EXPECT_EQ(r[19].status.text, "Request is throttled. Suggested Backoff Time: 299910 milliseconds");
  EXPECT_EQ(r[20].status.status, Status::kBad);
  EXPECT_EQ(dataOf<StatusResponse>(r[21]).text, "Connection closed. 14");
}

TEST_P(Split, ContinuationForms) {
  const Parsed p = parseAll("+\r\n+ \r\n+ Ready for literal data\r\n+ eyJzdGF0dXMiOiI0MDAifQ==\r\n"
                            "+Ready\r\n",
                            GetParam());
  ASSERT_FALSE(p.error);
  ASSERT_EQ(p.responses.size(), 5u);
  EXPECT_EQ(p.responses[0].continuation, "");
  EXPECT_EQ(p.responses[1].continuation, "");
  EXPECT_EQ(p.responses[2].continuation, "Ready for literal data");
  EXPECT_EQ(p.responses[3].continuation, "eyJzdGF0dXMiOiI0MDAifQ==");
  EXPECT_EQ(p.responses[4].continuation, "Ready");
  for (const auto& r : p.responses) {
    EXPECT_EQ(r.kind, Response::Kind::kContinuation);
  }
}

// RFC 4315 UIDPLUS.
TEST_P(Split, AppendUidAndCopyUid) {
  const Parsed p = parseAll("A003 OK [APPENDUID 38505 3955] APPEND completed\r\n"
                            "A004 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n"
                            "A005 OK [APPENDUID 38505 3955:3957] MULTIAPPEND completed\r\n"
                            "A006 OK [APPENDUID 38505 x] odd\r\n",
                            GetParam());
  ASSERT_FALSE(p.error);
  ASSERT_EQ(p.responses.size(), 4u);
  const ResponseCode& a = *p.responses[0].status.code;
  EXPECT_EQ(a.name, "APPENDUID");
  EXPECT_EQ(a.raw, "38505 3955");
  EXPECT_EQ(a.uidvalidity, 38505u);
  EXPECT_EQ(a.uids.format(), "3955");
  const ResponseCode& c = *p.responses[1].status.code;
  EXPECT_EQ(c.uidvalidity, 38505u);
  EXPECT_EQ(c.uids.format(), "304,319:320");
  EXPECT_EQ(c.target_uids.format(), "3956:3958");
  EXPECT_EQ(p.responses[1].status.text, "Done");
  EXPECT_EQ(p.responses[2].status.code->uids.size(), 3u);
  EXPECT_FALSE(p.responses[3].status.code->uidvalidity.has_value());
  EXPECT_EQ(p.responses[3].status.code->raw, "38505 x");
}

TEST_P(Split, ResponseCodes) {
  const Parsed p = parseAll("* OK [CAPABILITY IMAP4rev1 literal+ IDLE] hi\r\n"
                            "* OK [HIGHESTMODSEQ 715194045007] Highest\r\n"
                            "* NO [ALERT] System shutdown in 10 minutes\r\n"
                            "A1 NO [BADCHARSET (UTF-8 US-ASCII)] charset\r\n"
                            "A2 OK [X-UNKNOWN-CODE a b c]\r\n"
                            "* OK [broken code\r\n"
                            "* OK [] empty\r\n"
                            "A3 OK\r\n"
                            "* PREAUTH [CAPABILITY IMAP4rev1] Logged in as Smith\r\n",
                            GetParam());
  ASSERT_FALSE(p.error) << p.error->describe();
  ASSERT_EQ(p.responses.size(), 9u);
  const auto& r = p.responses;
  EXPECT_EQ(r[0].status.code->capabilities,
            (std::vector<std::string>{"IMAP4REV1", "LITERAL+", "IDLE"}));
  EXPECT_EQ(r[1].status.code->modseq, 715194045007u);
  EXPECT_EQ(r[2].status.code->name, "ALERT");
  EXPECT_EQ(r[2].status.text, "System shutdown in 10 minutes");
  EXPECT_EQ(r[3].status.code->name, "BADCHARSET");
  EXPECT_EQ(r[3].status.code->raw, "(UTF-8 US-ASCII)");
  EXPECT_EQ(r[4].status.code->name, "X-UNKNOWN-CODE");
  EXPECT_EQ(r[4].status.code->raw, "a b c");
  EXPECT_EQ(r[4].status.text, "");
  EXPECT_FALSE(r[5].status.code.has_value());
  EXPECT_EQ(r[5].status.text, "[broken code");
  EXPECT_FALSE(r[6].status.code.has_value());
  EXPECT_EQ(r[7].status.text, "");
  EXPECT_EQ(r[8].status.status, Status::kPreauth);
}

// RFC 3501 6.3.8 and RFC 9051 LIST examples, plus names as literals.
TEST_P(Split, ListResponses) {
  const Parsed p =
      parseAll("* LIST (\\Noselect) \"/\" ~/Mail/foo\r\n"
               "* LIST () \".\" #news.comp.mail.misc\r\n"
               "* LIST (\\Noselect) \"/\" \"\"\r\n"
               "* LIST () NIL blurdybloop\r\n"
               "* LSUB () \"\\\\\" \"a\\\\b\"\r\n"
               "* LIST () \"/\" " +
                   lit("Gel\xc3\xb6scht") +
                   "\r\n"
                   "* LIST (\\Subscribed) \"/\" \"Foo\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"
                   "* list (\\Drafts) \"/\" Drafts]\r\n",
               GetParam());
  ASSERT_FALSE(p.error) << p.error->describe();
  ASSERT_EQ(p.responses.size(), 8u);
  const auto& r = p.responses;
  EXPECT_EQ(dataOf<ListData>(r[0]).name, "~/Mail/foo");
  EXPECT_TRUE(dataOf<ListData>(r[0]).hasAttribute("\\NOSELECT"));
  EXPECT_EQ(dataOf<ListData>(r[1]).delimiter, '.');
  EXPECT_EQ(dataOf<ListData>(r[2]).name, "");
  EXPECT_FALSE(dataOf<ListData>(r[3]).delimiter.has_value());
  EXPECT_EQ(dataOf<ListData>(r[4]).delimiter, '\\');
  EXPECT_EQ(dataOf<ListData>(r[4]).name, "a\\b");
  EXPECT_EQ(dataOf<ListData>(r[5]).name, "Gel\xc3\xb6scht");
  EXPECT_EQ(dataOf<ListData>(r[6]).name, "Foo");
  EXPECT_EQ(dataOf<ListData>(r[7]).name, "Drafts]");
}

TEST_P(Split, FetchBodySections) {
  const std::string binary("\0\x01\r\n\xff", 5);
  const std::string wire =
      "* 1 FETCH (UID 4 BODY[HEADER.FIELDS (From To)] " + lit("From: a@b\r\n\r\n") +
      " BODY[]<0> {3}\r\nabc BODY[TEXT] NIL BODY[1.MIME] \"quoted\")\r\n"
      "* 2 FETCH (BINARY[1] ~{5}\r\n" +
      binary +
      " BINARY.SIZE[1] 5)\r\n"
      "* 3 FETCH (RFC822.HEADER " +
      lit("Subject: x\r\n\r\n") + " RFC822.TEXT {0}\r\n RFC822 " + lit("all") +
      ")\r\n"
      "* 4 FETCH (UID 5 MODSEQ (12121231000) X-GM-MSGID 1278455344230334865)\r\n"
      "* 5 fetch (uid 6 flags () body[header]<100> {1}\r\nx )\r\n";
  const Parsed p = parseAll(wire, GetParam());
  ASSERT_FALSE(p.error) << p.error->describe();
  ASSERT_EQ(p.responses.size(), 5u);
  const FetchData& a = dataOf<FetchData>(p.responses[0]);
  EXPECT_EQ(a.uid, 4u);
  ASSERT_EQ(a.sections.size(), 4u);
  EXPECT_EQ(a.sections[0].section, "HEADER.FIELDS (FROM TO)");
  EXPECT_EQ(a.sections[0].data, "From: a@b\r\n\r\n");
  EXPECT_EQ(a.sections[1].section, "");
  EXPECT_EQ(a.sections[1].origin, 0u);
  EXPECT_EQ(a.sections[1].data, "abc");
  EXPECT_EQ(a.sections[2].section, "TEXT");
  EXPECT_FALSE(a.sections[2].data.has_value());
  EXPECT_EQ(a.sections[3].data, "quoted");
  const FetchData& b = dataOf<FetchData>(p.responses[1]);
  ASSERT_EQ(b.sections.size(), 1u);
  EXPECT_EQ(b.sections[0].section, "1");
  EXPECT_EQ(b.sections[0].data, binary);
  ASSERT_EQ(b.other.size(), 1u);
  EXPECT_EQ(b.other[0].first, "BINARY.SIZE[1]");
  EXPECT_EQ(b.other[0].second.number, 5u);
  const FetchData& c = dataOf<FetchData>(p.responses[2]);
  ASSERT_EQ(c.sections.size(), 3u);
  EXPECT_EQ(c.sections[0].section, "RFC822.HEADER");
  EXPECT_EQ(c.sections[1].section, "RFC822.TEXT");
  EXPECT_EQ(c.sections[1].data, "");
  EXPECT_EQ(c.sections[2].section, "RFC822");
  EXPECT_EQ(c.sections[2].data, "all");
  const FetchData& d = dataOf<FetchData>(p.responses[3]);
  EXPECT_EQ(d.modseq, 12121231000u);
  ASSERT_EQ(d.other.size(), 1u);
  EXPECT_EQ(d.other[0].first, "X-GM-MSGID");
  const FetchData& e = dataOf<FetchData>(p.responses[4]);
  EXPECT_EQ(e.uid, 6u);
  ASSERT_TRUE(e.flags.has_value());
  EXPECT_TRUE(e.flags->empty());
  EXPECT_EQ(e.sections[0].section, "HEADER");
  EXPECT_EQ(e.sections[0].origin, 100u);
  EXPECT_EQ(e.sections[0].data, "x");
}

TEST_P(Split, EnvelopeWithGroupsAndLiterals) {
  const std::string wire =
      "* 7 FETCH (ENVELOPE (NIL " + lit("Caf\xc3\xa9 \"menu\"") +
      " ((NIL NIL \"a\" \"x.example\")) NIL NIL ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL "
      "NIL NIL)) NIL NIL \"<r@x>\" NIL))\r\n";
  const Parsed p = parseAll(wire, GetParam());
  ASSERT_FALSE(p.error) << p.error->describe();
  const Envelope& e = *dataOf<FetchData>(p.responses.at(0)).envelope;
  EXPECT_EQ(e.date, "");
  EXPECT_EQ(e.subject, "Caf\xc3\xa9 \"menu\"");
  EXPECT_TRUE(e.sender.empty());
  ASSERT_EQ(e.to.size(), 2u);
  EXPECT_EQ(e.to[0].mailbox, "undisclosed-recipients");
  EXPECT_EQ(e.to[0].email(), "");
  EXPECT_EQ(e.to[1].email(), "");
  EXPECT_EQ(e.in_reply_to, "<r@x>");
  EXPECT_EQ(e.message_id, "");
}

// RFC 4731 ESEARCH and RFC 7162 CONDSTORE/QRESYNC.
TEST_P(Split, SearchEsearchAndVanished) {
  const Parsed p = parseAll("* SEARCH 2 84 882\r\n"
                            "* SEARCH\r\n"
                            "* SEARCH \r\n"
                            "* SEARCH 2 5 6 7 11 12 18 19 20 23 (MODSEQ 917162500)\r\n"
                            "* ESEARCH (TAG \"A282\") MIN 2 COUNT 3\r\n"
                            "* ESEARCH (TAG \"A283\") ALL 2,10:11\r\n"
                            "* ESEARCH (TAG \"A285\") UID MIN 7 MAX 3800\r\n"
                            "* ESEARCH (TAG \"A286\") COUNT 15 MODSEQ 12345 X-EXT (1 2)\r\n"
                            "* ESEARCH\r\n"
                            "* VANISHED (EARLIER) 41,43:116,118,120:211,214:540\r\n"
                            "* VANISHED 405,407,410,425\r\n",
                            GetParam());
  ASSERT_FALSE(p.error) << p.error->describe();
  ASSERT_EQ(p.responses.size(), 11u);
  const auto& r = p.responses;
  EXPECT_EQ(dataOf<SearchData>(r[0]).numbers, (std::vector<uint32_t>{2, 84, 882}));
  EXPECT_FALSE(dataOf<SearchData>(r[0]).esearch);
  EXPECT_TRUE(dataOf<SearchData>(r[1]).numbers.empty());
  EXPECT_TRUE(dataOf<SearchData>(r[2]).numbers.empty());
  EXPECT_EQ(dataOf<SearchData>(r[3]).numbers.size(), 10u);
  EXPECT_EQ(dataOf<SearchData>(r[3]).modseq, 917162500u);
  const SearchData& e1 = dataOf<SearchData>(r[4]);
  EXPECT_TRUE(e1.esearch);
  EXPECT_EQ(e1.tag, "A282");
  EXPECT_EQ(e1.min, 2u);
  EXPECT_EQ(e1.count, 3u);
  EXPECT_FALSE(e1.uid);
  EXPECT_EQ(dataOf<SearchData>(r[5]).numbers, (std::vector<uint32_t>{2, 10, 11}));
  const SearchData& e3 = dataOf<SearchData>(r[6]);
  EXPECT_TRUE(e3.uid);
  EXPECT_EQ(e3.max, 3800u);
  EXPECT_EQ(dataOf<SearchData>(r[7]).modseq, 12345u);
  EXPECT_EQ(dataOf<SearchData>(r[8]).tag, "");
  const VanishedData& v = dataOf<VanishedData>(r[9]);
  EXPECT_TRUE(v.earlier);
  EXPECT_EQ(v.uids.format(), "41,43:116,118,120:211,214:540");
  EXPECT_FALSE(dataOf<VanishedData>(r[10]).earlier);
  EXPECT_EQ(dataOf<VanishedData>(r[10]).uids.size(), 4u);
}

TEST_P(Split, StatusEnabledAndOthers) {
  const Parsed p = parseAll("* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n"
                            "* STATUS \"Sent Items\" (messages 1 HIGHESTMODSEQ 7011231777 )\r\n"
                            "* ENABLED CONDSTORE QRESYNC\r\n"
                            "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n"
                            "* 3 EXPUNGE\r\n"
                            "* 5 XSTRANGE foo\r\n"
                            "* X-WEIRD ] not [ values ) (\r\n"
                            "* QUOTA \"\" (STORAGE 10 512)\r\n",
                            GetParam());
  ASSERT_FALSE(p.error) << p.error->describe();
  ASSERT_EQ(p.responses.size(), 8u);
  const auto& r = p.responses;
  const StatusData& s = dataOf<StatusData>(r[0]);
  EXPECT_EQ(s.mailbox, "blurdybloop");
  EXPECT_EQ(s.items,
            (std::vector<std::pair<std::string, uint64_t>>{{"MESSAGES", 231}, {"UIDNEXT", 44292}}));
  EXPECT_EQ(dataOf<StatusData>(r[1]).mailbox, "Sent Items");
  EXPECT_EQ(dataOf<StatusData>(r[1]).items[0].first, "MESSAGES");
  EXPECT_EQ(dataOf<StatusData>(r[1]).items[1].second, 7011231777u);
  EXPECT_EQ(dataOf<EnabledData>(r[2]).capabilities,
            (std::vector<std::string>{"CONDSTORE", "QRESYNC"}));
  EXPECT_EQ(dataOf<OtherData>(r[3]).name, "NAMESPACE");
  EXPECT_EQ(dataOf<OtherData>(r[3]).values.size(), 3u);
  EXPECT_TRUE(dataOf<OtherData>(r[3]).values[1].isNil());
  EXPECT_EQ(dataOf<NumberData>(r[4]).kind, NumberData::Kind::kExpunge);
  EXPECT_EQ(dataOf<OtherData>(r[5]).name, "XSTRANGE");
  EXPECT_EQ(dataOf<OtherData>(r[5]).values.size(), 2u);
  EXPECT_EQ(dataOf<OtherData>(r[5]).values[0].number, 5u);
  const OtherData& weird = dataOf<OtherData>(r[6]);
  EXPECT_EQ(weird.name, "X-WEIRD");
  ASSERT_EQ(weird.values.size(), 1u);
  EXPECT_EQ(weird.values[0].text, "] not [ values ) (");
  EXPECT_EQ(dataOf<OtherData>(r[7]).name, "QUOTA");
}

TEST_P(Split, LenientForms) {
  const Parsed p = parseAll("* ok [uidnext 5] hi\n"
                            "a1 ok done\n"
                            "* 1 exists\r\n"
                            "* CAPABILITY IMAP4rev1 \r\n"
                            "* OK\r\n"
                            "* BAD Command Error. 12\r\n"
                            "A2 OK[READ-ONLY] EXAMINE\r\n",
                            GetParam());
  ASSERT_FALSE(p.error) << p.error->describe();
  ASSERT_EQ(p.responses.size(), 7u);
  EXPECT_EQ(p.responses[0].status.code->name, "UIDNEXT");
  EXPECT_EQ(p.responses[0].status.code->number, 5u);
  EXPECT_EQ(p.responses[1].status.text, "done");
  EXPECT_EQ(dataOf<NumberData>(p.responses[2]).number, 1u);
  EXPECT_EQ(dataOf<CapabilityData>(p.responses[3]).capabilities.size(), 1u);
  EXPECT_EQ(p.responses[5].status.status, Status::kBad);
  EXPECT_EQ(p.responses[6].status.code->name, "READ-ONLY");
}

// ---- hostile input ----

Error errorOf(std::string_view wire, ParserLimits limits = {}) {
  for (const bool bytewise : {false, true}) {
    const Parsed p = parseAll(wire, bytewise, limits);
    EXPECT_TRUE(p.error.has_value()) << wire.substr(0, 80);
    if (!p.error) {
      return {};
    }
    if (!bytewise) {
      return *p.error;
    }
  }
  return {};
}

TEST(ResponseParserHostile, HugeLiteralIsRefusedAtItsAnnouncement) {
  ResponseParser p;
  const std::string claim = "* 1 FETCH (BODY[] {2147483648}\r\n";
  feed(p, claim);
  auto r = p.next();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, "imap.limit");
  EXPECT_EQ(p.bufferedBytes(), 0u);
  feed(p, std::string(4096, 'x'));
  EXPECT_EQ(p.bufferedBytes(), 0u);
  EXPECT_EQ(errorOf("* 1 FETCH (BODY[] {99999999999999999999999999}\r\n").code, "imap.limit");
  EXPECT_EQ(errorOf("* 1 FETCH (BINARY[] ~{2147483648}\r\n").code, "imap.limit");
}

TEST(ResponseParserHostile, OverlongLineIsRefusedWithBoundedBuffering) {
  ParserLimits limits;
  limits.max_line_bytes = 1000;
  ResponseParser p(limits);
  feed(p, "* OK ");
  for (int i = 0; i < 100; ++i) {
    feed(p, std::string(100, 'a'));
    auto r = p.next();
    EXPECT_LE(p.bufferedBytes(), 1001u + 100u);
    if (!r) {
      EXPECT_EQ(r.error().code, "imap.limit");
      EXPECT_EQ(p.bufferedBytes(), 0u);
      return;
    }
  }
  FAIL() << "no limit error";
}

TEST(ResponseParserHostile, LineAtTheLimitIsAccepted) {
  ParserLimits limits;
  limits.max_line_bytes = 100;
  const std::string line = "* OK " + std::string(95, 'a');
  EXPECT_FALSE(parseAll(line + "\r\n", true, limits).error);
  EXPECT_EQ(errorOf(line + "a\r\n", limits).code, "imap.limit");
}

TEST(ResponseParserHostile, UnterminatedLiteralWaitsWithBoundedBuffer) {
  ResponseParser p;
  const std::string start = "* 1 FETCH (BODY[] {100}\r\nabc";
  feed(p, start);
  auto r = p.next();
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->has_value());
  EXPECT_EQ(p.bufferedBytes(), start.size());
  feed(p, std::string(97, 'x') + ")\r\n");
  r = p.next();
  ASSERT_TRUE(r.has_value() && r->has_value());
  EXPECT_EQ(std::get<FetchData>((*r)->data).sections.at(0).data->size(), 100u);
}

TEST(ResponseParserHostile, NestingBomb) {
  EXPECT_EQ(errorOf("* 1 FETCH (BODYSTRUCTURE " + std::string(10000, '(') + "\r\n").code,
            "imap.limit");
  EXPECT_EQ(errorOf("* X-BOMB " + std::string(10000, '(') + "\r\n").code, "imap.limit");
  // 16 levels are fine (FETCH's own parenthesis is the first).
  EXPECT_FALSE(
      parseAll("* 1 FETCH (X " + std::string(15, '(') + std::string(15, ')') + ")\r\n", false)
          .error);
  EXPECT_EQ(errorOf("* 1 FETCH (X " + std::string(16, '(') + std::string(16, ')') + ")\r\n").code,
            "imap.limit");
}

TEST(ResponseParserHostile, NulAndBareCrInALine) {
  const Error nul = errorOf(std::string("* OK hello\0world\r\n", 19));
  EXPECT_EQ(nul.code, "imap.syntax");
  EXPECT_NE(nul.message.find("NUL"), std::string::npos);
  EXPECT_EQ(errorOf("* OK a\rb\r\n").code, "imap.syntax");
}

TEST(ResponseParserHostile, Garbage) {
  for (const std::string& bad : {std::string("garbage\r\n"),
                                 std::string("\r\n"),
                                 std::string("\n"),
                                 std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n", 13),
                                 std::string("* \r\n"),
                                 std::string("*\r\n"),
                                 std::string("A1 MAYBE\r\n"),
                                 std::string("A1 PREAUTH x\r\n"),
                                 std::string("* 1 FETCH UID 1\r\n"),
                                 std::string("* 1 FETCH (UID x)\r\n"),
                                 std::string("* 1 FETCH (UID 1\r\n"),
                                 std::string("* 1 FETCH (UID 99999999999)\r\n"),
                                 std::string("* 4294967296 EXISTS\r\n"),
                                 std::string("* 1 EXISTS extra\r\n"),
                                 std::string("* SEARCH 1 x\r\n"),
                                 std::string("* LIST () \"ab\" x\r\n"),
                                 std::string("* LIST \"/\" x\r\n"),
                                 std::string("* ESEARCH ALL 0\r\n"),
                                 std::string("* VANISHED x\r\n"),
                                 std::string("* STATUS x (MESSAGES)\r\n"),
                                 std::string("* 1 FETCH (BODY[] \"abc)\r\n"),
                                 std::string("* 1 FETCH (ENVELOPE (NIL))\r\n"),
                                 std::string("* 1 FETCH (BODY[]<x> NIL)\r\n"),
                                 std::string("* CAPABILITY {3}\r\nabc\r\n")}) {
    const Error e = errorOf(bad);
    EXPECT_EQ(e.code, "imap.syntax") << bad;
  }
}

TEST(ResponseParserHostile, ErrorMessagesQuoteLittleAndPrintably) {
  const std::string wire = "A1 " + std::string(200, '\x01') + "\r\n";
  const Error e = errorOf(wire);
  EXPECT_EQ(e.code, "imap.syntax");
  for (const char c : e.message) {
    EXPECT_TRUE(c >= 0x20 && c < 0x7f);
  }
  EXPECT_LE(e.message.size(), 64u * 4 + 100);
  const Error long_text = errorOf("* 1 FETCH (UID " + std::string(500, 'z') + ")\r\n");
  EXPECT_LE(long_text.message.find_last_of('z') - long_text.message.find('z') + 1, 64u);
}

TEST(ResponseParserHostile, ErrorsAreFinal) {
  ResponseParser p;
  feed(p, "* OK fine\r\nbroken\r\n* OK after\r\n");
  auto first = p.next();
  ASSERT_TRUE(first.has_value() && first->has_value());
  auto bad = p.next();
  ASSERT_FALSE(bad.has_value());
  feed(p, "* OK more\r\n");
  for (int i = 0; i < 3; ++i) {
    auto again = p.next();
    ASSERT_FALSE(again.has_value());
    EXPECT_EQ(again.error().code, "imap.syntax");
  }
  EXPECT_EQ(p.bufferedBytes(), 0u);
}

TEST(ResponseParserHostile, ResponseAndValueLimits) {
  ParserLimits limits;
  limits.max_response_bytes = 1000;
  limits.max_literal_bytes = 600;
  EXPECT_EQ(errorOf("* 1 FETCH (BODY[1] " + lit(std::string(500, 'a')) + " BODY[2] " +
                        lit(std::string(500, 'b')) + ")\r\n",
                    limits)
                .code,
            "imap.limit");
  EXPECT_EQ(errorOf("* 1 FETCH (BODY[1] " + lit(std::string(601, 'a')) + ")\r\n", limits).code,
            "imap.limit");
  EXPECT_FALSE(
      parseAll("* 1 FETCH (BODY[1] " + lit(std::string(600, 'a')) + ")\r\n", false, limits).error);

  ParserLimits few;
  few.max_values = 10;
  std::string search = "* SEARCH";
  for (int i = 1; i <= 11; ++i) {
    search += " " + std::to_string(i);
  }
  EXPECT_EQ(errorOf(search + "\r\n", few).code, "imap.limit");
  EXPECT_EQ(errorOf("* ESEARCH (TAG \"a\") ALL 1:100000\r\n", few).code, "imap.limit");
  EXPECT_EQ(errorOf("* ESEARCH ALL 1:*\r\n").code, "imap.limit");
  EXPECT_FALSE(parseAll("* ESEARCH ALL 1:8\r\n", false, few).error);
}

TEST(ResponseParser, DiscardBufferedDropsEverything) {
  ResponseParser p;
  feed(p, "A1 OK Begin TLS negotiation now\r\n* OK injected\r\n* 1 FETCH (BODY[] {10}\r\nab");
  auto r = p.next();
  ASSERT_TRUE(r.has_value() && r->has_value());
  EXPECT_GT(p.bufferedBytes(), 0u);
  p.discardBuffered();
  EXPECT_EQ(p.bufferedBytes(), 0u);
  feed(p, "* OK [CAPABILITY IMAP4rev1] over TLS\r\n");
  r = p.next();
  ASSERT_TRUE(r.has_value() && r->has_value());
  EXPECT_EQ((*r)->status.text, "over TLS");
}

// Random split points over every transcript above give the same responses as one piece.
TEST(ResponseParser, RandomSplitsMatchOnePiece) {
  const std::string wire = "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
                           "* 1 FETCH (UID 4 BODY[] {5}\r\nab\r\nc FLAGS (\\Seen))\r\n"
                           "* LIST () \"/\" {3}\r\nabc\r\n"
                           "+ \r\n"
                           "* 2 FETCH (BINARY[] ~{0}\r\n)\r\n"
                           "A1 OK done\n";
  const Parsed whole = parseAll(wire, false);
  ASSERT_FALSE(whole.error);
  ASSERT_EQ(whole.responses.size(), 6u);
  std::mt19937 rng(3);
  for (int round = 0; round < 300; ++round) {
    ResponseParser p;
    Parsed out;
    std::size_t pos = 0;
    while (pos < wire.size()) {
      const std::size_t n = 1 + rng() % 9;
      feed(p, std::string_view(wire).substr(pos, n));
      pos += n;
      drain(p, out);
    }
    ASSERT_FALSE(out.error);
    ASSERT_EQ(out.responses.size(), whole.responses.size());
    EXPECT_EQ(std::get<FetchData>(out.responses[1].data).sections[0].data, "ab\r\nc");
    EXPECT_EQ(std::get<ListData>(out.responses[2].data).name, "abc");
  }
}

// A 100 MB literal in 16 KiB reads, and 200,000 small responses: linear, not quadratic.
TEST(ResponseParserPerformance, LargeLiteralInSmallPiecesIsLinear) {
  const std::size_t size = 100u * 1024 * 1024;
  const std::string piece(16 * 1024, 'm');
  const auto start = std::chrono::steady_clock::now();
  ResponseParser p;
  const std::string head = "* 1 FETCH (UID 9 BODY[] {" + std::to_string(size) + "}\r\n";
  feed(p, head);
  std::size_t sent = 0;
  while (sent < size) {
    const std::size_t n = std::min(piece.size(), size - sent);
    feed(p, std::string_view(piece).substr(0, n));
    sent += n;
    auto r = p.next();
    ASSERT_TRUE(r.has_value());
    ASSERT_FALSE(r->has_value());
  }
  feed(p, ")\r\n");
  auto r = p.next();
  ASSERT_TRUE(r.has_value() && r->has_value());
  EXPECT_EQ(std::get<FetchData>((*r)->data).sections.at(0).data->size(), size);
  EXPECT_EQ(p.bufferedBytes(), 0u);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, std::chrono::seconds(20));
}

TEST(ResponseParserPerformance, ManySmallResponsesAreLinear) {
  const std::string one = "* 1 EXISTS\r\n";
  std::string block;
  for (int i = 0; i < 1000; ++i) {
    block += one;
  }
  const auto start = std::chrono::steady_clock::now();
  ResponseParser p;
  std::size_t count = 0;
  for (int round = 0; round < 200; ++round) {
    // Uneven pieces so responses straddle feeds.
    for (std::size_t pos = 0; pos < block.size(); pos += 4093) {
      feed(p, std::string_view(block).substr(pos, 4093));
      while (true) {
        auto r = p.next();
        ASSERT_TRUE(r.has_value());
        if (!*r) {
          break;
        }
        ++count;
      }
      EXPECT_LT(p.bufferedBytes(), one.size());
    }
  }
  EXPECT_EQ(count, 200000u);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, std::chrono::seconds(20));
}

} // namespace
} // namespace mailgate::imap::protocol

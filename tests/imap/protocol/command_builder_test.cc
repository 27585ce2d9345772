#include "base/base64.h"
#include "imap/protocol/command_builder.h"
#include "tests/imap/protocol/command_tokenizer.h"

#include <gtest/gtest.h>
#include <random>

namespace mailgate::imap::protocol {
namespace {

std::string randomBytes(std::mt19937& rng, bool allow_nul) {
  static const std::vector<std::string> pieces = {
      "a",        "Z",    " ",        "\"",   "\\", "\r",  "\n",        "\r\n", "{5}",
      "{5+}\r\n", "}",    "(",        ")",    "*",  "%",   "]",         "[",    "~",
      "\x7f",     "\x01", "\xc3\xa9", "\xff", "+",  "NIL", "A2 LOGOUT", "\t",   "="};
  std::string s;
  const std::size_t n = rng() % 10 == 0 ? 1000 + rng() % 5000 : rng() % 12;
  for (std::size_t i = 0; i < n; ++i) {
    s += pieces[rng() % pieces.size()];
  }
  if (allow_nul && rng() % 4 == 0) {
    s.insert(s.begin() + static_cast<std::ptrdiff_t>(rng() % (s.size() + 1)), '\0');
  }
  return s;
}

TEST(CommandBuilder, QuotesAndEscapesPrintableStrings) {
  auto cmd = CommandBuilder("A1", "login").string("rep@acme.example").string("p\"w\\d x").build();
  ASSERT_TRUE(cmd.has_value());
  ASSERT_EQ(cmd->chunks.size(), 1u);
  EXPECT_EQ(cmd->chunks[0], "A1 LOGIN \"rep@acme.example\" \"p\\\"w\\\\d x\"\r\n");
  EXPECT_EQ(cmd->name, "LOGIN");
  EXPECT_EQ(cmd->tag, "A1");
  EXPECT_EQ(cmd->redacted, "A1 LOGIN <16 bytes> <7 bytes>");
}

TEST(CommandBuilder, CrLfGoesIntoASynchronizingLiteral) {
  const std::string evil = "x\r\nA2 DELETE INBOX";
  auto cmd = CommandBuilder("A1", "LOGIN").string("user").string(evil).build();
  ASSERT_TRUE(cmd.has_value());
  ASSERT_EQ(cmd->chunks.size(), 2u);
  EXPECT_EQ(cmd->chunks[0], "A1 LOGIN \"user\" {18}\r\n");
  EXPECT_EQ(cmd->chunks[1], evil + "\r\n");
  EXPECT_EQ(cmd->redacted.find("DELETE"), std::string::npos);
  EXPECT_EQ(cmd->redacted, "A1 LOGIN <4 bytes> <18 bytes>");
}

TEST(CommandBuilder, LiteralModesFollowRfc7888) {
  auto plus = CommandBuilder("A1", "APPEND", LiteralMode::kPlus)
                  .mailbox("Sent Items")
                  .literal("hello")
                  .build();
  ASSERT_TRUE(plus.has_value());
  ASSERT_EQ(plus->chunks.size(), 1u);
  EXPECT_EQ(plus->chunks[0], "A1 APPEND \"Sent Items\" {5+}\r\nhello\r\n");

  const std::string small(4096, 'x');
  const std::string big(4097, 'x');
  auto minus = CommandBuilder("A2", "APPEND", LiteralMode::kMinus)
                   .atom("Sent")
                   .literal(small)
                   .literal(big)
                   .build();
  ASSERT_TRUE(minus.has_value());
  ASSERT_EQ(minus->chunks.size(), 2u);
  EXPECT_EQ(minus->chunks[0], "A2 APPEND Sent {4096+}\r\n" + small + " {4097}\r\n");
  EXPECT_EQ(minus->chunks[1], big + "\r\n");

  auto sync = CommandBuilder("A3", "APPEND").atom("Sent").literal("ab").build();
  ASSERT_TRUE(sync.has_value());
  EXPECT_EQ(sync->chunks, (std::vector<std::string>{"A3 APPEND Sent {2}\r\n", "ab\r\n"}));
}

TEST(CommandBuilder, BinaryLiteralMayHoldNul) {
  const std::string bytes("a\0b", 3);
  auto cmd =
      CommandBuilder("A1", "APPEND", LiteralMode::kPlus).atom("INBOX").literal(bytes, true).build();
  ASSERT_TRUE(cmd.has_value());
  EXPECT_EQ(cmd->chunks[0], "A1 APPEND INBOX ~{3+}\r\n" + bytes + "\r\n");
  // CHAR8 excludes NUL: an ordinary string or literal cannot carry it.
  auto refused = CommandBuilder("A1", "LOGIN").string("user").string(bytes).build();
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, "imap.command");
  EXPECT_EQ(refused.error().message.find('\0'), std::string::npos);
  EXPECT_FALSE(CommandBuilder("A1", "APPEND").literal(bytes).build().has_value());
}

TEST(CommandBuilder, EightBitAndLongStringsBecomeLiterals) {
  auto cmd = CommandBuilder("A1", "SEARCH", LiteralMode::kPlus)
                 .atom("CHARSET")
                 .atom("UTF-8")
                 .atom("SUBJECT")
                 .string("caf\xc3\xa9")
                 .build();
  ASSERT_TRUE(cmd.has_value());
  EXPECT_EQ(cmd->chunks[0], "A1 SEARCH CHARSET UTF-8 SUBJECT {5+}\r\ncaf\xc3\xa9\r\n");

  const std::string edge(1024, 'q');
  const std::string over(1025, 'q');
  auto quoted = CommandBuilder("A1", "X").string(edge).build();
  EXPECT_EQ(quoted->chunks[0], "A1 X \"" + edge + "\"\r\n");
  auto literal = CommandBuilder("A1", "X", LiteralMode::kPlus).string(over).build();
  EXPECT_EQ(literal->chunks[0], "A1 X {1025+}\r\n" + over + "\r\n");
}

TEST(CommandBuilder, LiteralLookalikeTextStaysQuoted) {
  auto cmd = CommandBuilder("A1", "LOGIN").string("{5}").astring("{5}").build();
  ASSERT_TRUE(cmd.has_value());
  EXPECT_EQ(cmd->chunks[0], "A1 LOGIN \"{5}\" \"{5}\"\r\n");
}

TEST(CommandBuilder, AstringUsesAtomsOnlyWhenSafe) {
  auto cmd = CommandBuilder("A1", "LOGIN")
                 .astring("rep@acme.example")
                 .astring("NIL")
                 .astring("nil")
                 .astring("")
                 .astring("a b")
                 .astring("x]")
                 .astring("a*")
                 .build();
  ASSERT_TRUE(cmd.has_value());
  EXPECT_EQ(cmd->chunks[0], "A1 LOGIN rep@acme.example \"NIL\" \"nil\" \"\" \"a b\" x] \"a*\"\r\n");
  EXPECT_EQ(cmd->redacted.find("rep@"), std::string::npos);
}

TEST(CommandBuilder, MailboxEncodesAndKeepsInbox) {
  auto cmd = CommandBuilder("A1", "SELECT").mailbox("inbox").build();
  EXPECT_EQ(cmd->chunks[0], "A1 SELECT INBOX\r\n");
  cmd = CommandBuilder("A1", "SELECT").mailbox("Gel\xc3\xb6schte Elemente").build();
  EXPECT_EQ(cmd->chunks[0], "A1 SELECT \"Gel&APY-schte Elemente\"\r\n");
  cmd = CommandBuilder("A1", "SELECT").mailbox("Tom & Jerry").build();
  EXPECT_EQ(cmd->chunks[0], "A1 SELECT \"Tom &- Jerry\"\r\n");
  cmd = CommandBuilder("A1", "SELECT", LiteralMode::kPlus).mailbox("Gel\xc3\xb6scht", true).build();
  EXPECT_EQ(cmd->chunks[0], "A1 SELECT {9+}\r\nGel\xc3\xb6scht\r\n");
  auto bad = CommandBuilder("A1", "SELECT").mailbox("\xff").build();
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, "imap.command");
}

TEST(CommandBuilder, AtomsRawNumbersAndSequences) {
  auto cmd = CommandBuilder("A9", "UID")
                 .atom("STORE")
                 .sequence(SequenceSet::parse("1:4,7").value())
                 .atom("+FLAGS.SILENT")
                 .raw("(\\Seen \\Deleted)")
                 .build();
  ASSERT_TRUE(cmd.has_value());
  EXPECT_EQ(cmd->chunks[0], "A9 UID STORE 1:4,7 +FLAGS.SILENT (\\Seen \\Deleted)\r\n");
  EXPECT_EQ(cmd->redacted, "A9 UID STORE 1:4,7 +FLAGS.SILENT (\\Seen \\Deleted)");
  cmd = CommandBuilder("A1", "UID FETCH").number(18446744073709551615ull).atom("\\Seen").build();
  EXPECT_EQ(cmd->chunks[0], "A1 UID FETCH 18446744073709551615 \\Seen\r\n");
}

TEST(CommandBuilder, RefusesWhatCannotBeSentSafely) {
  EXPECT_FALSE(CommandBuilder("A 1", "NOOP").build().has_value());
  EXPECT_FALSE(CommandBuilder("", "NOOP").build().has_value());
  EXPECT_FALSE(CommandBuilder("A+1", "NOOP").build().has_value());
  EXPECT_FALSE(CommandBuilder("A1", "NO\r\nOP").build().has_value());
  EXPECT_FALSE(CommandBuilder("A1", " NOOP").build().has_value());
  EXPECT_FALSE(CommandBuilder("A1", "").build().has_value());
  for (const char* bad :
       {"", "a b", "a\r\n", "(x)", "a\"", "{5}", "a*", "a%", "x]", "\\", "\xc3\xa9"}) {
    auto r = CommandBuilder("A1", "X").atom(bad).build();
    EXPECT_FALSE(r.has_value()) << bad;
    if (!r) {
      EXPECT_EQ(r.error().code, "imap.command");
      EXPECT_NE(r.error().message.find("argument 1"), std::string::npos);
    }
  }
  for (const std::string& bad : {std::string(""), std::string("a\r\nb"), std::string("a\0b", 3),
                                 std::string("\xc3\xa9"), std::string("\t")}) {
    EXPECT_FALSE(CommandBuilder("A1", "X").raw(bad).build().has_value());
  }
  EXPECT_FALSE(CommandBuilder("A1", "FETCH").sequence(SequenceSet()).build().has_value());
  // The first problem wins; later arguments do not hide it.
  auto r = CommandBuilder("A1", "X").atom("ok").atom("b a d").string("fine").build();
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("argument 2"), std::string::npos);
}

TEST(CommandBuilder, SaslResponseLine) {
  EXPECT_EQ(saslResponseLine(""), "=\r\n");
  EXPECT_EQ(saslResponseLine(std::string("\0user\0pass", 10)), "AHVzZXIAcGFzcw==\r\n");
  const std::string xoauth = "user=rep@acme.example\x01"
                             "auth=Bearer tok\x01\x01";
  const std::string line = saslResponseLine(xoauth);
  ASSERT_GE(line.size(), 2u);
  EXPECT_EQ(line.substr(line.size() - 2), "\r\n");
  EXPECT_EQ(base64Decode(line.substr(0, line.size() - 2)).value(), xoauth);
}

// Property: whatever the strings, each comes back byte-identical, in order, and the command has
// exactly one line end per chunk (so no string can add a command or an argument).
TEST(CommandBuilder, RandomStringsRoundTripInEveryMode) {
  std::mt19937 rng(7);
  for (const LiteralMode mode : {LiteralMode::kSync, LiteralMode::kPlus, LiteralMode::kMinus}) {
    for (int round = 0; round < 400; ++round) {
      CommandBuilder builder("T" + std::to_string(round), "X", mode);
      std::vector<std::string> expected = {"T" + std::to_string(round), "X"};
      const int n = 1 + static_cast<int>(rng() % 6);
      for (int i = 0; i < n; ++i) {
        const int how = static_cast<int>(rng() % 3);
        std::string s = randomBytes(rng, how == 2);
        if (how == 0) {
          builder.string(s);
        } else if (how == 1) {
          builder.astring(s);
        } else {
          builder.literal(s, true);
        }
        expected.push_back(s);
      }
      auto cmd = std::move(builder).build();
      ASSERT_TRUE(cmd.has_value()) << cmd.error().describe();
      for (std::size_t c = 0; c < cmd->chunks.size(); ++c) {
        ASSERT_GE(cmd->chunks[c].size(), 2u);
        EXPECT_EQ(cmd->chunks[c].substr(cmd->chunks[c].size() - 2), "\r\n");
      }
      const testing_support::Tokenized t = testing_support::tokenize(*cmd);
      ASSERT_TRUE(t.ok) << cmd->redacted;
      EXPECT_EQ(t.args, expected);
      for (std::size_t i = 2; i < expected.size(); ++i) {
        if (expected[i].size() >= 8) {
          EXPECT_EQ(cmd->redacted.find(expected[i]), std::string::npos);
        }
      }
    }
  }
}

} // namespace
} // namespace mailgate::imap::protocol

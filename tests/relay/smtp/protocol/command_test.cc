#include "relay/smtp/protocol/command.h"

#include <gtest/gtest.h>

namespace mailgate::relay::smtp {
namespace {

std::string errorCode(std::string_view line) {
  auto r = parseCommand(line);
  return r ? std::string("ok") : r.error().code;
}

TEST(CommandParser, VerbsAreCaseInsensitive) {
  for (const char* line : {"QUIT", "quit", "QuIt", "quit  "}) {
    auto r = parseCommand(line);
    ASSERT_TRUE(r) << line;
    EXPECT_EQ(r->verb, Verb::kQuit);
  }
  auto ehlo = parseCommand("ehlo client.example");
  ASSERT_TRUE(ehlo);
  EXPECT_EQ(ehlo->verb, Verb::kEhlo);
  EXPECT_EQ(ehlo->argument, "client.example");
  EXPECT_EQ(parseCommand("StartTLS")->verb, Verb::kStartTls);
}

TEST(CommandParser, MailFromWithParameters) {
  auto r = parseCommand("MAIL FROM:<a@example.com> SIZE=12345 BODY=8bitmime SMTPUTF8 RET=hdrs "
                        "ENVID=QQ314159+2B");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->verb, Verb::kMail);
  EXPECT_EQ(r->path.address, "a@example.com");
  EXPECT_EQ(r->mail.size, 12345u);
  EXPECT_EQ(r->mail.body, BodyType::k8BitMime);
  EXPECT_TRUE(r->mail.smtputf8);
  EXPECT_EQ(r->mail.ret, "HDRS");
  EXPECT_EQ(r->mail.envid, "QQ314159+2B");
  EXPECT_TRUE(r->mail.any);

  auto seven = parseCommand("mail from:<a@example.com> body=7BIT");
  ASSERT_TRUE(seven);
  EXPECT_EQ(seven->mail.body, BodyType::k7Bit);
}

TEST(CommandParser, NullSenderAndSpaceAfterColon) {
  auto r = parseCommand("MAIL FROM:<>");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->path.address, "");
  auto spaced = parseCommand("MAIL FROM: <a@example.com>");
  ASSERT_TRUE(spaced);
  EXPECT_EQ(spaced->path.address, "a@example.com");
}

TEST(CommandParser, RcptToIncludingPostmasterAndQuotedLocalPart) {
  auto r = parseCommand("RCPT TO:<postmaster>");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->path.is_postmaster);
  auto quoted = parseCommand("RCPT TO:<\"odd > local\"@example.com> NOTIFY=NEVER");
  ASSERT_TRUE(quoted) << quoted.error().message;
  EXPECT_EQ(quoted->path.address, "\"odd > local\"@example.com");
  EXPECT_EQ(quoted->rcpt.notify, "NEVER");
}

TEST(CommandParser, Utf8AddressNeedsSmtputf8OnMail) {
  EXPECT_EQ(errorCode("MAIL FROM:<\xc3\xbc@example.com>"), "smtp.command.utf8");
  EXPECT_EQ(errorCode("MAIL FROM:<\xc3\xbc@example.com> SMTPUTF8"), "ok");
  auto rcpt = parseCommand("RCPT TO:<\xc3\xbc@example.com>");
  ASSERT_TRUE(rcpt);
  EXPECT_TRUE(rcpt->path.non_ascii);
  EXPECT_EQ(errorCode("RCPT TO:<\xc3@example.com>"), "smtp.command.address");
}

TEST(CommandParser, Errors) {
  EXPECT_EQ(errorCode(""), "smtp.command.unknown");
  EXPECT_EQ(errorCode("FOO bar"), "smtp.command.unknown");
  EXPECT_EQ(errorCode("GET / HTTP/1.1"), "smtp.command.unknown");
  EXPECT_EQ(errorCode("MAIL"), "smtp.command.syntax");
  EXPECT_EQ(errorCode("MAIL TO:<a@b.c>"), "smtp.command.syntax");
  EXPECT_EQ(errorCode("MAIL FROM:a@b.c"), "smtp.command.syntax");
  EXPECT_EQ(errorCode("MAIL FROM:<a@b.c>x"), "smtp.command.syntax");
  EXPECT_EQ(errorCode("MAIL FROM:<a@b.c"), "smtp.command.syntax");
  EXPECT_EQ(errorCode("MAIL FROM:<a b@c.d>"), "smtp.command.address");
  EXPECT_EQ(errorCode("MAIL FROM:<a@b.c> SIZE=abc"), "smtp.command.syntax");
  EXPECT_EQ(errorCode("MAIL FROM:<a@b.c> SIZE=99999999999999999999"), "smtp.command.syntax");
  EXPECT_EQ(errorCode("MAIL FROM:<a@b.c> SIZE=1 SIZE=2"), "smtp.command.syntax");
  EXPECT_EQ(errorCode("MAIL FROM:<a@b.c> BODY=BINARYMIME"), "smtp.command.parameter");
  EXPECT_EQ(errorCode("MAIL FROM:<a@b.c> BODY=9BIT"), "smtp.command.syntax");
  EXPECT_EQ(errorCode("MAIL FROM:<a@b.c> SMTPUTF8=yes"), "smtp.command.syntax");
  EXPECT_EQ(errorCode("MAIL FROM:<a@b.c> XFOO=1"), "smtp.command.parameter");
  EXPECT_EQ(errorCode("MAIL FROM:<a@b.c> =1"), "smtp.command.syntax");
  EXPECT_EQ(errorCode("MAIL FROM:<a@b.c> ENVID=a=b"), "smtp.command.syntax");
  EXPECT_EQ(errorCode("RCPT TO:<>"), "smtp.command.address");
  EXPECT_EQ(errorCode("RCPT TO:<a@b.c> SIZE=1"), "smtp.command.parameter");
  EXPECT_EQ(errorCode("EHLO"), "smtp.command.syntax");
  EXPECT_EQ(errorCode("HELO "), "smtp.command.syntax");
  EXPECT_EQ(errorCode("DATA now"), "smtp.command.syntax");
  EXPECT_EQ(errorCode("STARTTLS please"), "smtp.command.syntax");
  EXPECT_EQ(errorCode("VRFY"), "smtp.command.syntax");
  EXPECT_EQ(errorCode("AUTH"), "smtp.command.syntax");
  EXPECT_EQ(errorCode("AUTH PL@IN"), "smtp.command.syntax");
  EXPECT_EQ(errorCode("AUTH PLAIN a b"), "smtp.command.syntax");
}

TEST(CommandParser, ErrorMessagesDoNotEchoClientBytes) {
  auto r = parseCommand("MAIL FROM:<a@b.c> X-EVIL=1");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "Unsupported parameter X-EVIL");
  auto bad = parseCommand("MAIL FROM:<\"x\r\n250 fake\"@b.c>");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message.find('\n'), std::string::npos);
}

TEST(CommandParser, Auth) {
  auto plain = parseCommand("auth plain AHVzZXIAcGFzcw==");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->auth_mechanism, "PLAIN");
  EXPECT_EQ(plain->auth_initial_response, "AHVzZXIAcGFzcw==");
  auto login = parseCommand("AUTH LOGIN");
  ASSERT_TRUE(login);
  EXPECT_EQ(login->auth_mechanism, "LOGIN");
  EXPECT_FALSE(login->auth_initial_response);
  auto empty = parseCommand("AUTH PLAIN =");
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->auth_initial_response, "=");
}

} // namespace
} // namespace mailgate::relay::smtp

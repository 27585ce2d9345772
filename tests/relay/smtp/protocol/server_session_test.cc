#include "base/base64.h"
#include "relay/smtp/protocol/server_session.h"

#include <gtest/gtest.h>
#include <regex>

namespace mailgate::relay::smtp {
namespace {

using Request = ServerSession::Request;

ServerOptions baseOptions() {
  ServerOptions o;
  o.hostname = "mx.test";
  o.max_message_bytes = 10000;
  o.max_recipients = 5;
  return o;
}

std::string plainBlob(std::string_view authzid, std::string_view user, std::string_view pass) {
  std::string blob(authzid);
  blob += '\0';
  blob += user;
  blob += '\0';
  blob += pass;
  return base64Encode(blob);
}

// A driver that answers every request at once: TLS always works, alice/secret is the only valid
// login, every message is queued.
struct Driver {
  explicit Driver(ServerOptions options) : session(std::move(options)) {}

  ServerSession session;
  std::string out;
  std::vector<ServerSession::Message> messages;
  std::vector<ServerSession::Authenticate> auths;
  int starttls = 0;
  int closes = 0;
  bool answer = true; // false: leave requests unanswered (tests that look at held input)
  std::vector<Request> pending;

  void pump() {
    out += session.takeOutput();
    while (auto r = session.nextRequest()) {
      if (!answer) {
        pending.push_back(std::move(*r));
        continue;
      }
      if (std::holds_alternative<ServerSession::StartTls>(*r)) {
        ++starttls;
        session.tlsStarted();
      } else if (auto* a = std::get_if<ServerSession::Authenticate>(&*r)) {
        auths.push_back(*a);
        const bool ok = a->username == "alice" && a->password == "secret";
        session.authResult(ok, a->username);
      } else if (auto* m = std::get_if<ServerSession::Message>(&*r)) {
        messages.push_back(std::move(*m));
        session.messageResult(250, "2.0.0", "Ok: queued as " + std::to_string(messages.size()));
      } else {
        ++closes;
      }
      out += session.takeOutput();
    }
  }

  void feed(std::string_view bytes, bool bytewise = false) {
    if (bytewise) {
      for (const char c : bytes) {
        session.receive(std::span<const char>(&c, 1));
        pump();
      }
    } else {
      session.receive(std::span<const char>(bytes.data(), bytes.size()));
      pump();
    }
  }

  std::string take() {
    pump();
    std::string o = std::move(out);
    out.clear();
    return o;
  }
};

std::vector<std::string> lines(const std::string& out) {
  std::vector<std::string> result;
  std::size_t pos = 0;
  while (pos < out.size()) {
    const std::size_t end = out.find("\r\n", pos);
    if (end == std::string::npos) {
      result.push_back(out.substr(pos));
      break;
    }
    result.push_back(out.substr(pos, end - pos));
    pos = end + 2;
  }
  return result;
}

class ServerTranscript : public ::testing::TestWithParam<bool> {};

// RFC 5321 appendix D.1, submitted by a trusted client, fed in one piece and byte by byte.
TEST_P(ServerTranscript, AppendixD1) {
  ServerOptions o = baseOptions();
  o.trusted_identity = "trusted";
  Driver d(o);
  d.session.greet();
  const std::string client = "EHLO bar.com\r\n"
                             "MAIL FROM:<Smith@bar.com>\r\n"
                             "RCPT TO:<Jones@foo.com>\r\n"
                             "RCPT TO:<Green@foo.com>\r\n"
                             "RCPT TO:<Brown@foo.com>\r\n"
                             "DATA\r\n"
                             "Blah blah blah...\r\n"
                             "..leading dot\r\n"
                             "...etc. etc. etc.\r\n"
                             ".\r\n"
                             "QUIT\r\n";
  d.feed(client, GetParam());
  EXPECT_EQ(d.take(), "220 mx.test ESMTP mailgate\r\n"
                      "250-mx.test\r\n"
                      "250-PIPELINING\r\n"
                      "250-SIZE 10000\r\n"
                      "250-8BITMIME\r\n"
                      "250-SMTPUTF8\r\n"
                      "250-ENHANCEDSTATUSCODES\r\n"
                      "250 AUTH PLAIN LOGIN\r\n"
                      "250 2.1.0 Ok\r\n"
                      "250 2.1.5 Ok\r\n"
                      "250 2.1.5 Ok\r\n"
                      "250 2.1.5 Ok\r\n"
                      "354 End data with <CR><LF>.<CR><LF>\r\n"
                      "250 2.0.0 Ok: queued as 1\r\n"
                      "221 2.0.0 Bye\r\n");
  ASSERT_EQ(d.messages.size(), 1u);
  const auto& m = d.messages[0];
  EXPECT_EQ(m.mail_from, "Smith@bar.com");
  EXPECT_EQ(m.recipients,
            (std::vector<std::string>{"Jones@foo.com", "Green@foo.com", "Brown@foo.com"}));
  EXPECT_EQ(m.data, "Blah blah blah...\r\n.leading dot\r\n..etc. etc. etc.\r\n");
  EXPECT_EQ(m.helo, "bar.com");
  EXPECT_EQ(m.identity, "trusted");
  EXPECT_FALSE(m.tls);
  EXPECT_EQ(d.closes, 1);
  EXPECT_TRUE(d.session.closed());
}

// The full submission path: STARTTLS, AUTH PLAIN, a message, two pipelined groups.
TEST_P(ServerTranscript, StartTlsAuthAndPipelinedGroups) {
  ServerOptions o = baseOptions();
  o.tls_available = true;
  o.require_tls = true;
  Driver d(o);
  d.session.greet();
  d.feed("EHLO client.example\r\nSTARTTLS\r\n", GetParam());
  EXPECT_EQ(d.starttls, 1);
  EXPECT_TRUE(d.session.tlsActive());
  d.feed("EHLO client.example\r\nAUTH PLAIN " + plainBlob("", "alice", "secret") +
             "\r\n"
             "MAIL FROM:<alice@example.com> SIZE=100 BODY=8BITMIME\r\n"
             "RCPT TO:<bob@example.org>\r\n"
             "RCPT TO:<postmaster>\r\n"
             "DATA\r\n"
             "Subject: hi\r\n\r\nhello\r\n.\r\n"
             "MAIL FROM:<>\r\nRCPT TO:<carol@example.net>\r\nDATA\r\n.\r\nQUIT\r\n",
         GetParam());
  const auto l = lines(d.take());
  const std::vector<std::string> expected = {"220 mx.test ESMTP mailgate",
                                             "250-mx.test",
                                             "250-PIPELINING",
                                             "250-SIZE 10000",
                                             "250-8BITMIME",
                                             "250-SMTPUTF8",
                                             "250-ENHANCEDSTATUSCODES",
                                             "250 STARTTLS",
                                             "220 2.0.0 Ready to start TLS",
                                             "250-mx.test",
                                             "250-PIPELINING",
                                             "250-SIZE 10000",
                                             "250-8BITMIME",
                                             "250-SMTPUTF8",
                                             "250-ENHANCEDSTATUSCODES",
                                             "250 AUTH PLAIN LOGIN",
                                             "235 2.7.0 Authentication successful",
                                             "250 2.1.0 Ok",
                                             "250 2.1.5 Ok",
                                             "250 2.1.5 Ok",
                                             "354 End data with <CR><LF>.<CR><LF>",
                                             "250 2.0.0 Ok: queued as 1",
                                             "250 2.1.0 Ok",
                                             "250 2.1.5 Ok",
                                             "354 End data with <CR><LF>.<CR><LF>",
                                             "250 2.0.0 Ok: queued as 2",
                                             "221 2.0.0 Bye"};
  EXPECT_EQ(l, expected);
  ASSERT_EQ(d.messages.size(), 2u);
  EXPECT_EQ(d.messages[0].identity, "alice");
  EXPECT_TRUE(d.messages[0].tls);
  EXPECT_EQ(d.messages[0].params.body, BodyType::k8BitMime);
  EXPECT_EQ(d.messages[0].params.declared_size, 100u);
  EXPECT_EQ(d.messages[0].recipients, (std::vector<std::string>{"bob@example.org", "postmaster"}));
  EXPECT_EQ(d.messages[0].data, "Subject: hi\r\n\r\nhello\r\n");
  EXPECT_EQ(d.messages[1].mail_from, "");
  EXPECT_EQ(d.messages[1].data, "");
}

INSTANTIATE_TEST_SUITE_P(OnePieceAndByteByByte, ServerTranscript, ::testing::Bool());

TEST(ServerSession, PipelinedRepliesComeInOneBatchInOrder) {
  ServerOptions o = baseOptions();
  o.trusted_identity = "t";
  ServerSession s(o);
  const std::string in =
      "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nRCPT TO:<bad>\r\nNOOP\r\nRSET\r\n";
  s.receive(std::span<const char>(in.data(), in.size()));
  const auto l = lines(s.takeOutput());
  ASSERT_EQ(l.size(), 12u);
  EXPECT_EQ(l[7], "250 2.1.0 Ok");
  EXPECT_EQ(l[8], "250 2.1.5 Ok");
  EXPECT_EQ(l[9], "501 5.1.3 Bad recipient address syntax");
  EXPECT_EQ(l[10], "250 2.0.0 Ok");
  EXPECT_EQ(l[11], "250 2.0.0 Ok");
  EXPECT_EQ(s.takeOutput(), "");
}

TEST(ServerSession, EveryReplyCarriesAnEnhancedCodeExceptGreetingEhloAndIntermediate) {
  ServerOptions o = baseOptions();
  o.tls_available = true;
  Driver d(o);
  d.session.greet();
  d.feed("HELO x\r\nEHLO x\r\nFOO\r\nMAIL\r\nRCPT TO:<a@b.c>\r\nAUTH LOGIN\r\n*\r\n"
         "AUTH PLAIN " +
         plainBlob("", "alice", "wrong") +
         "\r\nAUTH XX\r\nVRFY x\r\nEXPN x\r\n"
         "HELP\r\nBDAT 1\r\nDATA\r\nMAIL FROM:<a@b.c>\r\nNOOP\r\n");
  const std::regex with_code("^[245][0-9][0-9][ -][245]\\.[0-9]{1,3}\\.[0-9]{1,3}( .*)?$");
  for (const std::string& line : lines(d.take())) {
    if (line.starts_with("220 mx.test") || line.starts_with("250-") || line == "250 mx.test" ||
        line.starts_with("250 AUTH") || line.starts_with("334 ")) {
      continue;
    }
    EXPECT_TRUE(std::regex_match(line, with_code)) << line;
  }
}

TEST(ServerSession, ErrorRepliesForSyntaxSequenceAndUnknownCommands) {
  ServerOptions o = baseOptions();
  o.trusted_identity = "t";
  Driver d(o);
  d.feed(
      "MAIL FROM:<a@b.c>\r\nEHLO c\r\nFOO\r\nRCPT TO:<a@b.c>\r\nDATA\r\nMAIL FROM:<a@b.c> XX=1\r\n"
      "MAIL FROM:a@b.c\r\nMAIL FROM:<a@b.c>\r\nMAIL FROM:<a@b.c>\r\nDATA\r\nSTARTTLS\r\n");
  const auto l = lines(d.take());
  std::vector<std::string> codes;
  for (const auto& line : l) {
    if (!line.starts_with("250-")) {
      codes.push_back(line.substr(0, 9));
    }
  }
  EXPECT_EQ(codes, (std::vector<std::string>{"503 5.5.1", "250 AUTH ", "500 5.5.1", "503 5.5.1",
                                             "503 5.5.1", "555 5.5.4", "501 5.5.4", "250 2.1.0",
                                             "503 5.5.1", "503 5.5.1", "502 5.5.1"}));
}

TEST(ServerSession, MailRequiresAuthentication) {
  Driver d(baseOptions());
  d.feed("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n");
  const auto l = lines(d.take());
  EXPECT_EQ(l[l.size() - 3], "530 5.7.0 Authentication required");
  EXPECT_EQ(l[l.size() - 2], "503 5.5.1 Error: need MAIL command");
  EXPECT_EQ(l[l.size() - 1], "503 5.5.1 Error: need MAIL command");
  EXPECT_TRUE(d.messages.empty());
}

TEST(ServerSession, SenderPolicyRefusesAtMailFromAndKeepsNothing) {
  ServerOptions o = baseOptions();
  o.trusted_identity = "crm";
  std::vector<std::pair<std::string, std::string>> asked;
  o.check_sender = [&](std::string_view identity,
                       std::string_view from) -> std::optional<PolicyRefusal> {
    asked.emplace_back(identity, from);
    if (from == "rep@acme.example") {
      return std::nullopt;
    }
    return PolicyRefusal{550, "5.7.1", "sender <" + std::string(from) + "> is not allowed"};
  };
  Driver d(std::move(o));
  d.feed("EHLO c\r\nMAIL FROM:<x@evil.example>\r\nRCPT TO:<p@q.r>\r\nDATA\r\n"
         "MAIL FROM:<rep@acme.example>\r\nRCPT TO:<p@q.r>\r\nDATA\r\nhi\r\n.\r\n");
  const auto l = lines(d.take());
  ASSERT_GE(l.size(), 8u);
  EXPECT_EQ(l[l.size() - 7], "550 5.7.1 sender <x@evil.example> is not allowed");
  EXPECT_EQ(l[l.size() - 6], "503 5.5.1 Error: need MAIL command");
  EXPECT_EQ(l[l.size() - 5], "503 5.5.1 Error: need MAIL command");
  EXPECT_EQ(l[l.size() - 4], "250 2.1.0 Ok");
  ASSERT_EQ(d.messages.size(), 1u);
  EXPECT_EQ(d.messages[0].mail_from, "rep@acme.example");
  ASSERT_EQ(asked.size(), 2u);
  EXPECT_EQ(asked[0].first, "crm");
  EXPECT_EQ(asked[0].second, "x@evil.example");
}

TEST(ServerSession, RequireTlsRefusesEverythingButTheHandshakeCommands) {
  ServerOptions o = baseOptions();
  o.tls_available = true;
  o.require_tls = true;
  Driver d(o);
  d.answer = false;
  d.feed("EHLO c\r\n");
  const std::string ehlo = d.take();
  EXPECT_EQ(ehlo.find("AUTH"), std::string::npos) << "never AUTH before TLS when it is required";
  EXPECT_NE(ehlo.find("STARTTLS"), std::string::npos);
  d.feed(
      "AUTH PLAIN " + plainBlob("", "alice", "secret") +
      "\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<a@b.c>\r\nDATA\r\nVRFY x\r\nNOOP\r\nRSET\r\nHELO c\r\n");
  EXPECT_EQ(lines(d.take()),
            (std::vector<std::string>{"530 5.7.0 Must issue a STARTTLS command first",
                                      "530 5.7.0 Must issue a STARTTLS command first",
                                      "530 5.7.0 Must issue a STARTTLS command first",
                                      "530 5.7.0 Must issue a STARTTLS command first",
                                      "530 5.7.0 Must issue a STARTTLS command first",
                                      "250 2.0.0 Ok", "250 2.0.0 Ok", "250 mx.test"}));
  EXPECT_TRUE(d.pending.empty()) << "no credentials reach the driver over plaintext";
}

TEST(ServerSession, StartTlsDiscardsPipelinedPlaintext) {
  // CVE-2011-0411: commands injected after STARTTLS in the same packet must not be executed
  // after the handshake, as if they had come over TLS.
  ServerOptions o = baseOptions();
  o.tls_available = true;
  o.trusted_identity = "t";
  Driver d(o);
  d.answer = false;
  d.feed("EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x.y>\r\nRCPT TO:<v@x.y>\r\n");
  d.take();
  EXPECT_TRUE(d.session.waitingForDriver());
  d.feed("DATA\r\n"); // still plaintext, before the handshake
  ASSERT_EQ(d.pending.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<ServerSession::StartTls>(d.pending[0]));
  EXPECT_EQ(d.take(), "");
  d.session.tlsStarted();
  EXPECT_EQ(d.session.bufferedBytes(), 0u);
  EXPECT_EQ(d.take(), "");
  d.feed("MAIL FROM:<a@b.c>\r\n");
  EXPECT_EQ(d.take(), "503 5.5.1 Error: send HELO/EHLO first\r\n");
  d.feed("EHLO c\r\n");
  const std::string ehlo = d.take();
  EXPECT_EQ(ehlo.find("STARTTLS"), std::string::npos);
  d.feed("STARTTLS\r\n");
  EXPECT_EQ(d.take(), "503 5.5.1 Error: TLS already active\r\n");
}

TEST(ServerSession, InputIsHeldWhileAuthenticationIsPending) {
  Driver d(baseOptions());
  d.answer = false;
  d.feed("EHLO c\r\nAUTH PLAIN " + plainBlob("", "alice", "secret") +
         "\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\n");
  d.take();
  ASSERT_EQ(d.pending.size(), 1u);
  const auto* auth = std::get_if<ServerSession::Authenticate>(&d.pending[0]);
  ASSERT_NE(auth, nullptr);
  EXPECT_EQ(auth->mechanism, "PLAIN");
  EXPECT_EQ(auth->username, "alice");
  EXPECT_EQ(auth->password, "secret");
  EXPECT_TRUE(d.session.waitingForDriver());
  d.feed("DATA\r\n");
  EXPECT_EQ(d.take(), "");
  d.session.authResult(true, "alice");
  EXPECT_EQ(d.take(), "235 2.7.0 Authentication successful\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
                      "354 End data with <CR><LF>.<CR><LF>\r\n");
  EXPECT_TRUE(d.session.inData());
  EXPECT_EQ(d.session.identity(), "alice");
}

TEST(ServerSession, AuthPlainContinuationAndAuthzid) {
  Driver d(baseOptions());
  d.feed("EHLO c\r\nAUTH PLAIN\r\n");
  EXPECT_TRUE(d.take().ends_with("334 \r\n"));
  d.feed(plainBlob("bob", "alice", "secret") + "\r\n");
  EXPECT_EQ(d.take(), "535 5.7.8 Error: authorization identity not permitted\r\n");
  EXPECT_TRUE(d.auths.empty());
  d.feed("AUTH PLAIN " + plainBlob("alice", "alice", "secret") + "\r\n");
  EXPECT_EQ(d.take(), "235 2.7.0 Authentication successful\r\n");
  d.feed("AUTH PLAIN " + plainBlob("", "alice", "secret") + "\r\n");
  EXPECT_EQ(d.take(), "503 5.5.1 Error: already authenticated\r\n");
}

TEST(ServerSession, AuthPlainMalformedAndCancelled) {
  Driver d(baseOptions());
  d.feed("EHLO c\r\n");
  d.take();
  d.feed("AUTH PLAIN not*base64\r\n");
  EXPECT_EQ(d.take(), "501 5.5.2 Error: cannot decode response\r\n");
  d.feed("AUTH PLAIN " + base64Encode("no-nuls") + "\r\n");
  EXPECT_EQ(d.take(), "501 5.5.2 Error: malformed PLAIN response\r\n");
  d.feed("AUTH PLAIN =\r\n");
  EXPECT_EQ(d.take(), "501 5.5.2 Error: malformed PLAIN response\r\n");
  d.feed("AUTH PLAIN\r\n*\r\n");
  EXPECT_EQ(d.take(), "334 \r\n501 5.7.0 Authentication cancelled\r\n");
  d.feed("AUTH CRAM-MD5\r\n");
  EXPECT_EQ(d.take(), "504 5.5.4 Error: unsupported authentication mechanism\r\n");
  EXPECT_TRUE(d.auths.empty());
}

TEST(ServerSession, AuthLoginFlow) {
  Driver d(baseOptions());
  d.feed("EHLO c\r\nAUTH LOGIN\r\n");
  EXPECT_TRUE(d.take().ends_with("334 VXNlcm5hbWU6\r\n"));
  d.feed(base64Encode("alice") + "\r\n");
  EXPECT_EQ(d.take(), "334 UGFzc3dvcmQ6\r\n");
  d.feed(base64Encode("secret") + "\r\n");
  EXPECT_EQ(d.take(), "235 2.7.0 Authentication successful\r\n");
  ASSERT_EQ(d.auths.size(), 1u);
  EXPECT_EQ(d.auths[0].mechanism, "LOGIN");
  EXPECT_EQ(d.auths[0].username, "alice");
  EXPECT_EQ(d.auths[0].password, "secret");
}

TEST(ServerSession, AuthLoginWithInitialResponseAndCancel) {
  Driver d(baseOptions());
  d.feed("EHLO c\r\nAUTH LOGIN " + base64Encode("alice") + "\r\n");
  EXPECT_TRUE(d.take().ends_with("334 UGFzc3dvcmQ6\r\n"));
  d.feed("*\r\n");
  EXPECT_EQ(d.take(), "501 5.7.0 Authentication cancelled\r\n");
  d.feed("NOOP\r\n");
  EXPECT_EQ(d.take(), "250 2.0.0 Ok\r\n");
}

TEST(ServerSession, RepeatedAuthFailuresClose) {
  ServerOptions o = baseOptions();
  o.max_auth_failures = 3;
  Driver d(o);
  d.feed("EHLO c\r\n");
  d.take();
  const std::string bad = "AUTH PLAIN " + plainBlob("", "alice", "guess") + "\r\n";
  d.feed(bad + bad + bad + "NOOP\r\n");
  EXPECT_EQ(d.take(), "535 5.7.8 Error: authentication failed\r\n"
                      "535 5.7.8 Error: authentication failed\r\n"
                      "421 4.7.0 mx.test Error: too many authentication failures\r\n");
  EXPECT_EQ(d.closes, 1);
  EXPECT_TRUE(d.session.closed());
}

TEST(ServerSession, AuthUnavailableIsTemporaryAndNotCounted) {
  ServerOptions o = baseOptions();
  o.max_auth_failures = 1;
  Driver d(o);
  d.answer = false;
  d.feed("EHLO c\r\nAUTH PLAIN " + plainBlob("", "alice", "secret") + "\r\n");
  d.take();
  d.session.authUnavailable();
  EXPECT_EQ(d.take(), "454 4.7.0 Temporary authentication failure\r\n");
  EXPECT_FALSE(d.session.closed());
}

TEST(ServerSession, TooManyErrorsClose) {
  ServerOptions o = baseOptions();
  o.max_errors = 3;
  Driver d(o);
  d.feed("FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n");
  EXPECT_EQ(d.take(), "500 5.5.1 Error: command not recognized\r\n"
                      "500 5.5.1 Error: command not recognized\r\n"
                      "500 5.5.1 Error: command not recognized\r\n"
                      "421 4.7.0 mx.test Error: too many errors\r\n");
  EXPECT_EQ(d.closes, 1);
}

TEST(ServerSession, SizeParameterOverTheLimitIsRefusedAtMail) {
  ServerOptions o = baseOptions();
  o.trusted_identity = "t";
  Driver d(o);
  d.feed("EHLO c\r\nMAIL FROM:<a@b.c> SIZE=10001\r\nMAIL FROM:<a@b.c> SIZE=10000\r\n");
  const auto l = lines(d.take());
  EXPECT_EQ(l[l.size() - 2], "552 5.3.4 Message size exceeds fixed maximum message size");
  EXPECT_EQ(l[l.size() - 1], "250 2.1.0 Ok");
}

TEST(ServerSession, OversizedDataIsConsumedAndRefusedAtTheEnd) {
  ServerOptions o = baseOptions();
  o.trusted_identity = "t";
  o.max_message_bytes = 1000;
  Driver d(o);
  d.feed("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n");
  d.take();
  const std::string line(98, 'x');
  for (int i = 0; i < 1000; ++i) {
    d.feed(line + "\r\n");
  }
  EXPECT_EQ(d.take(), "");
  d.feed(".\r\nNOOP\r\n");
  EXPECT_EQ(d.take(),
            "552 5.3.4 Message size exceeds fixed maximum message size\r\n250 2.0.0 Ok\r\n");
  EXPECT_TRUE(d.messages.empty());
}

TEST(ServerSession, RecipientLimit) {
  ServerOptions o = baseOptions();
  o.trusted_identity = "t";
  o.max_recipients = 2;
  Driver d(o);
  d.feed("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<1@y.z>\r\nRCPT TO:<2@y.z>\r\nRCPT TO:<3@y.z>\r\n"
         "DATA\r\nx\r\n.\r\n");
  const auto l = lines(d.take());
  EXPECT_EQ(l[l.size() - 3], "452 4.5.3 Error: too many recipients");
  ASSERT_EQ(d.messages.size(), 1u);
  EXPECT_EQ(d.messages[0].recipients.size(), 2u);
}

TEST(ServerSession, DataWithoutValidRecipients) {
  ServerOptions o = baseOptions();
  o.trusted_identity = "t";
  Driver d(o);
  d.feed("EHLO c\r\nDATA\r\nMAIL FROM:<a@b.c>\r\nDATA\r\nRCPT TO:<\xc3\xbc@y.z>\r\nDATA\r\n");
  const auto l = lines(d.take());
  EXPECT_EQ(l[l.size() - 5], "503 5.5.1 Error: need MAIL command");
  EXPECT_EQ(l[l.size() - 3], "503 5.5.1 Error: need RCPT command");
  EXPECT_EQ(l[l.size() - 2], "553 5.6.7 Non-ASCII address requires SMTPUTF8");
  EXPECT_EQ(l[l.size() - 1], "554 5.5.1 Error: no valid recipients");
}

TEST(ServerSession, Smtputf8Transaction) {
  ServerOptions o = baseOptions();
  o.trusted_identity = "t";
  Driver d(o);
  d.feed("EHLO c\r\nMAIL FROM:<j\xc3\xb6rg@b.c> SMTPUTF8\r\nRCPT TO:<\xc3\xbc@y.z>\r\nDATA\r\n"
         "x\r\n.\r\n");
  ASSERT_EQ(d.messages.size(), 1u);
  EXPECT_TRUE(d.messages[0].params.smtputf8);
  EXPECT_EQ(d.messages[0].recipients[0], "\xc3\xbc@y.z");
}

TEST(ServerSession, HeloRefusesEsmtpParameters) {
  ServerOptions o = baseOptions();
  o.trusted_identity = "t";
  Driver d(o);
  d.feed("HELO c\r\nMAIL FROM:<a@b.c> SIZE=10\r\nMAIL FROM:<a@b.c>\r\n");
  EXPECT_EQ(d.take(), "250 mx.test\r\n555 5.5.4 Error: parameters need EHLO\r\n250 2.1.0 Ok\r\n");
}

TEST(ServerSession, MessageReplyWaitsForTheDriverAndHoldsPipelinedCommands) {
  ServerOptions o = baseOptions();
  o.trusted_identity = "t";
  Driver d(o);
  d.answer = false;
  d.feed(
      "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\nhi\r\n.\r\nMAIL FROM:<a@b.c>\r\n");
  d.take();
  ASSERT_EQ(d.pending.size(), 1u);
  ASSERT_TRUE(std::holds_alternative<ServerSession::Message>(d.pending[0]));
  EXPECT_TRUE(d.session.waitingForDriver());
  d.feed("RCPT TO:<x@y.z>\r\n");
  EXPECT_EQ(d.take(), "");
  d.session.messageResult(451, "4.3.0", "Error: queue file write error");
  EXPECT_EQ(d.take(),
            "451 4.3.0 Error: queue file write error\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
}

TEST(ServerSession, MalformedDriverReplyBecomes451) {
  ServerOptions o = baseOptions();
  o.trusted_identity = "t";
  Driver d(o);
  d.answer = false;
  d.feed("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n.\r\n");
  d.take();
  d.session.messageResult(250, "5.0.0", "mismatch");
  EXPECT_EQ(d.take(), "451 4.3.0 Error: internal error\r\n");
}

TEST(ServerSession, HeldInputIsBounded) {
  ServerOptions o = baseOptions();
  o.max_held_bytes = 1024;
  Driver d(o);
  d.answer = false;
  d.feed("EHLO c\r\nAUTH PLAIN " + plainBlob("", "alice", "secret") + "\r\n");
  d.take();
  const std::string noop(100, 'x');
  for (int i = 0; i < 100; ++i) {
    d.feed(noop);
    EXPECT_LE(d.session.bufferedBytes(), 1024u);
  }
  d.session.authResult(true, "alice");
  EXPECT_EQ(d.take(),
            "235 2.7.0 Authentication successful\r\n421 4.7.0 mx.test Error: too much pipelined "
            "input\r\n");
  EXPECT_TRUE(d.session.closed());
}

TEST(ServerSession, SmugglingWithBareLfDotStaysInsideTheMessage) {
  ServerOptions o = baseOptions();
  o.trusted_identity = "t";
  Driver d(o);
  d.feed("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n"
         "Subject: hi\r\n\r\nhello\n.\nMAIL FROM:<admin@b.c>\nRCPT TO:<victim@y.z>\nDATA\n"
         "forged\n.\r\nQUIT\r\n");
  EXPECT_TRUE(d.messages.empty());
  EXPECT_TRUE(d.session.inData());
  d.feed("\r\n.\r\n");
  ASSERT_EQ(d.messages.size(), 1u);
  EXPECT_NE(d.messages[0].data.find("MAIL FROM:<admin@b.c>\r\n"), std::string::npos);
  EXPECT_EQ(d.messages[0].recipients, (std::vector<std::string>{"x@y.z"}));
}

TEST(ServerSession, NulInDataRejectsTheMessage) {
  ServerOptions o = baseOptions();
  o.trusted_identity = "t";
  Driver d(o);
  d.feed("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n");
  d.take();
  d.feed(std::string("a\0b\r\n.\r\n", 8));
  EXPECT_EQ(d.take(), "554 5.6.0 Message contains NUL characters\r\n");
  EXPECT_TRUE(d.messages.empty());
  d.feed("MAIL FROM:<a@b.c>\r\n");
  EXPECT_EQ(d.take(), "250 2.1.0 Ok\r\n") << "the transaction was reset";
}

TEST(ServerSession, BareLfBareCrAndNulInCommands) {
  ServerOptions o = baseOptions();
  o.trusted_identity = "t";
  Driver d(o);
  d.feed("EHLO c\nNOOP\r\n");
  EXPECT_EQ(d.take(), "500 5.5.2 Error: bare LF received; command lines must end with CRLF\r\n"
                      "250 2.0.0 Ok\r\n");
  d.feed(std::string("NO\0OP\r\nNO\rOP\r\n", 14));
  EXPECT_EQ(d.take(), "500 5.5.2 Error: bare CR or NUL in command line\r\n"
                      "500 5.5.2 Error: bare CR or NUL in command line\r\n");
}

TEST(ServerSession, TenMegabyteLineUsesBoundedMemory) {
  ServerOptions o = baseOptions();
  o.max_line_length = 1000;
  Driver d(o);
  const std::string chunk(64 * 1024, 'A');
  for (int i = 0; i < 160; ++i) {
    d.feed(chunk);
    EXPECT_LE(d.session.bufferedBytes(), 1001u);
  }
  EXPECT_EQ(d.take(), "500 5.5.2 Error: line too long\r\n");
  d.feed("still the same line\r\nNOOP\r\n");
  EXPECT_EQ(d.take(), "250 2.0.0 Ok\r\n");
  d.feed(std::string(1000, 'N') + "\r\n");
  EXPECT_EQ(d.take(), "500 5.5.1 Error: command not recognized\r\n") << "exactly the limit is fine";
  d.feed(std::string(1001, 'N') + "\r\n");
  EXPECT_EQ(d.take(), "500 5.5.2 Error: line too long\r\n");
}

TEST(ServerSession, GarbageEndsInA421AndOnlyWellFormedReplies) {
  Driver d(baseOptions());
  d.session.greet();
  std::string garbage;
  unsigned x = 12345;
  for (int i = 0; i < 20000; ++i) {
    x = x * 1103515245 + 12345;
    garbage += static_cast<char>((x >> 16) & 0xff);
  }
  d.feed(garbage);
  d.feed("\r\nQUIT\r\n");
  const std::regex reply_line("^[2-5][0-9][0-9][ -][ -~]*$");
  const auto l = lines(d.take());
  ASSERT_FALSE(l.empty());
  for (const auto& line : l) {
    EXPECT_TRUE(std::regex_match(line, reply_line)) << line;
  }
  EXPECT_TRUE(l.back().starts_with("421 4.7.0") || l.back().starts_with("221"));
  EXPECT_TRUE(d.session.closed());
}

TEST(ServerSession, QuitTimeoutAndShutdown) {
  {
    Driver d(baseOptions());
    d.feed("QUIT\r\nNOOP\r\n");
    EXPECT_EQ(d.take(), "221 2.0.0 Bye\r\n");
    EXPECT_EQ(d.closes, 1);
  }
  {
    Driver d(baseOptions());
    d.session.timeout();
    EXPECT_EQ(d.take(), "421 4.4.2 mx.test Error: timeout exceeded\r\n");
    EXPECT_EQ(d.closes, 1);
    d.session.timeout();
    EXPECT_EQ(d.take(), "");
  }
  {
    Driver d(baseOptions());
    d.session.shutdown();
    EXPECT_EQ(d.take(), "421 4.3.2 mx.test Service shutting down\r\n");
  }
  {
    Driver d(baseOptions());
    d.session.shutdown("4.7.0", "credentials no longer accepted");
    EXPECT_EQ(d.take(), "421 4.7.0 mx.test credentials no longer accepted\r\n");
    EXPECT_EQ(d.closes, 1);
    d.session.shutdown();
    EXPECT_EQ(d.take(), "");
  }
}

TEST(ServerSession, VrfyHelpNoop) {
  Driver d(baseOptions());
  d.feed("VRFY bob\r\nHELP\r\nNOOP ignored text\r\n");
  const auto l = lines(d.take());
  ASSERT_EQ(l.size(), 4u);
  EXPECT_TRUE(l[0].starts_with("252 2.0.0"));
  EXPECT_TRUE(l[1].starts_with("214-2.0.0"));
  EXPECT_TRUE(l[2].starts_with("214 2.0.0"));
  EXPECT_EQ(l[3], "250 2.0.0 Ok");
}

TEST(ServerSession, ImplicitTlsAndNoStartTlsOffered) {
  ServerOptions o = baseOptions();
  o.tls_available = true;
  o.tls_active = true;
  o.require_tls = true;
  Driver d(o);
  d.feed("EHLO c\r\n");
  const std::string ehlo = d.take();
  EXPECT_EQ(ehlo.find("STARTTLS"), std::string::npos);
  EXPECT_NE(ehlo.find("AUTH PLAIN LOGIN"), std::string::npos);
}

} // namespace
} // namespace mailgate::relay::smtp

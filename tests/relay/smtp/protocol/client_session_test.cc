#include "base/base64.h"
#include "relay/smtp/protocol/client_session.h"

#include <gtest/gtest.h>

namespace mailgate::relay::smtp {
namespace {

using Event = ClientSession::Event;

constexpr std::string_view kEhloFull =
    "250-relay.example\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n"
    "250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250 AUTH PLAIN LOGIN XOAUTH2\r\n";

struct Harness {
  explicit Harness(ClientOptions o) : session(std::move(o)) {}

  ClientSession session;
  std::vector<Event> events;
  bool bytewise = false;

  void server(std::string_view bytes) {
    if (bytewise) {
      for (const char c : bytes) {
        session.receive(std::span<const char>(&c, 1));
      }
    } else {
      session.receive(std::span<const char>(bytes.data(), bytes.size()));
    }
    collect();
  }
  void collect() {
    while (auto e = session.nextEvent()) {
      events.push_back(std::move(*e));
    }
  }
  std::string wire() { return session.takeOutput(); }

  // Greets, answers EHLO with `ehlo` and drops what the client wrote meanwhile: the session is
  // ready for send() unless the options ask for more (STARTTLS, AUTH).
  void handshake(std::string_view ehlo = kEhloFull) {
    server("220 x\r\n");
    server(ehlo);
    wire();
  }

  template <typename T> std::vector<T> all() const {
    std::vector<T> out;
    for (const auto& e : events) {
      if (const auto* t = std::get_if<T>(&e)) {
        out.push_back(*t);
      }
    }
    return out;
  }
  template <typename T> bool lastIs() const {
    return !events.empty() && std::holds_alternative<T>(events.back());
  }
  // The last event, which must be a T (check lastIs<T>() first).
  template <typename T> const T& last() const { return std::get<T>(events.back()); }
};

ClientOptions plainOptions() {
  ClientOptions o;
  o.ehlo_name = "gw.example";
  return o;
}

ClientOptions authOptions(ClientAuth auth, std::string username, std::string password,
                          ClientTls tls = ClientTls::kNone) {
  ClientOptions o = plainOptions();
  o.tls = tls;
  o.auth = auth;
  o.username = std::move(username);
  o.password = std::move(password);
  return o;
}

// One sender, one recipient, no SMTPUTF8, no 8BITMIME.
const Envelope kOneRecipient = {"a@example.com", {"x@y.z"}, false, false};

class ClientTranscript : public ::testing::TestWithParam<bool> {};

TEST_P(ClientTranscript, PipelinedDelivery) {
  Harness h(plainOptions());
  h.bytewise = GetParam();
  h.server("220 relay.example ESMTP\r\n");
  EXPECT_EQ(h.wire(), "EHLO gw.example\r\n");
  h.server(kEhloFull);
  ASSERT_TRUE(h.lastIs<ClientSession::Ready>());
  EXPECT_TRUE(h.session.capabilities().pipelining);

  const std::string body = "Subject: hi\r\n\r\n.hidden\nbye";
  ASSERT_TRUE(
      h.session.send({"a@example.com", {"b@example.org", "c@example.net"}, false, true}, body));
  EXPECT_EQ(h.wire(), "MAIL FROM:<a@example.com> SIZE=26 BODY=8BITMIME\r\n"
                      "RCPT TO:<b@example.org>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n");
  h.server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n");
  EXPECT_EQ(h.wire(), "Subject: hi\r\n\r\n..hidden\r\nbye\r\n.\r\n");
  h.server("250 2.0.0 Ok: queued as ABC\r\n");
  const auto results = h.all<ClientSession::MessageResult>();
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].outcome, MessageOutcome::kDelivered);
  ASSERT_EQ(results[0].recipients.size(), 2u);
  EXPECT_EQ(results[0].recipients[1].address, "c@example.net");
  EXPECT_EQ(results[0].recipients[1].status, RecipientStatus::kDelivered);
  EXPECT_EQ(results[0].final_reply->text(), "Ok: queued as ABC");
  EXPECT_TRUE(h.lastIs<ClientSession::Ready>());

  h.session.quit();
  EXPECT_EQ(h.wire(), "QUIT\r\n");
  h.server("221 2.0.0 Bye\r\n");
  ASSERT_TRUE(h.lastIs<ClientSession::Closed>());
  EXPECT_FALSE(h.last<ClientSession::Closed>().error);
}

TEST_P(ClientTranscript, StartTlsThenAuthPlain) {
  Harness h(
      authOptions(ClientAuth::kPlain, "rep@acme.example", "app-password", ClientTls::kStartTls));
  h.bytewise = GetParam();
  h.server("220 smtp.example ESMTP\r\n");
  h.server("250-smtp.example\r\n250-STARTTLS\r\n250 8BITMIME\r\n");
  EXPECT_EQ(h.wire(), "EHLO gw.example\r\nSTARTTLS\r\n");
  // A response injected after the 220 in the same packet must be ignored (CVE-2011-1575 kin).
  h.server("220 2.0.0 Ready\r\n250 injected\r\n");
  ASSERT_TRUE(h.lastIs<ClientSession::StartTls>());
  h.server("235 also ignored before the handshake\r\n");
  h.session.tlsStarted();
  EXPECT_EQ(h.wire(), "EHLO gw.example\r\n");
  h.server("250-smtp.example\r\n250-AUTH LOGIN PLAIN\r\n250 PIPELINING\r\n");
  std::string blob("\0rep@acme.example\0app-password", 30);
  EXPECT_EQ(h.wire(), "AUTH PLAIN " + base64Encode(blob) + "\r\n");
  h.server("235 2.7.0 Authentication successful\r\n");
  ASSERT_TRUE(h.lastIs<ClientSession::Ready>());
  const auto& ready = h.last<ClientSession::Ready>();
  EXPECT_TRUE(ready.tls);
  EXPECT_TRUE(ready.authenticated);
  EXPECT_TRUE(ready.capabilities.pipelining);
}

INSTANTIATE_TEST_SUITE_P(OnePieceAndByteByByte, ClientTranscript, ::testing::Bool());

TEST(ClientSession, EhloRejectedFallsBackToHeloAndLockStep) {
  Harness h(plainOptions());
  h.server("220 old.example\r\n");
  h.wire();
  h.server("502 5.5.1 Command not implemented\r\n");
  EXPECT_EQ(h.wire(), "HELO gw.example\r\n");
  h.server("250 old.example\r\n");
  ASSERT_TRUE(h.lastIs<ClientSession::Ready>());
  ASSERT_TRUE(
      h.session.send({"a@example.com", {"b@example.org", "c@example.org"}, false, true}, "x"));
  EXPECT_EQ(h.wire(), "MAIL FROM:<a@example.com>\r\n") << "no ESMTP parameters after HELO";
  h.server("250 ok\r\n");
  EXPECT_EQ(h.wire(), "RCPT TO:<b@example.org>\r\n");
  h.server("250 ok\r\n");
  EXPECT_EQ(h.wire(), "RCPT TO:<c@example.org>\r\n");
  h.server("550 no such user\r\n");
  EXPECT_EQ(h.wire(), "DATA\r\n");
  h.server("354 go\r\n");
  EXPECT_EQ(h.wire(), "x\r\n.\r\n");
  h.server("250 ok\r\n");
  const auto r = h.all<ClientSession::MessageResult>();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].outcome, MessageOutcome::kPartial);
  EXPECT_EQ(r[0].recipients[0].status, RecipientStatus::kDelivered);
  EXPECT_EQ(r[0].recipients[1].status, RecipientStatus::kPermFailed);
  EXPECT_EQ(r[0].recipients[1].reply.code, 550);
}

TEST(ClientSession, NoAuthAfterStartTlsIsAnError) {
  Harness h(
      authOptions(ClientAuth::kLogin, "rep@acme.example", "hunter2-secret", ClientTls::kStartTls));
  h.server("220 x\r\n250-x\r\n250 STARTTLS\r\n220 go\r\n");
  h.session.tlsStarted();
  h.wire();
  h.server("250-x\r\n250 PIPELINING\r\n");
  EXPECT_EQ(h.wire(), "QUIT\r\n");
  ASSERT_TRUE(h.lastIs<ClientSession::Closed>());
  const auto& closed = h.last<ClientSession::Closed>();
  ASSERT_TRUE(closed.error);
  EXPECT_EQ(closed.error->code, "smtp.auth_unavailable");
  EXPECT_EQ(closed.error->describe().find("hunter2"), std::string::npos);
  EXPECT_TRUE(h.session.closed());
}

TEST(ClientSession, AuthOptionalWhenNotRequired) {
  ClientOptions o = authOptions(ClientAuth::kPlain, "u", "p");
  o.require_auth = false;
  Harness h(o);
  h.server("220 x\r\n250 x\r\n");
  ASSERT_TRUE(h.lastIs<ClientSession::Ready>());
  EXPECT_FALSE(h.last<ClientSession::Ready>().authenticated);
}

TEST(ClientSession, StartTlsMissingNeverDowngrades) {
  ClientOptions o = plainOptions();
  o.tls = ClientTls::kStartTls;
  Harness h(o);
  h.server("220 x\r\n");
  h.wire();
  h.server("250-x\r\n250 AUTH PLAIN\r\n");
  EXPECT_EQ(h.wire(), "QUIT\r\n");
  ASSERT_TRUE(h.lastIs<ClientSession::Closed>());
  EXPECT_EQ(h.last<ClientSession::Closed>().error->code, "smtp.starttls_unavailable");
}

TEST(ClientSession, AuthLoginFlowAndRejectionWithoutLeakingThePassword) {
  Harness h(
      authOptions(ClientAuth::kLogin, "rep@acme.example", "Sup3rSecret!", ClientTls::kImplicit));
  h.server("220 x\r\n");
  h.wire();
  h.server(kEhloFull);
  EXPECT_EQ(h.wire(), "AUTH LOGIN\r\n");
  h.server("334 VXNlcm5hbWU6\r\n");
  EXPECT_EQ(h.wire(), base64Encode("rep@acme.example") + "\r\n");
  h.server("334 UGFzc3dvcmQ6\r\n");
  EXPECT_EQ(h.wire(), base64Encode("Sup3rSecret!") + "\r\n");
  // A server that echoes the credential back must not make us log it.
  h.server("535 5.7.139 Authentication unsuccessful, you sent " + base64Encode("Sup3rSecret!") +
           " Sup3rSecret!\r\n");
  EXPECT_EQ(h.wire(), "QUIT\r\n");
  ASSERT_TRUE(h.lastIs<ClientSession::Closed>());
  const auto& closed = h.last<ClientSession::Closed>();
  ASSERT_TRUE(closed.error);
  EXPECT_EQ(closed.error->code, "smtp.auth_failed");
  EXPECT_NE(closed.error->message.find("5.7.139"), std::string::npos);
  EXPECT_EQ(closed.error->describe().find("Sup3rSecret"), std::string::npos);
  EXPECT_EQ(closed.error->describe().find(base64Encode("Sup3rSecret!")), std::string::npos);
  ASSERT_TRUE(closed.reply);
  EXPECT_EQ(closed.reply->describe().find("Sup3rSecret"), std::string::npos);
}

TEST(ClientSession, XOAuth2ErrorChallenge) {
  Harness h(authOptions(ClientAuth::kXOAuth2, "rep@acme.example", "ya29.token"));
  h.server("220 x\r\n");
  h.wire();
  h.server(kEhloFull);
  EXPECT_EQ(h.wire(), "AUTH XOAUTH2 " +
                          base64Encode("user=rep@acme.example\x01"
                                       "auth=Bearer ya29.token\x01\x01") +
                          "\r\n");
  h.server("334 eyJzdGF0dXMiOiI0MDAifQ==\r\n");
  EXPECT_EQ(h.wire(), "\r\n");
  h.server("454 4.7.0 Temporary authentication failure\r\n");
  ASSERT_TRUE(h.lastIs<ClientSession::Closed>());
  EXPECT_EQ(h.last<ClientSession::Closed>().error->code, "smtp.auth_temp_failed");
}

TEST(ClientSession, MixedRecipientResults) {
  Harness h(plainOptions());
  h.handshake();
  ASSERT_TRUE(h.session.send({"a@example.com", {"ok@y.z", "gone@y.z", "full@y.z"}, false, false},
                             "body\r\n"));
  h.wire();
  h.server("250-2.1.0 Sender\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550-5.1.1 No such user\r\n"
           "550 5.1.1 here\r\n452 4.2.2 Mailbox full\r\n354 Go\r\n");
  EXPECT_EQ(h.wire(), "body\r\n.\r\n");
  h.server("250 2.0.0 queued\r\n");
  const auto r = h.all<ClientSession::MessageResult>();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].outcome, MessageOutcome::kPartial);
  EXPECT_EQ(r[0].recipients[0].status, RecipientStatus::kDelivered);
  EXPECT_EQ(r[0].recipients[1].status, RecipientStatus::kPermFailed);
  EXPECT_EQ(r[0].recipients[1].reply.enhanced, "5.1.1");
  EXPECT_EQ(r[0].recipients[1].reply.text(), "No such user\nhere");
  EXPECT_EQ(r[0].recipients[2].status, RecipientStatus::kTempFailed);
  EXPECT_EQ(r[0].recipients[2].reply.code, 452);
  EXPECT_EQ(r[0].mail_reply->lines.size(), 2u);
}

TEST(ClientSession, AllRecipientsRejectedWithPipeliningThenRsetBeforeNextMail) {
  Harness h(plainOptions());
  h.handshake();
  ASSERT_TRUE(h.session.send({"a@example.com", {"x@y.z", "w@y.z"}, false, false}, "body"));
  h.wire();
  h.server(
      "250 2.1.0 Ok\r\n550 5.1.1 no\r\n550 5.1.1 no\r\n554 5.5.1 Error: no valid recipients\r\n");
  EXPECT_EQ(h.wire(), "") << "no body after a refused DATA";
  auto r = h.all<ClientSession::MessageResult>();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].outcome, MessageOutcome::kPermFailed);
  EXPECT_EQ(r[0].final_reply->code, 554);
  ASSERT_TRUE(h.lastIs<ClientSession::Ready>());
  ASSERT_TRUE(h.session.send(kOneRecipient, "body"));
  EXPECT_TRUE(h.wire().starts_with("RSET\r\nMAIL FROM:<a@example.com>"));
  h.server("250 2.0.0 Ok\r\n250 Ok\r\n250 Ok\r\n354 go\r\n");
  EXPECT_EQ(h.wire(), "body\r\n.\r\n");
  h.server("250 Ok\r\n");
  r = h.all<ClientSession::MessageResult>();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].outcome, MessageOutcome::kDelivered);
}

TEST(ClientSession, DataAcceptedDespiteNoRecipientsSendsAnEmptyEnd) {
  Harness h(plainOptions());
  h.handshake();
  ASSERT_TRUE(h.session.send(kOneRecipient, "secret body"));
  h.wire();
  h.server("250 Ok\r\n550 no\r\n354 go\r\n");
  EXPECT_EQ(h.wire(), ".\r\n") << "the body is never sent to nobody";
  h.server("554 no valid recipients\r\n");
  const auto r = h.all<ClientSession::MessageResult>();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].outcome, MessageOutcome::kPermFailed);
  EXPECT_EQ(r[0].recipients[0].reply.code, 550);
  EXPECT_TRUE(h.lastIs<ClientSession::Ready>());
}

TEST(ClientSession, AllRecipientsRejectedLockStepSendsNoData) {
  Harness h(plainOptions());
  h.server("220 x\r\n250 x\r\n");
  h.wire();
  ASSERT_TRUE(h.session.send(kOneRecipient, "body"));
  h.server("250 ok\r\n");
  h.server("450 4.2.1 try later\r\n");
  EXPECT_EQ(h.wire(), "MAIL FROM:<a@example.com>\r\nRCPT TO:<x@y.z>\r\n");
  const auto r = h.all<ClientSession::MessageResult>();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].outcome, MessageOutcome::kTempFailed);
  ASSERT_TRUE(h.session.send(kOneRecipient, "body"));
  EXPECT_EQ(h.wire(), "RSET\r\n");
  h.server("250 ok\r\n");
  EXPECT_EQ(h.wire(), "MAIL FROM:<a@example.com>\r\n");
}

TEST(ClientSession, MailRefusedFailsTheWholeMessage) {
  Harness h(plainOptions());
  h.handshake();
  ASSERT_TRUE(h.session.send({"a@example.com", {"x@y.z", "w@y.z"}, false, false}, "body"));
  h.server("451 4.7.500 Server busy\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n"
           "503 5.5.1 need MAIL\r\n");
  const auto r = h.all<ClientSession::MessageResult>();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].outcome, MessageOutcome::kTempFailed);
  EXPECT_EQ(r[0].recipients[0].reply.code, 451);
  EXPECT_EQ(r[0].recipients[1].status, RecipientStatus::kTempFailed);
  ASSERT_TRUE(h.lastIs<ClientSession::Ready>());
}

TEST(ClientSession, TransientFailureOnData) {
  Harness h(plainOptions());
  h.handshake();
  ASSERT_TRUE(h.session.send(kOneRecipient, "body"));
  h.server("250 Ok\r\n250 Ok\r\n354 go\r\n");
  h.wire();
  h.server("451 4.3.0 Queue write error\r\n");
  auto r = h.all<ClientSession::MessageResult>();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].outcome, MessageOutcome::kTempFailed);
  EXPECT_EQ(r[0].recipients[0].reply.enhanced, "4.3.0");
  EXPECT_TRUE(h.lastIs<ClientSession::Ready>());
  // A 4xx to the DATA command itself leaves the server's transaction open: RSET next time.
  ASSERT_TRUE(h.session.send(kOneRecipient, "body"));
  h.wire();
  h.server("250 Ok\r\n250 Ok\r\n452 4.3.1 Insufficient system storage\r\n");
  r = h.all<ClientSession::MessageResult>();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].outcome, MessageOutcome::kTempFailed);
  EXPECT_EQ(r[1].final_reply->code, 452);
  ASSERT_TRUE(h.session.send(kOneRecipient, "body"));
  EXPECT_TRUE(h.wire().starts_with("RSET\r\n"));
}

TEST(ClientSession, ServiceClosingMidTransaction) {
  Harness h(plainOptions());
  h.handshake();
  ASSERT_TRUE(h.session.send({"a@example.com", {"x@y.z", "bad@y.z", "w@y.z"}, false, false}, "b"));
  h.server("250 Ok\r\n250 Ok\r\n550 5.1.1 no\r\n421 4.4.2 relay.example shutting down\r\n");
  const auto r = h.all<ClientSession::MessageResult>();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].outcome, MessageOutcome::kTempFailed);
  EXPECT_EQ(r[0].recipients[0].status, RecipientStatus::kTempFailed);
  EXPECT_EQ(r[0].recipients[1].status, RecipientStatus::kPermFailed);
  EXPECT_EQ(r[0].recipients[2].reply.code, 421);
  ASSERT_TRUE(r[0].error);
  EXPECT_EQ(r[0].error->code, "smtp.service_unavailable");
  ASSERT_TRUE(h.lastIs<ClientSession::Closed>());
  EXPECT_EQ(h.last<ClientSession::Closed>().error->code, "smtp.service_unavailable");
  EXPECT_FALSE(h.session.send(kOneRecipient, "b"));
}

TEST(ClientSession, UnsolicitedServiceClosingWhileIdle) {
  Harness h(plainOptions());
  h.handshake();
  h.server("421 4.4.2 idle timeout\r\n");
  ASSERT_TRUE(h.lastIs<ClientSession::Closed>());
  EXPECT_EQ(h.last<ClientSession::Closed>().reply->code, 421);
}

TEST(ClientSession, GreetingRefused) {
  Harness h(plainOptions());
  h.server("554 5.7.1 go away\r\n");
  ASSERT_TRUE(h.lastIs<ClientSession::Closed>());
  EXPECT_EQ(h.last<ClientSession::Closed>().error->code, "smtp.greeting_rejected");
  EXPECT_EQ(h.wire(), "QUIT\r\n");
}

TEST(ClientSession, ConnectionLostAfterDataIsATempFailure) {
  Harness h(plainOptions());
  h.handshake();
  ASSERT_TRUE(h.session.send(kOneRecipient, "body"));
  h.server("250 Ok\r\n250 Ok\r\n354 go\r\n");
  h.wire();
  h.session.connectionLost(Error("net.reset", "connection reset by peer"));
  h.collect();
  const auto r = h.all<ClientSession::MessageResult>();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].outcome, MessageOutcome::kTempFailed);
  EXPECT_EQ(r[0].error->code, "smtp.connection_lost");
  EXPECT_TRUE(h.lastIs<ClientSession::Closed>());
}

TEST(ClientSession, GarbledRepliesCloseTheSession) {
  Harness h(plainOptions());
  h.server("220 x\r\n");
  h.server("HTTP/1.1 400 Bad Request\r\n");
  ASSERT_TRUE(h.lastIs<ClientSession::Closed>());
  EXPECT_EQ(h.last<ClientSession::Closed>().error->code, "smtp.protocol");
}

TEST(ClientSession, RefusesEnvelopesThatCouldInjectCommands) {
  Harness h(plainOptions());
  h.handshake("250-x\r\n250 PIPELINING\r\n");
  EXPECT_EQ(
      h.session.send({"a@b.c>\r\nRCPT TO:<evil@x.y", {"x@y.z"}, false, false}, "b").error().code,
      "smtp.bad_address");
  EXPECT_EQ(h.session.send({"a@b.c", {"x@y.z>\r\nDATA"}, false, false}, "b").error().code,
            "smtp.bad_address");
  EXPECT_EQ(h.session.send({"a@b.c", {}, false, false}, "b").error().code, "smtp.no_recipients");
  EXPECT_EQ(h.session.send({"\xc3\xbc@b.c", {"x@y.z"}, false, false}, "b").error().code,
            "smtp.bad_address");
  EXPECT_EQ(h.session.send({"\xc3\xbc@b.c", {"x@y.z"}, true, false}, "b").error().code,
            "smtp.smtputf8_unsupported");
  EXPECT_EQ(h.wire(), "");
  EXPECT_TRUE(h.session.ready());
  ASSERT_TRUE(h.session.send({"", {"postmaster"}, false, false}, "b"));
  EXPECT_EQ(h.session.send({"", {"x@y.z"}, false, false}, "b").error().code, "smtp.not_ready");
  EXPECT_EQ(h.wire(), "MAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nDATA\r\n");
}

TEST(ClientSession, SizeLimitAndSmtputf8Parameters) {
  Harness h(plainOptions());
  h.server("220 x\r\n250-x\r\n250-SIZE 10\r\n250 SMTPUTF8\r\n");
  h.wire();
  EXPECT_EQ(h.session.send({"a@b.c", {"x@y.z"}, false, false}, std::string(11, 'x')).error().code,
            "smtp.message_too_large");
  ASSERT_TRUE(h.session.send({"\xc3\xbc@b.c", {"x@y.z"}, true, false}, "0123456789"));
  EXPECT_EQ(h.wire(), "MAIL FROM:<\xc3\xbc@b.c> SIZE=10 SMTPUTF8\r\n");
}

TEST(ClientSession, BodyCanBePulledInBoundedPieces) {
  Harness h(plainOptions());
  h.handshake();
  std::string body;
  for (int i = 0; i < 20000; ++i) {
    body += i % 7 == 0 ? ".dotted line\n" : "an ordinary line of text\r\n";
  }
  ASSERT_TRUE(h.session.send(kOneRecipient, body));
  h.wire();
  h.server("250 Ok\r\n250 Ok\r\n354 go\r\n");
  std::string pulled;
  while (h.session.hasOutput()) {
    const std::string piece = h.session.takeOutput(4096);
    ASSERT_LE(piece.size(), 4096u);
    pulled += piece;
  }
  EXPECT_EQ(pulled, dotStuff(body));
}

TEST(ClientSession, QuitWhileDataMayBeAcceptedDoesNotSendQuitIntoTheBody) {
  Harness h(plainOptions());
  h.handshake();
  ASSERT_TRUE(h.session.send(kOneRecipient, "body"));
  h.wire();
  h.session.quit();
  h.collect();
  EXPECT_EQ(h.wire(), "");
  ASSERT_TRUE(h.lastIs<ClientSession::Closed>());
  EXPECT_EQ(h.last<ClientSession::Closed>().error->code, "smtp.aborted");
  EXPECT_EQ(h.all<ClientSession::MessageResult>().size(), 1u);
}

} // namespace
} // namespace mailgate::relay::smtp

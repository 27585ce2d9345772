// The session against a scripted server on 127.0.0.1: login variants, commands, literals, IDLE
// and its renewal, and every way a server can fail it. Dovecot is the real peer in
// tests/integration/test_imap.py.
#include "imap/session.h"
#include "tests/imap/imap_test_util.h"
#include "tests/imap/scripted_server.h"

#include <algorithm>
#include <gtest/gtest.h>

namespace mailgate::imap::test {
namespace {

using namespace std::chrono_literals;

class SessionTest : public ::testing::Test {
protected:
  SessionTest() : server(*loop) {}

  SessionSettings settings() {
    SessionSettings s;
    s.id = 1;
    s.mailbox = "rep1@acme.example";
    s.endpoint = net::Endpoint{"127.0.0.1", server.port()};
    s.tls = config::TlsMode::kNone;
    s.username = "rep1@acme.example";
    s.password = Secret("app-password");
    s.client_version = "1.2.3";
    s.timeouts.login = 2s;
    s.timeouts.command = 2s;
    return s;
  }
  // Starts the session; the loop runs when the test calls loop.run().
  void open(SessionSettings s) {
    session = std::make_unique<Session>(*loop, std::move(s), observer);
    session->start();
  }
  // The first step of most tests: logged in.
  Step ready() {
    return {[&] { return observer.ready > 0 || observer.end.has_value(); },
            [&] {
              ASSERT_EQ(observer.ready, 1)
                  << (observer.end ? observer.end->error.describe() : std::string());
            }};
  }
  Step ended() {
    return {[&] { return observer.end.has_value(); }, {}};
  }

  TestLoop loop;
  ScriptedImapServer server;
  RecordingObserver observer;
  SessionPtr session;
};

TEST_F(SessionTest, LogsInWithSaslIrAndReadsCapabilitiesFromTheOk) {
  open(settings());
  ASSERT_TRUE(loop.run({ready()}));
  EXPECT_EQ(server.logins, 1);
  ASSERT_GE(server.commands.size(), 2u);
  EXPECT_TRUE(server.commands[0].starts_with("AUTHENTICATE PLAIN ")); // SASL-IR: one line
  EXPECT_EQ(server.commands[1], "ID (\"name\" \"mailgate\" \"version\" \"1.2.3\")");
  EXPECT_TRUE(session->hasCapability("uidplus"));
  EXPECT_TRUE(session->ready());
}

TEST_F(SessionTest, AuthenticatesAfterTheContinuationWithoutSaslIr) {
  server.greeting = "* OK ready\r\n";
  server.capabilities = "IMAP4rev1 AUTH=PLAIN IDLE";
  open(settings());
  ASSERT_TRUE(loop.run({ready()}));
  EXPECT_EQ(server.commands[0], "CAPABILITY");
  EXPECT_EQ(server.commands[1], "AUTHENTICATE PLAIN");
  EXPECT_EQ(server.logins, 1);
}

TEST_F(SessionTest, UsesLoginWhenPlainIsNotOfferedAndQuotesTheArguments) {
  server.greeting = "* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n";
  server.capabilities = "IMAP4rev1 IDLE";
  server.password = "pa ss\"word";
  auto s = settings();
  s.password = Secret("pa ss\"word");
  open(std::move(s));
  ASSERT_TRUE(loop.run({ready()}));
  EXPECT_EQ(server.commands[0], "LOGIN \"rep1@acme.example\" \"pa ss\\\"word\"");
}

TEST_F(SessionTest, RefusedCredentialsEndTheSessionWithAHintAndNoSecret) {
  auto s = settings();
  s.password = Secret("wrong-password");
  open(std::move(s));
  ASSERT_TRUE(loop.run({ended()}));
  EXPECT_EQ(observer.ready, 0);
  EXPECT_EQ(observer.end->error.code, "imap.auth");
  EXPECT_EQ(observer.end->advice.kind, protocol::Advice::Kind::kAuthFailed);
  EXPECT_FALSE(observer.end->error.hint.empty());
  EXPECT_EQ(observer.end->error.describe().find("wrong-password"), std::string::npos);
  EXPECT_FALSE(observer.end->logged_in);
}

TEST_F(SessionTest, ListSelectAndAppendWithLiteralPlus) {
  open(settings());
  std::vector<FolderInfo> folders;
  std::optional<SelectInfo> selected;
  std::optional<AppendResult> appended;
  ASSERT_TRUE(loop.run({ready(),
                        {{},
                         [&] {
                           session->list([&](Result<std::vector<FolderInfo>> r) {
                             if (r) {
                               folders.swap(*r);
                             }
                           });
                           session->select("INBOX", true, [&](Result<SelectInfo> r) {
                             if (r) {
                               selected = std::move(*r);
                             }
                           });
                           session->append("Sent Items", {"\\Seen"}, "Subject: hi\r\n\r\nbody\r\n",
                                           [&](Result<AppendResult> r) {
                                             if (r) {
                                               appended = *r;
                                             }
                                           });
                         }},
                        {[&] { return appended.has_value(); }, {}}}));
  ASSERT_EQ(folders.size(), 3u);
  EXPECT_EQ(folders[1].name, "Sent Items");
  ASSERT_TRUE(selected);
  EXPECT_EQ(selected->exists, 3u);
  EXPECT_EQ(selected->uidvalidity, 42u);
  EXPECT_EQ(selected->uidnext, 7u);
  EXPECT_TRUE(selected->read_only);
  EXPECT_EQ(session->selected(), "INBOX");
  EXPECT_EQ(appended->uidvalidity, 42u);
  EXPECT_EQ(appended->uid, 1u);
  ASSERT_EQ(server.appended.size(), 1u);
  EXPECT_EQ(server.appended[0], "Subject: hi\r\n\r\nbody\r\n");
  // One write: the literal went with the command (LITERAL+), no continuation was needed.
  EXPECT_EQ(server.continuations, 0);
}

TEST_F(SessionTest, AppendWaitsForTheContinuationWithoutLiteralPlus) {
  server.greeting = "* OK ready\r\n";
  server.capabilities = "IMAP4rev1 AUTH=PLAIN SASL-IR UIDPLUS";
  open(settings());
  std::optional<AppendResult> appended;
  std::string message(70000, 'x');
  ASSERT_TRUE(loop.run({ready(),
                        {{},
                         [&] {
                           session->append("Sent Items", {"\\Seen"}, message,
                                           [&](Result<AppendResult> r) {
                                             if (r) {
                                               appended = *r;
                                             }
                                           });
                         }},
                        {[&] { return appended.has_value(); }, {}}}));
  ASSERT_EQ(server.appended.size(), 1u);
  EXPECT_EQ(server.appended[0], message);
  EXPECT_EQ(server.continuations, 1);
}

TEST_F(SessionTest, RefusalIsAnErrorAndTheSessionGoesOn) {
  server.hook = [](ScriptedImapServer::Conn& c, const std::string& tag, const std::string& cmd,
                   const std::string&) {
    if (cmd == "SELECT") {
      c.send(tag + " NO [NONEXISTENT] Mailbox does not exist\r\n");
      return true;
    }
    return false;
  };
  open(settings());
  std::optional<Error> error;
  bool noop = false;
  ASSERT_TRUE(loop.run({ready(),
                        {{},
                         [&] {
                           session->select("Nope", false, [&](Result<SelectInfo> r) {
                             if (!r) {
                               error = r.error();
                             }
                           });
                           session->noop([&](Result<void> r) { noop = r.has_value(); });
                         }},
                        {[&] { return noop; }, {}}}));
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->code, "imap.no");
  EXPECT_NE(error->message.find("Mailbox does not exist"), std::string::npos);
  EXPECT_TRUE(session->ready());
}

TEST_F(SessionTest, IdlePushesRenewsAndStops) {
  auto s = settings();
  s.timeouts.idle_renew = 30ms;
  open(std::move(s));
  std::optional<Result<void>> ended_idle;
  ASSERT_TRUE(loop.run({ready(),
                        {{}, [&] { session->idle([&](Result<void> r) { ended_idle = r; }); }},
                        {[&] { return server.dones >= 2 && server.idling() == 1; }, // renewed twice
                         [&] { server.pushToIdlers("* 4 EXISTS\r\n"); }},
                        {[&] { return !observer.pushes.empty(); }, [&] { session->stopIdle(); }},
                        {[&] { return ended_idle.has_value(); }, {}}}));
  auto* n = std::get_if<protocol::NumberData>(&observer.pushes[0]);
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->number, 4u);
  EXPECT_GE(std::ranges::count(server.commands, std::string("IDLE")), 3);
  EXPECT_TRUE(ended_idle->has_value());
  EXPECT_FALSE(session->idling());
}

TEST_F(SessionTest, ACommandDuringIdleEndsItFirst) {
  open(settings());
  std::optional<Result<void>> ended_idle;
  bool noop = false;
  ASSERT_TRUE(loop.run({ready(),
                        {{}, [&] { session->idle([&](Result<void> r) { ended_idle = r; }); }},
                        {[&] { return server.idling() == 1; },
                         [&] { session->noop([&](Result<void> r) { noop = r.has_value(); }); }},
                        {[&] { return noop; }, {}}}));
  EXPECT_EQ(server.dones, 1);
  ASSERT_TRUE(ended_idle.has_value());
  EXPECT_TRUE(ended_idle->has_value());
  EXPECT_EQ(server.commands.back(), "NOOP");
}

TEST_F(SessionTest, AnUnansweredIdleRenewalEndsTheSession) {
  server.hook = [](ScriptedImapServer::Conn& c, const std::string&, const std::string& cmd,
                   const std::string&) {
    if (cmd == "IDLE") {
      c.send("+ idling\r\n");
      c.ignore_done = true; // DONE gets no answer: the connection died silently
      return true;
    }
    return false;
  };
  auto s = settings();
  s.timeouts.idle_renew = 20ms;
  s.timeouts.command = 100ms;
  open(std::move(s));
  std::optional<Result<void>> ended_idle;
  ASSERT_TRUE(loop.run(
      {ready(), {{}, [&] { session->idle([&](Result<void> r) { ended_idle = r; }); }}, ended()}));
  EXPECT_EQ(observer.end->error.code, "imap.timeout");
  EXPECT_TRUE(observer.end->logged_in);
  ASSERT_TRUE(ended_idle.has_value());
  EXPECT_FALSE(ended_idle->has_value());
}

TEST_F(SessionTest, ASilentServerTimesOut) {
  server.send_greeting = false;
  auto s = settings();
  s.timeouts.login = 100ms;
  open(std::move(s));
  ASSERT_TRUE(loop.run({ended()}));
  EXPECT_EQ(observer.end->error.code, "imap.timeout");
  EXPECT_NE(observer.end->error.message.find("greeting"), std::string::npos);
}

TEST_F(SessionTest, GarbageInsteadOfAGreetingIsAProtocolError) {
  server.greeting = "HTTP/1.1 400 Bad Request\r\n\r\n";
  open(settings());
  ASSERT_TRUE(loop.run({ended()}));
  EXPECT_EQ(observer.end->error.code, "imap.protocol");
  EXPECT_FALSE(observer.end->error.hint.empty());
}

TEST_F(SessionTest, ALiteralClaimingTwoGigabytesFailsAtOnce) {
  server.hook = [](ScriptedImapServer::Conn& c, const std::string&, const std::string& cmd,
                   const std::string&) {
    if (cmd == "NOOP") {
      c.send("* 1 FETCH (UID 1 BODY[] {2147483648}\r\n" + std::string(1000, 'x'));
      return true;
    }
    return false;
  };
  open(settings());
  std::optional<Error> error;
  ASSERT_TRUE(loop.run({ready(),
                        {{},
                         [&] {
                           session->noop([&](Result<void> r) {
                             if (!r) {
                               error = r.error();
                             }
                           });
                         }},
                        ended()}));
  EXPECT_EQ(observer.end->error.code, "imap.protocol");
  EXPECT_NE(observer.end->error.message.find("2147483648"), std::string::npos)
      << observer.end->error.message;
  EXPECT_LT(session->bufferedBytes(), 64u * 1024);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->code, "imap.protocol");
}

TEST_F(SessionTest, ThrottlingIsReportedAsAdvice) {
  server.hook = [](ScriptedImapServer::Conn& c, const std::string& tag, const std::string& cmd,
                   const std::string&) {
    if (cmd == "SELECT") {
      c.send(tag + " NO Request is throttled. Suggested Backoff Time: 2000 milliseconds\r\n");
      return true;
    }
    return false;
  };
  open(settings());
  std::optional<Error> error;
  ASSERT_TRUE(loop.run({ready(),
                        {{},
                         [&] {
                           session->select("INBOX", false, [&](Result<SelectInfo> r) {
                             if (!r) {
                               error = r.error();
                             }
                           });
                         }},
                        {[&] { return error.has_value(); }, {}}}));
  ASSERT_EQ(observer.advice.size(), 1u);
  EXPECT_EQ(observer.advice[0].kind, protocol::Advice::Kind::kThrottled);
  EXPECT_EQ(observer.advice[0].backoff, 2000ms);
}

TEST_F(SessionTest, ByeAtLoginIsReported) {
  server.hook = [](ScriptedImapServer::Conn& c, const std::string&, const std::string& cmd,
                   const std::string&) {
    if (cmd == "AUTHENTICATE") {
      c.send("* BYE Connection closed. 14\r\n");
      c.conn->close();
      return true;
    }
    return false;
  };
  open(settings());
  ASSERT_TRUE(loop.run({ended()}));
  EXPECT_EQ(observer.end->error.code, "imap.bye");
  EXPECT_EQ(observer.end->advice.kind, protocol::Advice::Kind::kUnavailable);
}

TEST_F(SessionTest, CommandsAfterTheEndFailInALaterTurn) {
  open(settings());
  std::optional<Error> error;
  ASSERT_TRUE(loop.run({ready(),
                        {[&] { return session->quiet(); }, [&] { session->logout(); }},
                        {[&] { return observer.end.has_value(); },
                         [&] {
                           session->noop([&](Result<void> r) {
                             if (!r) {
                               error = r.error();
                             }
                           });
                           EXPECT_FALSE(error.has_value()); // never from inside the call
                         }},
                        {[&] { return error.has_value(); }, {}}}));
  EXPECT_EQ(observer.end->error.code, "imap.logout");
  EXPECT_EQ(server.commands.back(), "LOGOUT");
}

} // namespace
} // namespace mailgate::imap::test

// The pool of one mailbox against a scripted server: the IDLE session, leases and their queue,
// the session cap and the tenant budget, throttling, refused credentials, recovery.
#include "imap/mailbox_pool.h"
#include "tests/imap/imap_test_util.h"
#include "tests/imap/scripted_server.h"

#include <algorithm>
#include <gtest/gtest.h>

namespace mailgate::imap::test {
namespace {

using namespace std::chrono_literals;

class PoolTest : public ::testing::Test {
protected:
  PoolTest() : server(*loop) {}

  PoolSettings settings(uint32_t max_sessions = 3) {
    PoolSettings p;
    p.tenant = "acme";
    p.address = "rep1@acme.example";
    p.max_sessions = max_sessions;
    p.reconnect = net::BackoffOptions{10ms, 50ms, 2.0, 0.2, 7};
    p.login_retry_initial = 200ms;
    p.login_retry_max = 400ms;
    auto& s = p.session;
    s.mailbox = p.address;
    s.endpoint = net::Endpoint{"127.0.0.1", server.port()};
    s.tls = config::TlsMode::kNone;
    s.username = "rep1@acme.example";
    s.password = Secret("app-password");
    s.timeouts.login = 2s;
    s.timeouts.command = 2s;
    return p;
  }
  MailboxImapStatus status() {
    MailboxImapStatus st;
    pool->statusInto(st);
    return st;
  }
  bool idling() {
    auto st = status();
    return st.state == PoolState::kConnected && st.sessions_idle == 1;
  }

  TestLoop loop;
  ScriptedImapServer server;
  std::unique_ptr<MailboxPool> pool;
};

TEST_F(PoolTest, OneSessionIdlesOnInboxAndFindsSent) {
  pool = std::make_unique<MailboxPool>(*loop, settings(), nullptr);
  EXPECT_EQ(status().state, PoolState::kOff);
  pool->start();
  ASSERT_TRUE(loop.run({{[&] { return idling(); }, {}}}));
  auto st = status();
  EXPECT_EQ(st.sessions_open, 1u);
  EXPECT_EQ(st.max_sessions, 3u);
  EXPECT_EQ(st.sent_folder, "Sent Items");
  EXPECT_EQ(st.logins, 1u);
  EXPECT_GT(st.connected_since_ms, 0);
  EXPECT_EQ(server.accepted, 1);
  EXPECT_NE(std::ranges::find(server.commands, std::string("EXAMINE INBOX")),
            server.commands.end());
  EXPECT_EQ(server.commands.back(), "IDLE");
}

TEST_F(PoolTest, IdlePushesReachTheHandler) {
  pool = std::make_unique<MailboxPool>(*loop, settings(), nullptr);
  std::vector<protocol::UntaggedData> pushes;
  pool->setPushHandler([&](const protocol::UntaggedData& d) { pushes.push_back(d); });
  pool->start();
  ASSERT_TRUE(loop.run({{[&] { return idling() && server.idling() == 1; },
                         [&] { server.pushToIdlers("* 9 EXISTS\r\n"); }},
                        {[&] { return !pushes.empty(); }, {}}}));
  EXPECT_EQ(std::get<protocol::NumberData>(pushes[0]).number, 9u);
}

TEST_F(PoolTest, LeasesQueueWithinTheCapAndSessionsAreReused) {
  pool = std::make_unique<MailboxPool>(*loop, settings(3), nullptr);
  pool->start();
  std::vector<LeaseRequestPtr> requests;
  int done = 0;
  uint32_t waiting = 0;
  ASSERT_TRUE(loop.run({{[&] { return idling(); },
                         [&] {
                           for (int i = 0; i < 6; ++i) {
                             requests.push_back(pool->lease([&](Result<LeasePtr> lease) {
                               ASSERT_TRUE(lease.has_value());
                               auto shared = std::shared_ptr<Lease>(std::move(*lease));
                               shared->session().noop([&, shared](Result<void> r) {
                                 EXPECT_TRUE(r.has_value());
                                 ++done; // the lease goes back when `shared` does
                               });
                             }));
                           }
                           waiting = status().jobs_waiting;
                         }},
                        {[&] { return done == 6; }, {}}}));
  EXPECT_EQ(waiting, 6u);
  EXPECT_LE(server.max_open, 3); // the IDLE session and two workers
  EXPECT_EQ(server.accepted, 3); // workers were reused, not reopened
  EXPECT_EQ(status().jobs_waiting, 0u);
}

TEST_F(PoolTest, APoolOfOneLendsTheIdleSessionAndIdlesAgain) {
  pool = std::make_unique<MailboxPool>(*loop, settings(1), nullptr);
  pool->start();
  bool done = false;
  LeaseRequestPtr request;
  ASSERT_TRUE(loop.run({{[&] { return idling(); },
                         [&] {
                           request = pool->lease([&](Result<LeasePtr> lease) {
                             ASSERT_TRUE(lease.has_value());
                             auto shared = std::shared_ptr<Lease>(std::move(*lease));
                             shared->session().select("Sent Items", false,
                                                      [&, shared](Result<SelectInfo> r) {
                                                        EXPECT_TRUE(r.has_value());
                                                        done = true;
                                                      });
                           });
                         }},
                        {[&] { return done && idling() && server.idling() == 1; }, {}}}));
  EXPECT_EQ(server.accepted, 1);
  EXPECT_EQ(server.dones, 1);
  EXPECT_EQ(server.commands.back(), "IDLE");
  EXPECT_EQ(std::ranges::count(server.commands, std::string("EXAMINE INBOX")), 2);
}

TEST_F(PoolTest, AnUnusedWorkerIsLoggedOutAfterItsLinger) {
  auto s = settings();
  s.worker_linger = 50ms;
  pool = std::make_unique<MailboxPool>(*loop, s, nullptr);
  pool->start();
  LeaseRequestPtr request;
  bool served = false;
  ASSERT_TRUE(
      loop.run({{[&] { return idling(); },
                 [&] {
                   request = pool->lease([&](Result<LeasePtr> lease) {
                     served = lease.has_value(); // and given back at once
                   });
                 }},
                {[&] { return served && server.accepted == 2 && server.open_now == 1; }, {}}}));
  EXPECT_EQ(std::ranges::count(server.commands, std::string("LOGOUT")), 1);
  EXPECT_EQ(status().sessions_open, 1u);
  EXPECT_EQ(status().sessions_idle, 1u);
}

TEST_F(PoolTest, AWithdrawnRequestIsNeverAnswered) {
  pool = std::make_unique<MailboxPool>(*loop, settings(), nullptr);
  pool->start();
  bool called = false;
  auto request = pool->lease([&](Result<LeasePtr>) { called = true; });
  request.reset();
  ASSERT_TRUE(loop.run({{[&] { return idling(); }, {}}}));
  EXPECT_FALSE(called);
}

TEST_F(PoolTest, ThrottlingPausesTheMailbox) {
  int selects = 0;
  server.hook = [&](ScriptedImapServer::Conn& c, const std::string& tag, const std::string& cmd,
                    const std::string&) {
    if (cmd == "EXAMINE" && selects++ == 0) {
      c.send(tag + " NO Request is throttled. Suggested Backoff Time: 300 milliseconds\r\n");
      return true;
    }
    return false;
  };
  pool = std::make_unique<MailboxPool>(*loop, settings(), nullptr);
  pool->start();
  MailboxImapStatus throttled;
  int accepted_while_paused = 0;
  ASSERT_TRUE(loop.run({{[&] { return status().state == PoolState::kThrottled; },
                         [&] {
                           throttled = status();
                           accepted_while_paused = server.accepted;
                         }},
                        {[&] { return idling(); }, {}}}));
  EXPECT_EQ(throttled.last_error_code, "imap.throttled");
  EXPECT_GT(throttled.next_retry_at_ms, 0);
  EXPECT_EQ(accepted_while_paused, 1);
  EXPECT_EQ(selects, 2);
}

TEST_F(PoolTest, RefusedCredentialsDisconnectWithAHintAndRetrySlowly) {
  server.password = "the-new-one";
  pool = std::make_unique<MailboxPool>(*loop, settings(), nullptr);
  pool->start();
  MailboxImapStatus refused;
  int accepted = 0;
  ASSERT_TRUE(loop.run({{[&] { return status().state == PoolState::kDisconnected; },
                         [&] {
                           refused = status();
                           accepted = server.accepted;
                           // The App Password starts working: the next slow retry connects.
                           server.password = "app-password";
                         }},
                        {[&] { return idling(); }, {}}}));
  EXPECT_EQ(refused.last_error_code, "imap.auth");
  EXPECT_FALSE(refused.hint.empty());
  EXPECT_GT(refused.next_retry_at_ms, refused.last_error_at_ms);
  EXPECT_EQ(refused.failures, 1u);
  EXPECT_EQ(accepted, 1); // no storm: the next try waited login_retry_initial
  EXPECT_EQ(server.accepted, 2);
}

TEST_F(PoolTest, ADroppedServerIsReconnectedWithBackoff) {
  pool = std::make_unique<MailboxPool>(*loop, settings(), nullptr);
  pool->start();
  ASSERT_TRUE(loop.run({{[&] { return idling(); }, [&] { server.dropAll(); }},
                        {[&] { return status().logins == 2 && idling(); }, {}}}));
  EXPECT_EQ(server.accepted, 2);
  EXPECT_EQ(status().last_error_code, "imap.closed");
}

TEST_F(PoolTest, EachSessionThatStartsWatchingCallsTheWatchHandler) {
  // Mail that came while no session watched is found: the handler runs for the first watcher
  // and again for the one that replaces a dropped session.
  pool = std::make_unique<MailboxPool>(*loop, settings(), nullptr);
  int watching = 0;
  pool->setWatchHandler([&] { ++watching; });
  pool->start();
  ASSERT_TRUE(loop.run({{[&] { return idling() && watching == 1; }, [&] { server.dropAll(); }},
                        {[&] { return status().logins == 2 && idling(); }, {}}}));
  EXPECT_EQ(watching, 2);
}

TEST_F(PoolTest, TheTenantBudgetCapsSessionsAcrossMailboxes) {
  SessionBudget budget(1);
  pool = std::make_unique<MailboxPool>(*loop, settings(), &budget);
  auto other_settings = settings();
  other_settings.address = "rep2@acme.example";
  auto other = std::make_unique<MailboxPool>(*loop, other_settings, &budget);
  pool->start();
  other->start();
  MailboxImapStatus st;
  MailboxImapStatus other_while_full;
  bool stopped = false;
  ASSERT_TRUE(loop.run({{[&] { return idling(); },
                         [&] {
                           other->statusInto(other_while_full);
                           // The first mailbox goes: its session frees the budget.
                           pool->stop([&] { stopped = true; });
                         }},
                        {[&] {
                           other->statusInto(st);
                           return stopped && st.sessions_idle == 1;
                         },
                         {}}}));
  EXPECT_EQ(other_while_full.sessions_open, 0u);
  EXPECT_EQ(server.max_open, 1);
  EXPECT_EQ(budget.used(), 1u);
  other.reset();
  EXPECT_EQ(budget.used(), 0u);
  pool.reset(); // before the budget it uses
}

TEST_F(PoolTest, ASpentTenantBudgetLendsTheIdleSession) {
  // A budget of one: the IDLE session holds it, so the job gets that session.
  SessionBudget budget(1);
  pool = std::make_unique<MailboxPool>(*loop, settings(3), &budget);
  pool->start();
  bool done = false;
  LeaseRequestPtr request;
  ASSERT_TRUE(loop.run({{[&] { return idling(); },
                         [&] {
                           request = pool->lease([&](Result<LeasePtr> lease) {
                             ASSERT_TRUE(lease.has_value());
                             auto shared = std::shared_ptr<Lease>(std::move(*lease));
                             shared->session().noop(
                                 [&, shared](Result<void> r) { done = r.has_value(); });
                           });
                         }},
                        {[&] { return done && idling() && server.idling() == 1; }, {}}}));
  EXPECT_EQ(server.accepted, 1);
  EXPECT_EQ(server.dones, 1);
  EXPECT_EQ(budget.used(), 1u);
  pool.reset(); // before the budget it uses
}

TEST_F(PoolTest, TheConnectGateOpensSessionsInTurn) {
  // Four mailboxes start in the same turn; with a gate of one, the server never sees a second
  // connection before the first has logged in. Without the gate all four would connect at once.
  SessionBudget gate(1);
  std::vector<std::unique_ptr<MailboxPool>> pools;
  for (int i = 0; i < 4; ++i) {
    auto s = settings();
    s.address = "rep" + std::to_string(i) + "@acme.example";
    pools.push_back(std::make_unique<MailboxPool>(*loop, s, nullptr, &gate));
    pools.back()->start();
  }
  auto all_idle = [&] {
    return std::ranges::all_of(pools, [](const auto& p) {
      MailboxImapStatus st;
      p->statusInto(st);
      return st.sessions_idle == 1;
    });
  };
  ASSERT_TRUE(loop.run({{all_idle, {}}}));
  EXPECT_EQ(server.max_not_logged_in, 1);
  EXPECT_EQ(server.max_open, 4);
  EXPECT_EQ(gate.used(), 0u); // every turn was given back after its login
}

TEST_F(PoolTest, WithoutAGateMailboxesConnectTogether) {
  std::vector<std::unique_ptr<MailboxPool>> pools;
  for (int i = 0; i < 4; ++i) {
    auto s = settings();
    s.address = "rep" + std::to_string(i) + "@acme.example";
    pools.push_back(std::make_unique<MailboxPool>(*loop, s, nullptr, nullptr));
    pools.back()->start();
  }
  ASSERT_TRUE(loop.run({{[&] { return server.logins == 4; }, {}}}));
  EXPECT_GT(server.max_not_logged_in, 1); // what the gate above prevents
}

TEST_F(PoolTest, StopLogsOutAndFailsWaitingRequests) {
  pool = std::make_unique<MailboxPool>(*loop, settings(), nullptr);
  pool->start();
  bool stopped = false;
  std::optional<Error> error;
  LeaseRequestPtr request;
  ASSERT_TRUE(loop.run({{[&] { return idling(); },
                         [&] {
                           pool->stop([&] { stopped = true; });
                           request = pool->lease([&](Result<LeasePtr> r) {
                             if (!r) {
                               error = r.error();
                             }
                           });
                         }},
                        {[&] { return stopped && error.has_value(); }, {}}}));
  EXPECT_EQ(error->code, "imap.pool_stopped");
  EXPECT_EQ(server.commands.back(), "LOGOUT");
  EXPECT_EQ(status().state, PoolState::kOff);
}

TEST_F(PoolTest, NewCredentialsReconnectAtOnce) {
  server.password = "the-new-one";
  auto slow = settings();
  slow.login_retry_initial = std::chrono::hours(1); // only the new settings can bring it back
  pool = std::make_unique<MailboxPool>(*loop, slow, nullptr);
  pool->start();
  ASSERT_TRUE(loop.run({{[&] { return status().state == PoolState::kDisconnected; },
                         [&] {
                           auto fixed = settings();
                           fixed.login_retry_initial = std::chrono::hours(1);
                           fixed.session.password = Secret("the-new-one");
                           pool->reconfigure(std::move(fixed));
                         }},
                        {[&] { return idling(); }, {}}}));
  EXPECT_EQ(server.accepted, 2);
}

} // namespace
} // namespace mailgate::imap::test

// Routing state in the SQLite store (issue 3): ledger charges and refunds, route states, route
// events, the route pin, Sent-folder write-back, priority, and the migration from schema 1.
#include "gateway/store/json_writer.h"
#include "gateway/store/schema.h"
#include "gateway/store/sqlite_db.h"
#include "gateway/store/sqlite_queue_store.h"
#include "tests/gateway/store/store_test_support.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <optional>
#include <string>
#include <vector>

namespace mailgate::store {
namespace {

using relay::AttemptOutcome;
using relay::AttemptStart;
using relay::DeliveryResult;
using relay::EventRecord;
using relay::LedgerCharge;
using relay::MessageState;
using relay::NewMessage;
using relay::QueuedMessage;
using relay::RouteStateRecord;
using relay::RoutingSnapshot;
using testing::await;
using testing::kDay;
using testing::kMinute;
using testing::kT0;
using testing::PostQueue;
using testing::RawDb;
using testing::TempDir;
constexpr std::string_view kM365Key = "m365:rep1@acme.example";
constexpr std::string_view kRelayKey = "relay:acme-relay";

NewMessage message(std::vector<std::string> rcpts = {"bob@example.net"}) {
  NewMessage m;
  m.mail_from = "rep1@acme.example";
  m.recipients = std::move(rcpts);
  m.body = "Subject: test\r\n\r\nhello\r\n";
  m.submitter = "crm";
  m.tenant = "acme";
  m.mailbox = "rep1@acme.example";
  m.route = ""; // decided per attempt by the router
  m.now_ms = kT0;
  m.expires_at_ms = kT0 + 5 * kDay;
  return m;
}

AttemptStart start(std::string route, std::vector<LedgerCharge> charges = {}) {
  return AttemptStart{std::move(route), std::move(charges)};
}

class RoutingStateTest : public testing::StoreFixture {
protected:
  Result<void> saveState(SqliteQueueStore& s, RouteStateRecord st, std::optional<EventRecord> ev) {
    return await<void>(q_,
                       [&](auto done) { s.saveRouteState(std::move(st), std::move(ev), done); });
  }
  Result<void> recordEvent(SqliteQueueStore& s, EventRecord ev) {
    return await<void>(q_, [&](auto done) { s.recordEvent(std::move(ev), done); });
  }
  std::vector<std::string> typesOf(SqliteQueueStore& s, const std::string& queue_id) {
    std::vector<std::string> out;
    for (const auto& e : allEvents(s)) {
      if (e.queue_id == queue_id) {
        out.push_back(e.type);
      }
    }
    return out;
  }
  // "key@bucket=count" for every stored ledger row, in key and bucket order.
  std::vector<std::string> ledgerRows() {
    RawDb raw(dbFile());
    std::vector<std::string> out;
    for (const auto& r : raw.rows("SELECT key, bucket_ms, count FROM ledger "
                                  "ORDER BY key, bucket_ms")) {
      out.push_back(r[0] + "@" + r[1] + "=" + r[2]);
    }
    return out;
  }
  static std::string row(std::string_view key, int64_t bucket, int64_t count) {
    return fmt::format("{}@{}={}", key, bucket, count);
  }
};

TEST_F(RoutingStateTest, MarkSendingSetsTheRouteAndChargesLedgers) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string a = enqueueOk(*store, message({"x@example.net", "y@example.net"}));
  const std::string b = enqueueOk(*store, message({"z@example.net"}));

  auto body = markSending(
      *store, a, kT0 + 1,
      start("microsoft365", {{std::string(kM365Key), kT0, 2}, {std::string(kRelayKey), kT0, 0}}));
  ASSERT_TRUE(body.has_value()) << body.error().describe();
  EXPECT_EQ(*body, "Subject: test\r\n\r\nhello\r\n");
  // The same bucket again adds up; a charge of 0 stores nothing.
  ASSERT_TRUE(
      markSending(*store, b, kT0 + 2, start("microsoft365", {{std::string(kM365Key), kT0, 1}}))
          .has_value());
  EXPECT_EQ(ledgerRows(), (std::vector<std::string>{row(kM365Key, kT0, 3)}));

  auto m = get(*store, a);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->state, MessageState::kSending);
  EXPECT_EQ(m->route, "microsoft365");
  EXPECT_FALSE(m->route_pinned);
  RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.route') FROM events WHERE type = "
                       "'message.sending' AND queue_id = '" +
                       a + "'"),
            "microsoft365");
}

TEST_F(RoutingStateTest, AnEmptyAttemptRouteKeepsTheStoredOne) {
  auto store = open();
  ASSERT_TRUE(store);
  NewMessage msg = message();
  msg.route = "default";
  const std::string id = enqueueOk(*store, msg);
  auto sent = await<std::string>(q_, [&](auto done) { store->markSending(id, kT0, done); });
  ASSERT_TRUE(sent.has_value());
  EXPECT_EQ(get(*store, id)->route, "default");
  EXPECT_TRUE(ledgerRows().empty());
}

TEST_F(RoutingStateTest, ARefusedMarkSendingChargesNothing) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string id = enqueueOk(*store, message());
  ASSERT_TRUE(markSending(*store, id, kT0, start("microsoft365", {{std::string(kM365Key), kT0, 1}}))
                  .has_value());
  // Already sending: refused, and neither the second charge nor the route change is stored.
  auto again =
      markSending(*store, id, kT0 + 1, start("acme-relay", {{std::string(kRelayKey), kT0, 1}}));
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, "store.state");
  auto missing =
      markSending(*store, "NOSUCHID", kT0, start("acme-relay", {{std::string(kRelayKey), kT0, 1}}));
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, "store.not_found");
  EXPECT_EQ(ledgerRows(), (std::vector<std::string>{row(kM365Key, kT0, 1)}));
  EXPECT_EQ(get(*store, id)->route, "microsoft365");
}

TEST_F(RoutingStateTest, RefundsGiveBackAndDeleteBucketsAtZero) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string a = enqueueOk(*store, message({"x@example.net", "y@example.net"}));
  const std::string b = enqueueOk(*store, message({"z@example.net"}));
  const std::string key(kM365Key);
  ASSERT_TRUE(
      markSending(*store, a, kT0, start("microsoft365", {{key, kT0, 2}, {key, kT0 + 1000, 2}}))
          .has_value());
  ASSERT_TRUE(
      markSending(*store, b, kT0, start("microsoft365", {{key, kT0 + 2000, 1}})).has_value());

  // The attempt reached nobody: two recipients back to the first bucket (it reaches 0 and goes),
  // one to the second, and more than the third holds (floor 0, gone).
  AttemptOutcome o;
  o.id = a;
  o.now_ms = kT0 + 10;
  o.next_attempt_ms = kT0 + kMinute;
  o.whole_message_temp_failure = true;
  o.reply = "connection refused";
  o.route = "microsoft365";
  o.refunds = {{key, kT0, -2}, {key, kT0 + 1000, -1}, {key, kT0 + 2000, -5}};
  auto m = record(*store, o);
  ASSERT_TRUE(m.has_value()) << m.error().describe();
  EXPECT_EQ(m->state, MessageState::kDeferred);
  EXPECT_FALSE(m->route_pinned);
  EXPECT_EQ(ledgerRows(), (std::vector<std::string>{row(kM365Key, kT0 + 1000, 1)}));

  // A refund to a bucket that is not stored creates nothing.
  ASSERT_TRUE(markSending(*store, a, kT0 + kMinute, start("microsoft365")).has_value());
  o.now_ms = kT0 + kMinute;
  o.refunds = {{std::string(kRelayKey), kT0, -1}};
  ASSERT_TRUE(record(*store, o).has_value());
  EXPECT_EQ(ledgerRows(), (std::vector<std::string>{row(kM365Key, kT0 + 1000, 1)}));
}

TEST_F(RoutingStateTest, ARefusedRecordAttemptRefundsNothing) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string id = enqueueOk(*store, message());
  ASSERT_TRUE(markSending(*store, id, kT0, start("microsoft365", {{std::string(kM365Key), kT0, 1}}))
                  .has_value());
  AttemptOutcome o;
  o.id = id;
  o.now_ms = kT0;
  o.recipients = {{"bob@example.net", DeliveryResult::kSent, "250 ok"}};
  ASSERT_TRUE(record(*store, o).has_value());
  // The message is final now: a second outcome is refused and its refund is not applied.
  o.refunds = {{std::string(kM365Key), kT0, -1}};
  auto twice = record(*store, o);
  ASSERT_FALSE(twice.has_value());
  EXPECT_EQ(twice.error().code, "store.state");
  EXPECT_EQ(ledgerRows(), (std::vector<std::string>{row(kM365Key, kT0, 1)}));
}

TEST_F(RoutingStateTest, ChargesShareTheGroupedCommits) {
  auto store = open();
  ASSERT_TRUE(store);
  constexpr int kCount = 40;
  std::vector<std::string> ids;
  for (int i = 0; i < kCount; ++i) {
    ids.push_back(enqueueOk(*store, message()));
  }
  const uint64_t commits_before = store->stats().commits;
  // Hold the write lock so every markSending lands in one batch.
  RawDb raw(dbFile());
  ASSERT_EQ(raw.exec("BEGIN IMMEDIATE"), SQLITE_OK);
  int ok = 0;
  for (const auto& id : ids) {
    store->markSending(id, kT0, start("microsoft365", {{std::string(kM365Key), kT0, 2}}),
                       [&](Result<std::string> r) { ok += r.has_value() ? 1 : 0; });
  }
  ASSERT_EQ(raw.exec("ROLLBACK"), SQLITE_OK);
  ASSERT_TRUE(q_.runUntil([&] { return ok == kCount; }));
  EXPECT_LE(store->stats().commits - commits_before, 2u);
  EXPECT_EQ(ledgerRows(), (std::vector<std::string>{row(kM365Key, kT0, 2 * kCount)}));
}

TEST_F(RoutingStateTest, UncertainOutcomePinsTheRouteAndIsRecorded) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string id = enqueueOk(*store, message({"x@example.net", "y@example.net"}));
  ASSERT_TRUE(markSending(*store, id, kT0, start("microsoft365")).has_value());
  AttemptOutcome o;
  o.id = id;
  o.now_ms = kT0 + 5;
  o.next_attempt_ms = kT0 + kMinute;
  o.whole_message_temp_failure = true;
  o.uncertain = true;
  o.route = "microsoft365";
  o.reply = "connection lost after the final dot";
  auto m = record(*store, o);
  ASSERT_TRUE(m.has_value()) << m.error().describe();
  EXPECT_EQ(m->state, MessageState::kDeferred);
  EXPECT_TRUE(m->route_pinned);
  EXPECT_EQ(m->route, "microsoft365");
  EXPECT_EQ(m->writeback, ""); // nothing known to be delivered

  auto stored = get(*store, id);
  ASSERT_TRUE(stored.has_value());
  EXPECT_TRUE(stored->route_pinned);
  EXPECT_EQ(stored->route, "microsoft365");
  EXPECT_EQ(typesOf(*store, id),
            (std::vector<std::string>{"message.queued", "message.sending", "message.uncertain",
                                      "message.deferred"}));
  RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.route') FROM events "
                       "WHERE type = 'message.uncertain'"),
            "microsoft365");
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.reply') FROM events "
                       "WHERE type = 'message.uncertain'"),
            "connection lost after the final dot");
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.route') FROM events "
                       "WHERE type = 'message.deferred'"),
            "microsoft365");
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM events WHERE NOT json_valid(data)"), "0");
}

TEST_F(RoutingStateTest, ATemporaryFailureDoesNotPin) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string id = enqueueOk(*store, message());
  ASSERT_TRUE(markSending(*store, id, kT0, start("microsoft365")).has_value());
  AttemptOutcome o;
  o.id = id;
  o.now_ms = kT0;
  o.next_attempt_ms = kT0 + kMinute;
  o.route = "microsoft365";
  o.recipients = {{"bob@example.net", DeliveryResult::kTempFail, "451 4.7.500 later"}};
  auto m = record(*store, o);
  ASSERT_TRUE(m.has_value());
  EXPECT_FALSE(m->route_pinned);
  EXPECT_FALSE(get(*store, id)->route_pinned);
  // Free to change route: the next attempt goes through the relay.
  ASSERT_TRUE(markSending(*store, id, kT0 + kMinute, start("acme-relay")).has_value());
  EXPECT_EQ(get(*store, id)->route, "acme-relay");
}

TEST_F(RoutingStateTest, DeliveryThroughARelayForAMailboxNeedsWriteback) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string id = enqueueOk(*store, message({"x@example.net", "y@example.net"}));
  ASSERT_TRUE(markSending(*store, id, kT0, start("acme-relay")).has_value());
  AttemptOutcome o;
  o.id = id;
  o.now_ms = kT0 + 1;
  o.next_attempt_ms = kT0 + kMinute;
  o.route = "acme-relay";
  o.recipients = {{"x@example.net", DeliveryResult::kSent, "250 ok"},
                  {"y@example.net", DeliveryResult::kTempFail, "451 later"}};
  auto m = record(*store, o);
  ASSERT_TRUE(m.has_value()) << m.error().describe();
  EXPECT_EQ(m->state, MessageState::kDeferred);
  EXPECT_TRUE(m->route_pinned);
  EXPECT_EQ(m->route, "acme-relay");
  EXPECT_EQ(m->writeback, "pending");

  // The rest is delivered later; the write-back is still pending (once is enough).
  ASSERT_TRUE(markSending(*store, id, kT0 + kMinute, start("acme-relay")).has_value());
  o.now_ms = kT0 + kMinute;
  o.recipients = {{"y@example.net", DeliveryResult::kSent, "250 ok"}};
  auto done = record(*store, o);
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->state, MessageState::kSent);
  auto stored = get(*store, id);
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->writeback, "pending");
  EXPECT_TRUE(stored->route_pinned);
  RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.route') FROM events "
                       "WHERE type = 'message.sent'"),
            "acme-relay");
  EXPECT_EQ(raw.scalar("SELECT writeback FROM messages WHERE id = '" + id + "'"), "pending");
}

TEST_F(RoutingStateTest, DeliveryThroughMicrosoft365NeedsNoWriteback) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string id = enqueueOk(*store, message());
  ASSERT_TRUE(markSending(*store, id, kT0, start("microsoft365")).has_value());
  AttemptOutcome o;
  o.id = id;
  o.now_ms = kT0;
  o.route = "microsoft365";
  o.recipients = {{"bob@example.net", DeliveryResult::kSent, "250 2.0.0 OK"}};
  auto m = record(*store, o);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->state, MessageState::kSent);
  EXPECT_TRUE(m->route_pinned);
  EXPECT_EQ(m->writeback, "");
  EXPECT_EQ(get(*store, id)->writeback, "");
}

TEST_F(RoutingStateTest, RelayDeliveryWithoutAMailboxNeedsNoWriteback) {
  auto store = open();
  ASSERT_TRUE(store);
  NewMessage msg = message();
  msg.mailbox = "";
  msg.route = "default";
  const std::string id = enqueueOk(*store, msg);
  // No route given to either call: the stored one ("default", a relay) is the attempt's.
  ASSERT_TRUE(markSending(*store, id, kT0, start("")).has_value());
  AttemptOutcome o;
  o.id = id;
  o.now_ms = kT0;
  o.recipients = {{"bob@example.net", DeliveryResult::kSent, "250 ok"}};
  auto m = record(*store, o);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->writeback, "");
  EXPECT_TRUE(m->route_pinned);
  EXPECT_EQ(m->route, "default");
  RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.route') FROM events "
                       "WHERE type = 'message.sent'"),
            "default");
}

TEST_F(RoutingStateTest, PriorityRoundTrips) {
  std::string personal;
  std::string bulk;
  {
    auto store = open();
    ASSERT_TRUE(store);
    NewMessage p = message();
    p.priority = "personal";
    personal = enqueueOk(*store, p);
    bulk = enqueueOk(*store, message());
    EXPECT_EQ(get(*store, personal)->priority, "personal");
    EXPECT_EQ(get(*store, bulk)->priority, "bulk");
  }
  RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.priority') FROM events "
                       "WHERE type = 'message.queued' AND queue_id = '" +
                       personal + "'"),
            "personal");
  auto store = open();
  ASSERT_TRUE(store);
  auto r = store->recover(kT0 + kMinute);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->size(), 2u);
  for (const auto& m : *r) {
    EXPECT_EQ(m.priority, m.id == personal ? "personal" : "bulk") << m.id;
  }
}

TEST_F(RoutingStateTest, RouteStateIsReplacedAndItsEventWrittenWithIt) {
  auto store = open();
  ASSERT_TRUE(store);
  RouteStateRecord exhausted{
      std::string(kM365Key), "exhausted", kT0 + kDay, "554 5.2.0 ... ShutoffQuotaExceeded",
      "wait for the window", kT0};
  EventRecord failover{"route.failover", "acme", "rep1@acme.example",
                       R"({"from":"microsoft365","to":"acme-relay"})"};
  ASSERT_TRUE(saveState(*store, exhausted, failover).has_value());
  RouteStateRecord active{std::string(kM365Key), "active", 0, "window freed", "", kT0 + kDay};
  ASSERT_TRUE(saveState(*store, active, std::nullopt).has_value());
  RouteStateRecord relay{std::string(kRelayKey), "paused", kT0 + 5 * kMinute, "421", "", kT0};
  ASSERT_TRUE(saveState(*store, relay, std::nullopt).has_value());

  auto snap = store->loadRouting(kT0 + kDay, kDay);
  ASSERT_TRUE(snap.has_value()) << snap.error().describe();
  ASSERT_EQ(snap->states.size(), 2u);
  EXPECT_EQ(snap->states[0].key, kM365Key);
  EXPECT_EQ(snap->states[0].state, "active");
  EXPECT_EQ(snap->states[0].until_ms, 0);
  EXPECT_EQ(snap->states[0].reason, "window freed");
  EXPECT_EQ(snap->states[0].updated_ms, kT0 + kDay);
  EXPECT_EQ(snap->states[1].key, kRelayKey);
  EXPECT_EQ(snap->states[1].state, "paused");
  EXPECT_EQ(snap->states[1].until_ms, kT0 + 5 * kMinute);

  const auto evs = allEvents(*store);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].type, "route.failover");
  EXPECT_EQ(evs[0].queue_id, "");
  EXPECT_EQ(evs[0].tenant, "acme");
  EXPECT_EQ(evs[0].mailbox, "rep1@acme.example");
  EXPECT_EQ(evs[0].time, formatRfc3339(kT0)); // when the state changed
  EXPECT_EQ(evs[0].data, R"({"from":"microsoft365","to":"acme-relay"})");
}

TEST_F(RoutingStateTest, ARouteStateWhoseEventFailsIsNotStored) {
  auto store = open();
  ASSERT_TRUE(store);
  RawDb raw(dbFile());
  // A trigger makes one event type fail to insert, as a full disk would.
  ASSERT_EQ(raw.exec("CREATE TRIGGER refuse_boom BEFORE INSERT ON events "
                     "WHEN NEW.type = 'route.boom' BEGIN SELECT RAISE(ABORT, 'boom'); END"),
            SQLITE_OK);
  // One batch (the lock is held while they queue): the failing one is undone alone.
  ASSERT_EQ(raw.exec("BEGIN IMMEDIATE"), SQLITE_OK);
  std::vector<Result<void>> results;
  const auto collect = [&](Result<void> r) { results.push_back(std::move(r)); };
  store->saveRouteState(RouteStateRecord{"relay:a", "paused", 0, "", "", kT0},
                        EventRecord{"route.paused", "acme", "", ""}, collect);
  store->saveRouteState(RouteStateRecord{"relay:b", "paused", 0, "", "", kT0},
                        EventRecord{"route.boom", "acme", "", ""}, collect);
  store->recordEvent(EventRecord{"route.alert", "acme", "", ""}, collect);
  ASSERT_EQ(raw.exec("ROLLBACK"), SQLITE_OK);
  ASSERT_TRUE(q_.runUntil([&] { return results.size() == 3; }));
  EXPECT_TRUE(results[0].has_value());
  ASSERT_FALSE(results[1].has_value());
  EXPECT_EQ(results[1].error().code, "store.io");
  EXPECT_TRUE(results[2].has_value());
  EXPECT_EQ(raw.scalar("SELECT group_concat(key) FROM route_state"), "relay:a");
  EXPECT_EQ(raw.scalar("SELECT group_concat(type) FROM events"), "route.paused,route.alert");
}

TEST_F(RoutingStateTest, RecordEventStoresTheDataAsGiven) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(recordEvent(*store, EventRecord{"route.disconnected", "acme", "rep1@acme.example",
                                              R"({"hint":"create a new App Password"})"})
                  .has_value());
  ASSERT_TRUE(recordEvent(*store, EventRecord{"route.alert", "", "", ""}).has_value());
  const auto evs = allEvents(*store);
  ASSERT_EQ(evs.size(), 2u);
  EXPECT_EQ(evs[0].type, "route.disconnected");
  EXPECT_EQ(evs[0].tenant, "acme");
  EXPECT_EQ(evs[0].mailbox, "rep1@acme.example");
  EXPECT_EQ(evs[0].queue_id, "");
  EXPECT_EQ(evs[0].id.size(), 26u);
  EXPECT_EQ(evs[0].data, R"({"hint":"create a new App Password"})");
  EXPECT_EQ(evs[1].data, "{}");
  EXPECT_NE(evs[0].id, evs[1].id);
  EXPECT_GT(evs[1].seq, evs[0].seq);
  RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM events WHERE NOT json_valid(data)"), "0");
  const std::string env = evs[0].toJson();
  EXPECT_EQ(raw.scalar("SELECT json_extract('" + env + "', '$.data.hint')"),
            "create a new App Password");
}

TEST_F(RoutingStateTest, LoadRoutingDropsBucketsThatLeftEveryWindow) {
  auto store = open();
  ASSERT_TRUE(store);
  const int64_t now = kT0 + 2 * kDay;
  const int64_t width = kDay / 240; // 360,000 ms for a one-day window
  const int64_t edge = now - kDay - width;
  const std::string key(kM365Key);
  const std::string id = enqueueOk(*store, message());
  ASSERT_TRUE(markSending(*store, id, kT0,
                          start("microsoft365", {{key, edge - 1, 4},
                                                 {key, edge, 5},
                                                 {key, now - 1000, 6},
                                                 {std::string(kRelayKey), kT0, 7}}))
                  .has_value());
  store.reset();

  store = open();
  ASSERT_TRUE(store);
  auto snap = store->loadRouting(now, kDay);
  ASSERT_TRUE(snap.has_value()) << snap.error().describe();
  ASSERT_EQ(snap->buckets.size(), 2u);
  EXPECT_EQ(snap->buckets[0].key, kM365Key);
  EXPECT_EQ(snap->buckets[0].bucket_ms, edge);
  EXPECT_EQ(snap->buckets[0].count, 5);
  EXPECT_EQ(snap->buckets[1].bucket_ms, now - 1000);
  EXPECT_EQ(snap->buckets[1].count, 6);
  EXPECT_TRUE(snap->states.empty());
  // Deleted for good, not only left out.
  EXPECT_EQ(ledgerRows(),
            (std::vector<std::string>{row(kM365Key, edge, 5), row(kM365Key, now - 1000, 6)}));

  // A short window: its bucket width is the 1 s minimum.
  auto short_window = store->loadRouting(now, kMinute);
  ASSERT_TRUE(short_window.has_value());
  ASSERT_EQ(short_window->buckets.size(), 1u);
  EXPECT_EQ(short_window->buckets[0].bucket_ms, now - 1000);
}

TEST_F(RoutingStateTest, RoutingStateSurvivesReopening) {
  std::string id;
  {
    auto store = open();
    ASSERT_TRUE(store);
    id = enqueueOk(*store, message());
    ASSERT_TRUE(
        markSending(*store, id, kT0, start("acme-relay", {{std::string(kRelayKey), kT0, 1}}))
            .has_value());
    AttemptOutcome o;
    o.id = id;
    o.now_ms = kT0;
    o.route = "acme-relay";
    o.recipients = {{"bob@example.net", DeliveryResult::kSent, "250 ok"}};
    ASSERT_TRUE(record(*store, o).has_value());
    ASSERT_TRUE(saveState(*store,
                          RouteStateRecord{std::string(kM365Key), "disconnected", 0,
                                           "535 5.7.139 Authentication unsuccessful",
                                           "create a new App Password", kT0},
                          EventRecord{"route.disconnected", "acme", "rep1@acme.example", ""})
                    .has_value());
  }
  auto store = open();
  ASSERT_TRUE(store);
  auto snap = store->loadRouting(kT0 + kMinute, kDay);
  ASSERT_TRUE(snap.has_value());
  ASSERT_EQ(snap->buckets.size(), 1u);
  EXPECT_EQ(snap->buckets[0].key, kRelayKey);
  EXPECT_EQ(snap->buckets[0].count, 1);
  ASSERT_EQ(snap->states.size(), 1u);
  EXPECT_EQ(snap->states[0].state, "disconnected");
  EXPECT_EQ(snap->states[0].reason, "535 5.7.139 Authentication unsuccessful");
  EXPECT_EQ(snap->states[0].hint, "create a new App Password");
  auto m = get(*store, id);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->route, "acme-relay");
  EXPECT_TRUE(m->route_pinned);
  EXPECT_EQ(m->writeback, "pending");
}

TEST_F(RoutingStateTest, AnAttemptACrashInterruptedPinsItsRoute) {
  std::string routed;
  std::string unrouted;
  {
    auto store = open();
    ASSERT_TRUE(store);
    routed = enqueueOk(*store, message());
    unrouted = enqueueOk(*store, message());
    ASSERT_TRUE(markSending(*store, routed, kT0, start("microsoft365")).has_value());
    ASSERT_TRUE(markSending(*store, unrouted, kT0, start("")).has_value());
  } // stopped while both were sending
  auto store = open();
  ASSERT_TRUE(store);
  auto r = store->recover(kT0 + kMinute);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->size(), 2u);
  for (const auto& m : *r) {
    EXPECT_EQ(m.state, MessageState::kQueued);
    // The upstream may have the message: it may only go out again through the same route. A
    // message that had no route yet has nothing to keep.
    EXPECT_EQ(m.route_pinned, m.id == routed) << m.id;
  }
  RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.route_pinned') FROM events "
                       "WHERE type = 'message.queued' AND json_extract(data, '$.recovered') "
                       "AND queue_id = '" +
                       routed + "'"),
            "1");
}

TEST_F(RoutingStateTest, ADatabaseFromSchemaVersion1IsMigrated) {
  // The database as the previous mailgated left it: schema 1, one queued message.
  {
    auto db = SqliteDb::open(dbFile());
    ASSERT_TRUE(db.has_value()) << db.error().describe();
    ASSERT_TRUE(migrateSchema(*db, kT0, 1).has_value());
    ASSERT_TRUE(
        db->exec("INSERT INTO bodies (body_id, data) VALUES (1, X'48690D0A');"
                 "INSERT INTO messages (id, body_id, state, mail_from, submitter, tenant, "
                 "mailbox, message_id, route, smtputf8, body_8bit, size, attempts, created_ms, "
                 "updated_ms, next_attempt_ms, expires_at_ms, last_reply) VALUES ("
                 "'01OLDMESSAGE00000000000000', 1, 'queued', 'a@acme.example', 'crm', 'acme', "
                 "'a@acme.example', '', 'default', 0, 0, 4, 0, 1, 1, 1, 9999999999999, '');"
                 "INSERT INTO recipients (message, idx, address, status, last_reply, updated_ms) "
                 "VALUES ('01OLDMESSAGE00000000000000', 0, 'x@example.net', 'pending', '', 1);")
            .has_value());
  }
  {
    RawDb raw(dbFile());
    EXPECT_EQ(raw.scalar("SELECT group_concat(version) FROM schema_migrations"), "1");
  }
  auto store = open();
  ASSERT_TRUE(store);
  RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT group_concat(version) FROM schema_migrations"), "1,2,3,4,5");

  const std::string id = "01OLDMESSAGE00000000000000";
  auto old = get(*store, id);
  ASSERT_TRUE(old.has_value()) << old.error().describe();
  EXPECT_EQ(old->priority, "bulk");
  EXPECT_FALSE(old->route_pinned);
  EXPECT_EQ(old->writeback, "");
  EXPECT_EQ(old->route, "default");
  auto recovered = store->recover(kT0);
  ASSERT_TRUE(recovered.has_value());
  ASSERT_EQ(recovered->size(), 1u);
  EXPECT_EQ((*recovered)[0].id, id);

  // The old message goes through the new paths.
  auto body = markSending(*store, id, kT0, start("acme-relay", {{std::string(kRelayKey), kT0, 1}}));
  ASSERT_TRUE(body.has_value()) << body.error().describe();
  EXPECT_EQ(*body, "Hi\r\n");
  AttemptOutcome o;
  o.id = id;
  o.now_ms = kT0;
  o.route = "acme-relay";
  o.recipients = {{"x@example.net", DeliveryResult::kSent, "250 ok"}};
  auto sent = record(*store, o);
  ASSERT_TRUE(sent.has_value());
  EXPECT_EQ(sent->writeback, "pending");
  EXPECT_EQ(ledgerRows(), (std::vector<std::string>{row(kRelayKey, kT0, 1)}));
  ASSERT_TRUE(saveState(*store, RouteStateRecord{std::string(kRelayKey), "active", 0, "", "", kT0},
                        std::nullopt)
                  .has_value());
}

} // namespace
} // namespace mailgate::store

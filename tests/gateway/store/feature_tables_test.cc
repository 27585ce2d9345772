// The extension point other features' tables use (SqliteQueueStore::write/read,
// QueueTables::cached and addEvent): work runs in the batch transaction, its events count in
// lastEventSeq() before its completion, a failing work undoes only itself, and a read sees what
// the writes before it committed.
#include "gateway/store/queue_tables.h"
#include "gateway/store/sqlite_queue_store.h"
#include "tests/gateway/store/store_test_support.h"

#include <gtest/gtest.h>
#include <string>

namespace mailgate::store {
namespace {

using testing::await;

class FeatureTablesTest : public testing::StoreFixture {};

Result<void> putCursor(QueueTables& t, std::string_view name, int64_t seq) {
  auto st = t.cached("INSERT INTO webhook_cursors (webhook, seq, updated_ms) VALUES (?1, ?2, 0) "
                     "ON CONFLICT (webhook) DO UPDATE SET seq = excluded.seq");
  if (!st) {
    return std::unexpected(st.error());
  }
  StatementScope scope(**st);
  (*st)->bind(1, name).bind(2, seq);
  return (*st)->run();
}

Result<int64_t> getCursor(QueueTables& t, std::string_view name) {
  auto st = t.cached("SELECT seq FROM webhook_cursors WHERE webhook = ?1");
  if (!st) {
    return std::unexpected(st.error());
  }
  StatementScope scope(**st);
  (*st)->bind(1, name);
  auto row = (*st)->step();
  if (!row) {
    return std::unexpected(row.error());
  }
  return *row ? (*st)->int64(0) : -1;
}

TEST_F(FeatureTablesTest, WorkCommitsWithItsEventsAndAReadSeesIt) {
  auto store = open();
  ASSERT_TRUE(store);
  const int64_t before = store->lastEventSeq();
  int64_t seen_in_done = -1;
  auto w = await<int>(q_, [&](auto done) {
    store->write<int>(
        [](QueueTables& t) -> Result<int> {
          if (auto r = putCursor(t, "a", 7); !r) {
            return std::unexpected(r.error());
          }
          auto ev = t.addEvent(relay::EventRecord{"mailbox.reset", "acme", "rep1@acme.example",
                                                  R"({"folder":"inbox"})"},
                               testing::kT0);
          if (!ev) {
            return std::unexpected(ev.error());
          }
          return 42;
        },
        [&, done](Result<int> r) {
          seen_in_done = store->lastEventSeq();
          done(std::move(r));
        });
  });
  ASSERT_TRUE(w.has_value()) << w.error().describe();
  EXPECT_EQ(*w, 42);
  EXPECT_EQ(seen_in_done, before + 1);

  auto r = await<int64_t>(q_, [&](auto done) {
    store->read<int64_t>([](QueueTables& t) { return getCursor(t, "a"); }, done);
  });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, 7);
  auto events = allEvents(*store);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().type, "mailbox.reset");
  EXPECT_EQ(events.back().mailbox, "rep1@acme.example");
  EXPECT_EQ(events.back().data, R"({"folder":"inbox"})");
}

TEST_F(FeatureTablesTest, AFailingWorkUndoesOnlyItselfAndReportsItsError) {
  auto store = open();
  ASSERT_TRUE(store);
  std::optional<Result<void>> first, second;
  store->write<void>([](QueueTables& t) -> Result<void> { return putCursor(t, "kept", 1); },
                     [&](Result<void> r) { first.emplace(std::move(r)); });
  store->write<void>(
      [](QueueTables& t) -> Result<void> {
        if (auto r = putCursor(t, "undone", 2); !r) {
          return r;
        }
        return fail("test.refused", "this work fails after writing");
      },
      [&](Result<void> r) { second.emplace(std::move(r)); });
  ASSERT_TRUE(q_.runUntil([&] { return first && second; }));
  EXPECT_TRUE(first->has_value());
  ASSERT_FALSE(second->has_value());
  EXPECT_EQ(second->error().code, "test.refused");
  testing::RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT group_concat(webhook) FROM webhook_cursors"), "kept");
}

TEST_F(FeatureTablesTest, TheSchemaHasTheFeatureTables) {
  auto store = open();
  ASSERT_TRUE(store);
  store.reset();
  testing::RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT max(version) FROM schema_migrations"), "5");
  for (const char* table : {"webhook_cursors", "sync_folders", "synced_messages"}) {
    EXPECT_EQ(
        raw.scalar(std::string("SELECT count(*) FROM sqlite_master WHERE name = '") + table + "'"),
        "1")
        << table;
  }
}

} // namespace
} // namespace mailgate::store

// The sync side of the SQLite store (gateway/store/sync_tables.h): a commit stores the folder
// state, the messages and one message.received per new message in one transaction; a batch
// committed twice (a restart between fetch and commit) emits nothing twice; flag updates emit
// message.updated only for real changes; a reset emits mailbox.reset and keeps old messages.
#include "gateway/store/sync_tables.h"
#include "tests/gateway/store/store_test_support.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <string>

namespace mailgate::store {
namespace {

using testing::await;

class SyncTablesTest : public testing::StoreFixture {
protected:
  imap::SyncOwner owner{"acme", "rep1@acme.example"};

  imap::FolderSyncState inbox(uint32_t low, uint32_t top, uint64_t done) {
    imap::FolderSyncState s;
    s.role = "inbox";
    s.name = "INBOX";
    s.uidvalidity = 77;
    s.top_uid = top;
    s.low_uid = low;
    s.total = 10;
    s.done = done;
    s.started_ms = testing::kT0;
    s.updated_ms = testing::kT0;
    return s;
  }
  static imap::FetchedMessage message(uint32_t uid) {
    imap::FetchedMessage m;
    m.uid = uid;
    m.flags = {"\\Seen"};
    m.internal_date = "03-Dec-2026 10:00:00 +0000";
    m.raw = "Subject: " + std::to_string(uid) + "\r\n\r\nbody\r\n";
    m.size = m.raw.size();
    m.message_id = "<m" + std::to_string(uid) + "@t>";
    m.subject = "s" + std::to_string(uid);
    m.from = {{"Prospect", "p@example.test"}};
    m.to = {{"", "rep1@acme.example"}};
    return m;
  }
  Result<uint64_t> commit(SqliteSyncStore& s, imap::SyncCommit c) {
    return await<uint64_t>(q_, [&](auto done) { s.commit(std::move(c), done); });
  }
  std::vector<StoredEvent> ofType(SqliteQueueStore& s, std::string_view type) {
    std::vector<StoredEvent> out;
    for (auto& e : allEvents(s)) {
      if (e.type == type) {
        out.push_back(std::move(e));
      }
    }
    return out;
  }
};

TEST_F(SyncTablesTest, ACommitStoresStateMessagesAndOneEventEachAndARepeatEmitsNothing) {
  auto store = open();
  ASSERT_TRUE(store);
  SqliteSyncStore sync(*store);
  imap::SyncCommit c;
  c.owner = owner;
  c.direction = "incoming";
  c.state = inbox(9, 10, 2);
  c.messages = {message(10), message(9)};
  auto added = commit(sync, c);
  ASSERT_TRUE(added.has_value()) << added.error().describe();
  EXPECT_EQ(*added, 2u);
  auto again = commit(sync, c);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, 0u);

  auto received = ofType(*store, "message.received");
  ASSERT_EQ(received.size(), 2u);
  auto data = nlohmann::json::parse(received[0].data);
  EXPECT_EQ(data["message_id"], "<m10@t>");
  EXPECT_EQ(data["folder"], "INBOX");
  EXPECT_EQ(data["folder_role"], "inbox");
  EXPECT_EQ(data["uid"], 10);
  EXPECT_EQ(data["uidvalidity"], 77);
  EXPECT_EQ(data["from"], "p@example.test");
  EXPECT_EQ(data["to"], nlohmann::json::array({"rep1@acme.example"}));
  EXPECT_EQ(received[0].tenant, "acme");
  EXPECT_EQ(received[0].mailbox, "rep1@acme.example");

  auto folders = await<std::vector<imap::FolderSyncState>>(
      q_, [&](auto done) { sync.loadFolders(owner, done); });
  ASSERT_TRUE(folders.has_value());
  ASSERT_EQ(folders->size(), 1u);
  EXPECT_EQ(folders->at(0), c.state);
  // Another case of the same address finds the same state.
  auto upper = await<std::vector<imap::FolderSyncState>>(q_, [&](auto done) {
    sync.loadFolders(imap::SyncOwner{"acme", "REP1@acme.example"}, done);
  });
  ASSERT_TRUE(upper.has_value());
  EXPECT_EQ(upper->size(), 1u);
  testing::RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT raw FROM synced_messages WHERE uid = 9"), message(9).raw);
}

TEST_F(SyncTablesTest, FlagUpdatesEmitOnlyRealChangesInAnyOrder) {
  auto store = open();
  ASSERT_TRUE(store);
  SqliteSyncStore sync(*store);
  imap::SyncCommit c;
  c.owner = owner;
  c.direction = "incoming";
  c.state = inbox(9, 10, 2);
  c.messages = {message(10), message(9)};
  ASSERT_TRUE(commit(sync, c).has_value());
  std::vector<imap::SyncStore::FlagUpdate> flags{{10, {"\\Seen"}},             // unchanged
                                                 {9, {"\\Seen", "\\Flagged"}}, // changed
                                                 {4, {"\\Seen"}}}; // never synced: ignored
  auto changed =
      await<uint64_t>(q_, [&](auto done) { sync.updateFlags(owner, c.state, flags, done); });
  ASSERT_TRUE(changed.has_value()) << changed.error().describe();
  EXPECT_EQ(*changed, 1u);
  // The same flags listed in another order are no change.
  flags = {{9, {"\\Flagged", "\\Seen"}}};
  changed = await<uint64_t>(q_, [&](auto done) { sync.updateFlags(owner, c.state, flags, done); });
  ASSERT_TRUE(changed.has_value());
  EXPECT_EQ(*changed, 0u);
  auto updated = ofType(*store, "message.updated");
  ASSERT_EQ(updated.size(), 1u);
  auto data = nlohmann::json::parse(updated[0].data);
  EXPECT_EQ(data["message_id"], "<m9@t>");
  EXPECT_EQ(data["uid"], 9);
  EXPECT_EQ(data["previous_flags"], nlohmann::json::array({"\\Seen"}));
}

TEST_F(SyncTablesTest, AResetEmitsMailboxResetAndKeepsTheOldMessages) {
  auto store = open();
  ASSERT_TRUE(store);
  SqliteSyncStore sync(*store);
  imap::SyncCommit c;
  c.owner = owner;
  c.direction = "incoming";
  c.state = inbox(10, 10, 1);
  c.messages = {message(10)};
  ASSERT_TRUE(commit(sync, c).has_value());
  imap::FolderSyncState fresh;
  fresh.role = "inbox";
  fresh.name = "INBOX";
  fresh.uidvalidity = 78;
  auto r = await<void>(q_, [&](auto done) { sync.reset(owner, fresh, 77, done); });
  ASSERT_TRUE(r.has_value()) << r.error().describe();
  auto resets = ofType(*store, "mailbox.reset");
  ASSERT_EQ(resets.size(), 1u);
  auto data = nlohmann::json::parse(resets[0].data);
  EXPECT_EQ(data["old_uidvalidity"], 77);
  EXPECT_EQ(data["uidvalidity"], 78);
  EXPECT_EQ(data["folder_role"], "inbox");
  // The same UID under the new UIDVALIDITY is a new message.
  c.state = inbox(10, 10, 1);
  c.state.uidvalidity = 78;
  auto added = commit(sync, c);
  ASSERT_TRUE(added.has_value());
  EXPECT_EQ(*added, 1u);
  testing::RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM synced_messages"), "2");
}

} // namespace
} // namespace mailgate::store

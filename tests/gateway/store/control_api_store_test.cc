// What the control API reads and writes through the SQLite store: counts within a tenant scope,
// the schema 3 migration, and reads that cost no fsync and do not wait for the write lock.
#include "gateway/store/schema.h"
#include "gateway/store/sqlite_db.h"
#include "gateway/store/sqlite_queue_store.h"
#include "tests/gateway/store/store_test_support.h"

#include <atomic>
#include <gtest/gtest.h>
#include <optional>
#include <sqlite3.h>
#include <string>
#include <vector>

namespace mailgate::store {
namespace {

using relay::AttemptOutcome;
using relay::DeliveryResult;
using relay::MessageState;
using relay::NewMessage;
using relay::QueueCounts;
using relay::QueuedMessage;
using testing::await;
using testing::kDay;
using testing::kT0;
using testing::RawDb;

// The default VFS with every file's xSync counted: how a test sees an fsync. Registered as the
// default while it lives; every connection opened through it must be closed first.
class SyncCountingVfs {
public:
  SyncCountingVfs() : base_(sqlite3_vfs_find(nullptr)) {
    vfs_ = *base_;
    vfs_.zName = "mailgate-sync-counter";
    vfs_.szOsFile = static_cast<int>(sizeof(File)) + base_->szOsFile;
    vfs_.pAppData = this;
    vfs_.xOpen = &SyncCountingVfs::open;
    sqlite3_vfs_register(&vfs_, 1);
  }
  ~SyncCountingVfs() {
    sqlite3_vfs_unregister(&vfs_);
    sqlite3_vfs_register(base_, 1);
  }
  SyncCountingVfs(const SyncCountingVfs&) = delete;
  SyncCountingVfs& operator=(const SyncCountingVfs&) = delete;

  [[nodiscard]] int syncs() const { return syncs_.load(); }

private:
  // Our header, then the base VFS's own file object in the same allocation.
  struct File {
    sqlite3_file base;
    sqlite3_file* real;
    SyncCountingVfs* owner;
  };
  static sqlite3_file* real(sqlite3_file* f) { return reinterpret_cast<File*>(f)->real; }

  static int open(sqlite3_vfs* vfs, const char* name, sqlite3_file* f, int flags, int* out) {
    auto* self = static_cast<SyncCountingVfs*>(vfs->pAppData);
    auto* file = reinterpret_cast<File*>(f);
    file->real = reinterpret_cast<sqlite3_file*>(file + 1);
    file->owner = self;
    const int rc = self->base_->xOpen(self->base_, name, file->real, flags, out);
    file->base.pMethods = rc == SQLITE_OK && file->real->pMethods != nullptr ? &kMethods : nullptr;
    return rc;
  }

  static int close(sqlite3_file* f) { return real(f)->pMethods->xClose(real(f)); }
  static int read(sqlite3_file* f, void* p, int n, sqlite3_int64 off) {
    return real(f)->pMethods->xRead(real(f), p, n, off);
  }
  static int write(sqlite3_file* f, const void* p, int n, sqlite3_int64 off) {
    return real(f)->pMethods->xWrite(real(f), p, n, off);
  }
  static int truncate(sqlite3_file* f, sqlite3_int64 size) {
    return real(f)->pMethods->xTruncate(real(f), size);
  }
  static int sync(sqlite3_file* f, int flags) {
    reinterpret_cast<File*>(f)->owner->syncs_.fetch_add(1);
    return real(f)->pMethods->xSync(real(f), flags);
  }
  static int fileSize(sqlite3_file* f, sqlite3_int64* size) {
    return real(f)->pMethods->xFileSize(real(f), size);
  }
  static int lock(sqlite3_file* f, int level) { return real(f)->pMethods->xLock(real(f), level); }
  static int unlock(sqlite3_file* f, int level) {
    return real(f)->pMethods->xUnlock(real(f), level);
  }
  static int checkReservedLock(sqlite3_file* f, int* out) {
    return real(f)->pMethods->xCheckReservedLock(real(f), out);
  }
  static int fileControl(sqlite3_file* f, int op, void* arg) {
    return real(f)->pMethods->xFileControl(real(f), op, arg);
  }
  static int sectorSize(sqlite3_file* f) { return real(f)->pMethods->xSectorSize(real(f)); }
  static int deviceCharacteristics(sqlite3_file* f) {
    return real(f)->pMethods->xDeviceCharacteristics(real(f));
  }
  static int shmMap(sqlite3_file* f, int page, int size, int extend, void volatile** out) {
    return real(f)->pMethods->xShmMap(real(f), page, size, extend, out);
  }
  static int shmLock(sqlite3_file* f, int offset, int n, int flags) {
    return real(f)->pMethods->xShmLock(real(f), offset, n, flags);
  }
  static void shmBarrier(sqlite3_file* f) { real(f)->pMethods->xShmBarrier(real(f)); }
  static int shmUnmap(sqlite3_file* f, int del) {
    return real(f)->pMethods->xShmUnmap(real(f), del);
  }
  static int fetch(sqlite3_file* f, sqlite3_int64 off, int n, void** out) {
    return real(f)->pMethods->xFetch(real(f), off, n, out);
  }
  static int unfetch(sqlite3_file* f, sqlite3_int64 off, void* p) {
    return real(f)->pMethods->xUnfetch(real(f), off, p);
  }

  static constexpr sqlite3_io_methods kMethods = {3,
                                                  &close,
                                                  &read,
                                                  &write,
                                                  &truncate,
                                                  &sync,
                                                  &fileSize,
                                                  &lock,
                                                  &unlock,
                                                  &checkReservedLock,
                                                  &fileControl,
                                                  &sectorSize,
                                                  &deviceCharacteristics,
                                                  &shmMap,
                                                  &shmLock,
                                                  &shmBarrier,
                                                  &shmUnmap,
                                                  &fetch,
                                                  &unfetch};

  sqlite3_vfs* base_;
  sqlite3_vfs vfs_{};
  std::atomic<int> syncs_{0};
};

NewMessage message(int64_t now = kT0, std::string tenant = "acme",
                   std::string mailbox = "rep1@acme.example", std::string route = "microsoft365") {
  NewMessage m;
  m.mail_from = mailbox.empty() ? "crm@example.com" : mailbox;
  m.recipients = {"bob@example.net", "carol@example.org"};
  m.body = "Subject: hi\r\n\r\nhello\r\n";
  m.submitter = "crm";
  m.tenant = std::move(tenant);
  m.mailbox = std::move(mailbox);
  m.message_id = "<abc@acme.example>";
  m.route = std::move(route);
  m.now_ms = now;
  m.expires_at_ms = now + 5 * kDay;
  return m;
}

// Counts as text, so that a mismatch prints both sides.
std::string show(const QueueCounts& c) {
  return "queued " + std::to_string(c.queued) + ", sending " + std::to_string(c.sending) +
         ", deferred " + std::to_string(c.deferred) + ", sent " + std::to_string(c.sent) +
         ", failed " + std::to_string(c.failed);
}

std::string counts(uint64_t queued, uint64_t sending, uint64_t deferred, uint64_t sent,
                   uint64_t failed) {
  QueueCounts c;
  c.queued = queued;
  c.sending = sending;
  c.deferred = deferred;
  c.sent = sent;
  c.failed = failed;
  return show(c);
}

class ControlApiStoreTest : public testing::StoreFixture {
protected:
  Result<QueueCounts> countsFor(SqliteQueueStore& s, std::vector<std::string> tenants) {
    return await<QueueCounts>(q_, [&](auto done) { s.countsFor(std::move(tenants), done); });
  }
  std::string countsForOk(SqliteQueueStore& s, std::vector<std::string> tenants) {
    auto c = countsFor(s, std::move(tenants));
    EXPECT_TRUE(c.has_value()) << (c ? "" : c.error().describe());
    return show(c.value_or(QueueCounts{}));
  }
  // Drives a queued message to `state` through the delivery calls.
  void moveTo(SqliteQueueStore& s, const std::string& id, MessageState state) {
    if (state == MessageState::kQueued) {
      return;
    }
    ASSERT_TRUE(markSending(s, id, kT0 + 1).has_value());
    if (state == MessageState::kSending) {
      return;
    }
    AttemptOutcome o;
    o.id = id;
    o.now_ms = kT0 + 2;
    o.next_attempt_ms = kT0 + 60'000;
    const DeliveryResult each = state == MessageState::kSent     ? DeliveryResult::kSent
                                : state == MessageState::kFailed ? DeliveryResult::kPermFail
                                                                 : DeliveryResult::kTempFail;
    o.recipients = {{"bob@example.net", each, "250 or 5xx or 4xx"},
                    {"carol@example.org", each, "250 or 5xx or 4xx"}};
    auto r = record(s, o);
    ASSERT_TRUE(r.has_value()) << r.error().describe();
    ASSERT_EQ(r->state, state);
  }
  // message_counts against a count of the rows themselves.
  void expectCountersMatchRows() {
    RawDb raw(dbFile());
    const auto counted = raw.rows("SELECT tenant, state, n FROM message_counts WHERE n <> 0 "
                                  "ORDER BY tenant, state");
    const auto actual = raw.rows("SELECT tenant, state, count(*) FROM messages "
                                 "GROUP BY tenant, state ORDER BY tenant, state");
    EXPECT_EQ(counted, actual);
  }
};

TEST_F(ControlApiStoreTest, CountsWithinAScopeFollowEveryStateChange) {
  auto store = open();
  ASSERT_TRUE(store);
  // acme: 2 queued, 1 sending, 1 deferred, 1 sent, 1 failed; globex: 1 queued, 1 sent;
  // no tenant: 1 queued.
  const std::vector<std::pair<std::string, MessageState>> plan = {
      {"acme", MessageState::kQueued},   {"acme", MessageState::kQueued},
      {"acme", MessageState::kSending},  {"acme", MessageState::kDeferred},
      {"acme", MessageState::kSent},     {"acme", MessageState::kFailed},
      {"globex", MessageState::kQueued}, {"globex", MessageState::kSent},
      {"", MessageState::kQueued},
  };
  for (const auto& [tenant, state] : plan) {
    const std::string id = enqueueOk(*store, message(kT0, tenant));
    moveTo(*store, id, state);
  }
  expectCountersMatchRows();

  const std::string acme = counts(2, 1, 1, 1, 1);
  const std::string globex = counts(1, 0, 0, 1, 0);
  const std::string both = counts(3, 1, 1, 2, 1);
  const std::string all = counts(4, 1, 1, 2, 1);
  const std::string none = counts(0, 0, 0, 0, 0);
  EXPECT_EQ(countsForOk(*store, {"*"}), all);
  EXPECT_EQ(show(await<QueueCounts>(q_, [&](auto done) { store->counts(done); }).value()), all);
  EXPECT_EQ(countsForOk(*store, {"acme"}), acme);
  EXPECT_EQ(countsForOk(*store, {"globex"}), globex);
  EXPECT_EQ(countsForOk(*store, {"acme", "globex"}), both);
  EXPECT_EQ(countsForOk(*store, {"acme", "acme", "globex"}), both); // each tenant once
  EXPECT_EQ(countsForOk(*store, {"initech"}), none);
  EXPECT_EQ(countsForOk(*store, {""}), none); // no tenant: only under "*"
  EXPECT_EQ(countsForOk(*store, {}), none);
  EXPECT_EQ(countsForOk(*store, {"*", "acme"}), acme); // "*" means all only alone

  // Expiry and cancellation move counts too; so does the recovery of a crash's "sending".
  RawDb raw(dbFile());
  const std::string sending =
      raw.scalar("SELECT id FROM messages WHERE state = 'sending' AND tenant = 'acme'");
  auto recovered = store->recover(kT0 + 10);
  ASSERT_TRUE(recovered.has_value());
  EXPECT_EQ(countsForOk(*store, {"acme"}), counts(3, 0, 1, 1, 1));
  const std::string queued =
      raw.scalar("SELECT id FROM messages WHERE state = 'queued' AND tenant = 'globex'");
  ASSERT_TRUE(await<QueuedMessage>(q_, [&](auto done) {
                store->cancel(queued, kT0 + 20, "ops", done);
              }).has_value());
  EXPECT_EQ(countsForOk(*store, {"globex"}), counts(0, 0, 0, 1, 1));
  expectCountersMatchRows();
}

TEST_F(ControlApiStoreTest, ADatabaseFromSchemaVersion2IsMigrated) {
  // The database as the previous mailgated left it: schema 2, messages of two tenants in
  // several states.
  {
    auto db = SqliteDb::open(dbFile());
    ASSERT_TRUE(db.has_value()) << db.error().describe();
    ASSERT_TRUE(migrateSchema(*db, kT0, 2).has_value());
    ASSERT_TRUE(db->exec("INSERT INTO bodies (body_id, data) VALUES (1, X'48690D0A')").has_value());
    const std::vector<std::tuple<std::string, std::string, std::string>> rows = {
        {"01OLD00000000000000000000A", "acme", "queued"},
        {"01OLD00000000000000000000B", "acme", "sent"},
        {"01OLD00000000000000000000C", "acme", "sent"},
        {"01OLD00000000000000000000D", "globex", "deferred"},
        {"01OLD00000000000000000000E", "", "failed"},
    };
    for (const auto& [id, tenant, state] : rows) {
      ASSERT_TRUE(db->exec("INSERT INTO messages (id, body_id, state, mail_from, submitter, "
                           "tenant, mailbox, message_id, route, smtputf8, body_8bit, size, "
                           "attempts, created_ms, updated_ms, next_attempt_ms, expires_at_ms, "
                           "last_reply) VALUES ('" +
                           id + "', 1, '" + state + "', 'rep1@acme.example', 'crm', '" + tenant +
                           "', 'rep1@acme.example', '', 'default', 0, 0, 4, 0, 1, 1, 1, "
                           "9999999999999, '');"
                           "INSERT INTO recipients (message, idx, address, status, last_reply, "
                           "updated_ms) VALUES ('" +
                           id + "', 0, 'x@example.net', 'pending', '', 1)")
                      .has_value());
    }
  }
  auto store = open();
  ASSERT_TRUE(store);
  RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT group_concat(version) FROM schema_migrations"), "1,2,3");
  EXPECT_EQ(raw.scalar("SELECT group_concat(name) FROM (SELECT name FROM sqlite_master WHERE "
                       "type = 'index' AND name LIKE 'messages_by_%' ORDER BY name)"),
            "messages_by_mailbox,messages_by_route,messages_by_state,messages_by_tenant");
  // The counters start from the rows that were there.
  expectCountersMatchRows();
  EXPECT_EQ(countsForOk(*store, {"*"}), counts(1, 0, 1, 2, 1));
  EXPECT_EQ(countsForOk(*store, {"acme"}), counts(1, 0, 0, 2, 0));
  // And follow changes to old rows.
  ASSERT_TRUE(markSending(*store, "01OLD00000000000000000000A", kT0).has_value());
  EXPECT_EQ(countsForOk(*store, {"acme"}), counts(0, 1, 0, 2, 0));
  expectCountersMatchRows();
}

TEST_F(ControlApiStoreTest, ABatchOfReadsCostsNoFsync) {
  SyncCountingVfs vfs;
  {
    auto store = open();
    ASSERT_TRUE(store);
    const int before_write = vfs.syncs();
    const std::string id = enqueueOk(*store, message());
    // The counter sees the commit's fsync: otherwise the zero below would prove nothing.
    const int after_write = vfs.syncs();
    EXPECT_GT(after_write, before_write);
    const uint64_t commits = store->stats().commits;

    // Every read the API makes, issued together so that they share batches.
    size_t done = 0;
    const auto count = [&](const auto& r) {
      EXPECT_TRUE(r.has_value());
      ++done;
    };
    store->get(id, [&](Result<QueuedMessage> r) { count(r); });
    store->loadBody(id, [&](Result<std::string> r) { count(r); });
    store->counts([&](Result<QueueCounts> r) { count(r); });
    store->listEvents(0, 10, [&](Result<std::vector<StoredEvent>> r) { count(r); });
    ASSERT_TRUE(q_.runUntil([&] { return done == 4; }));
    EXPECT_EQ(vfs.syncs(), after_write);
    EXPECT_EQ(store->stats().commits, commits);
  }
}

TEST_F(ControlApiStoreTest, ReadsAtTheHeadOfABatchDoNotWaitForTheWriteLock) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string id = enqueueOk(*store, message());
  // An operator's shell holds the write lock: the enqueue below waits for it (busy timeout),
  // the read issued before it does not.
  RawDb raw(dbFile());
  ASSERT_EQ(raw.exec("BEGIN IMMEDIATE"), SQLITE_OK);
  std::optional<Result<QueuedMessage>> read;
  std::optional<Result<std::string>> written;
  store->get(id, [&](Result<QueuedMessage> r) { read = std::move(r); });
  store->enqueue(message(kT0 + 1), [&](Result<std::string> r) { written = std::move(r); });
  ASSERT_TRUE(q_.runUntil([&] { return read.has_value(); }));
  ASSERT_TRUE(read->has_value()) << read->error().describe();
  EXPECT_EQ((*read)->id, id);
  EXPECT_FALSE(written.has_value());
  ASSERT_EQ(raw.exec("ROLLBACK"), SQLITE_OK);
  ASSERT_TRUE(q_.runUntil([&] { return written.has_value(); }));
  EXPECT_TRUE(written->has_value());
}

TEST_F(ControlApiStoreTest, AReadBehindAWriteSeesItAndCompletesAfterIt) {
  auto store = open();
  ASSERT_TRUE(store);
  std::vector<std::string> order;
  std::string id;
  RawDb raw(dbFile());
  // The enqueue waits for the lock; the read queued behind it runs after its commit, in its
  // batch or in the next one.
  ASSERT_EQ(raw.exec("BEGIN IMMEDIATE"), SQLITE_OK);
  store->enqueue(message(), [&](Result<std::string> r) {
    order.push_back("enqueue");
    id = r.value_or("");
  });
  store->counts([&](Result<QueueCounts> r) {
    order.push_back("counts");
    EXPECT_EQ(r.value_or(QueueCounts{}).queued, 1u);
  });
  ASSERT_EQ(raw.exec("ROLLBACK"), SQLITE_OK);
  ASSERT_TRUE(q_.runUntil([&] { return order.size() == 2; }));
  EXPECT_EQ(order, (std::vector<std::string>{"enqueue", "counts"}));
}

} // namespace
} // namespace mailgate::store

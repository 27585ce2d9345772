// What the control API reads and writes through the SQLite store: idempotent enqueue, the queue
// listing and its index plans, a message's history, counts within a tenant scope, the schema 3
// migration, the new-events signal, and reads that cost no fsync and do not wait for the write
// lock.
#include "gateway/store/message_lister.h"
#include "gateway/store/schema.h"
#include "gateway/store/sqlite_db.h"
#include "gateway/store/sqlite_queue_store.h"
#include "tests/gateway/store/store_test_support.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <gtest/gtest.h>
#include <optional>
#include <set>
#include <sqlite3.h>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
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
using testing::kMinute;
using testing::kT0;
using testing::PostQueue;
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

IdempotencyKey idemKey(std::string key = "order-1", std::string fingerprint = "fp-1",
                       std::string scope = "crm-token") {
  return IdempotencyKey{std::move(scope), std::move(key), std::move(fingerprint)};
}

constexpr int64_t kHour = 3'600'000;

class ControlApiStoreTest : public testing::StoreFixture {
protected:
  Result<EnqueueOutcome> enqueueKeyed(SqliteQueueStore& s, NewMessage m, IdempotencyKey k) {
    return await<EnqueueOutcome>(
        q_, [&](auto done) { s.enqueueIdempotent(std::move(m), std::move(k), done); });
  }
  EnqueueOutcome enqueueKeyedOk(SqliteQueueStore& s, NewMessage m, IdempotencyKey k) {
    auto r = enqueueKeyed(s, std::move(m), std::move(k));
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().describe());
    return r.value_or(EnqueueOutcome{});
  }
  // What a write leaves behind, table by table.
  std::string rowCounts() {
    RawDb raw(dbFile());
    std::string out;
    for (const char* table : {"messages", "bodies", "recipients", "events", "idempotency_keys"}) {
      out += std::string(table) + " " + raw.scalar(std::string("SELECT count(*) FROM ") + table) +
             "; ";
    }
    return out;
  }
  // A store whose purge clock reads `clock_ms_`.
  std::unique_ptr<SqliteQueueStore> openWithClock(SqliteStoreOptions o = {}) {
    o.clock = [this] { return clock_ms_.load(); };
    return open(std::move(o));
  }
  std::atomic<int64_t> clock_ms_{kT0};

  Result<MessagePage> list(SqliteQueueStore& s, MessageQuery q) {
    return await<MessagePage>(q_, [&](auto done) { s.listMessages(std::move(q), done); });
  }
  // Every page of `q` from the start; fails the test on a page that breaks the paging rules.
  std::vector<std::string> listAll(SqliteQueueStore& s, MessageQuery q) {
    std::vector<std::string> ids;
    const size_t limit = std::clamp<size_t>(q.limit, 1, kMaxPageLimit);
    for (int pages = 0; pages < 100000; ++pages) {
      auto page = list(s, q);
      EXPECT_TRUE(page.has_value()) << (page ? "" : page.error().describe());
      if (!page) {
        break;
      }
      EXPECT_LE(page->messages.size(), limit);
      for (const auto& m : page->messages) {
        ids.push_back(m.id);
      }
      if (page->next.empty()) {
        break;
      }
      // Only the last page is short, and `next` is where this one ended.
      EXPECT_EQ(page->messages.size(), limit);
      EXPECT_EQ(page->next, page->messages.back().id);
      q.after = page->next;
    }
    return ids;
  }

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
  EXPECT_EQ(raw.scalar("SELECT group_concat(version) FROM schema_migrations"), "1,2,3,4,5");
  EXPECT_EQ(raw.scalar("SELECT group_concat(name) FROM (SELECT name FROM sqlite_master WHERE "
                       "type = 'index' AND name LIKE 'messages_by_%' ORDER BY name)"),
            "messages_by_mailbox,messages_by_route,messages_by_state,messages_by_tenant");
  // The counters start from the rows that were there.
  expectCountersMatchRows();
  EXPECT_EQ(countsForOk(*store, {"*"}), counts(1, 0, 1, 2, 1));
  EXPECT_EQ(countsForOk(*store, {"acme"}), counts(1, 0, 0, 2, 0));
  // The old rows are listed through the new indexes.
  MessageQuery q;
  q.tenants = {"acme"};
  q.newest_first = false;
  auto page = await<MessagePage>(q_, [&](auto done) { store->listMessages(q, done); });
  ASSERT_TRUE(page.has_value());
  ASSERT_EQ(page->messages.size(), 3u);
  EXPECT_EQ(page->messages[0].id, "01OLD00000000000000000000A");
  EXPECT_EQ(page->messages[2].id, "01OLD00000000000000000000C");
  EXPECT_EQ(page->messages[0].recipients.size(), 1u);
  q.tenants = {"*"};
  q.mailbox = "REP1@acme.example";
  q.state = MessageState::kFailed;
  page = await<MessagePage>(q_, [&](auto done) { store->listMessages(q, done); });
  ASSERT_TRUE(page.has_value());
  ASSERT_EQ(page->messages.size(), 1u);
  EXPECT_EQ(page->messages[0].id, "01OLD00000000000000000000E");
  // And follow changes to old rows.
  ASSERT_TRUE(markSending(*store, "01OLD00000000000000000000A", kT0).has_value());
  EXPECT_EQ(countsForOk(*store, {"acme"}), counts(0, 1, 0, 2, 0));
  expectCountersMatchRows();
}

TEST_F(ControlApiStoreTest, AReplayReturnsTheFirstAnswerAndStoresNothing) {
  auto store = openWithClock();
  ASSERT_TRUE(store);
  const EnqueueOutcome first = enqueueKeyedOk(*store, message(), idemKey());
  EXPECT_FALSE(first.replayed);
  ASSERT_EQ(first.id.size(), 26u);
  const std::string after_first = rowCounts();
  EXPECT_EQ(after_first, "messages 1; bodies 1; recipients 2; events 1; idempotency_keys 1; ");

  // The retry: same key, same request, a little later.
  const EnqueueOutcome again = enqueueKeyedOk(*store, message(kT0 + kMinute), idemKey());
  EXPECT_TRUE(again.replayed);
  EXPECT_EQ(again.id, first.id);
  EXPECT_EQ(again.message.id, first.id);
  EXPECT_EQ(again.message.state, MessageState::kQueued);
  ASSERT_EQ(again.message.recipients.size(), 2u);
  EXPECT_EQ(again.message.recipients[1].address, "carol@example.org");
  EXPECT_EQ(again.message.created_ms, kT0);
  EXPECT_EQ(rowCounts(), after_first);

  // The message as it is now, not as it was.
  moveTo(*store, first.id, MessageState::kSent);
  const std::string after_delivery = rowCounts();
  const EnqueueOutcome later = enqueueKeyedOk(*store, message(kT0 + kHour), idemKey());
  EXPECT_TRUE(later.replayed);
  EXPECT_EQ(later.id, first.id);
  EXPECT_EQ(later.message.state, MessageState::kSent);
  EXPECT_EQ(later.message.recipients[0].status, relay::RecipientStatus::kSent);
  EXPECT_EQ(rowCounts(), after_delivery);

  // A plain enqueue is not affected by keys.
  enqueueOk(*store, message());
  EXPECT_EQ(RawDb(dbFile()).scalar("SELECT count(*) FROM messages"), "2");
}

TEST_F(ControlApiStoreTest, AKeyReusedForAnotherRequestIsRefusedAndKeysOfOtherTokensNeverMeet) {
  auto store = openWithClock();
  ASSERT_TRUE(store);
  const EnqueueOutcome first = enqueueKeyedOk(*store, message(), idemKey("k", "fp-1"));
  const std::string before = rowCounts();

  auto misuse = enqueueKeyed(*store, message(kT0 + kMinute), idemKey("k", "fp-2"));
  ASSERT_FALSE(misuse.has_value());
  EXPECT_EQ(misuse.error().code, "store.idempotency_mismatch");
  EXPECT_NE(misuse.error().message.find("first used at 2026-09-21T14:13:20"), std::string::npos)
      << misuse.error().message;
  EXPECT_NE(misuse.error().hint.find("new Idempotency-Key"), std::string::npos)
      << misuse.error().hint;
  EXPECT_EQ(rowCounts(), before);

  // The same key from another token is another key.
  const EnqueueOutcome other = enqueueKeyedOk(*store, message(), idemKey("k", "fp-2", "other"));
  EXPECT_FALSE(other.replayed);
  EXPECT_NE(other.id, first.id);
  // And the first token's key still replays.
  EXPECT_EQ(enqueueKeyedOk(*store, message(), idemKey("k", "fp-1")).id, first.id);

  // Keys the API should never let through.
  EXPECT_EQ(enqueueKeyed(*store, message(), idemKey("")).error().code, "store.invalid");
  EXPECT_EQ(enqueueKeyed(*store, message(), idemKey(std::string(256, 'k'))).error().code,
            "store.invalid");
  EXPECT_TRUE(enqueueKeyed(*store, message(), idemKey(std::string(255, 'k'))).has_value());
  // Everything enqueue refuses is refused, and no key is left behind.
  NewMessage empty = message();
  empty.recipients.clear();
  EXPECT_EQ(enqueueKeyed(*store, empty, idemKey("no-rcpt")).error().code, "store.invalid");
  EXPECT_EQ(RawDb(dbFile()).scalar("SELECT count(*) FROM idempotency_keys WHERE key = 'no-rcpt'"),
            "0");
}

TEST_F(ControlApiStoreTest, AKeyIsForgottenAfterItsRetention) {
  auto store = openWithClock();
  ASSERT_TRUE(store);
  const EnqueueOutcome first = enqueueKeyedOk(*store, message(kT0), idemKey());
  // Just inside 24 h: still the first message.
  const EnqueueOutcome inside = enqueueKeyedOk(*store, message(kT0 + 24 * kHour - 1), idemKey());
  EXPECT_TRUE(inside.replayed);
  EXPECT_EQ(inside.id, first.id);
  // 24 h after first use, the key is forgotten: a new message, and the key now names it.
  const EnqueueOutcome after = enqueueKeyedOk(*store, message(kT0 + 24 * kHour), idemKey());
  EXPECT_FALSE(after.replayed);
  EXPECT_NE(after.id, first.id);
  const EnqueueOutcome replay =
      enqueueKeyedOk(*store, message(kT0 + 24 * kHour + 1), idemKey("order-1", "fp-1"));
  EXPECT_EQ(replay.id, after.id);
  // Nor is a forgotten key a mismatch.
  const EnqueueOutcome reused =
      enqueueKeyedOk(*store, message(kT0 + 48 * kHour), idemKey("order-1", "fp-other"));
  EXPECT_FALSE(reused.replayed);
  EXPECT_EQ(RawDb(dbFile()).scalar("SELECT count(*) FROM messages"), "3");
}

TEST_F(ControlApiStoreTest, TheRetentionIsAnOption) {
  SqliteStoreOptions o;
  o.idempotency_ttl = std::chrono::hours(1);
  auto store = openWithClock(o);
  ASSERT_TRUE(store);
  const EnqueueOutcome first = enqueueKeyedOk(*store, message(kT0), idemKey());
  EXPECT_TRUE(enqueueKeyedOk(*store, message(kT0 + kHour - 1), idemKey()).replayed);
  EXPECT_FALSE(enqueueKeyedOk(*store, message(kT0 + kHour), idemKey()).replayed);

  SqliteStoreOptions bad;
  bad.data_dir = dir_.path();
  bad.post = q_.fn();
  bad.idempotency_ttl = std::chrono::milliseconds(0);
  EXPECT_EQ(openSqliteQueueStore(bad).error().code, "store.config");
  EXPECT_FALSE(first.id.empty());
}

TEST_F(ControlApiStoreTest, ExpiredKeysArePurgedAFewPerWritingBatch) {
  auto store = openWithClock();
  ASSERT_TRUE(store);
  RawDb raw(dbFile());
  // 100 keys from kT0, 10 from a day later.
  for (int i = 0; i < 100; ++i) {
    enqueueKeyedOk(*store, message(kT0), idemKey("old-" + std::to_string(i)));
  }
  for (int i = 0; i < 10; ++i) {
    enqueueKeyedOk(*store, message(kT0 + 24 * kHour), idemKey("new-" + std::to_string(i)));
  }
  ASSERT_EQ(raw.scalar("SELECT count(*) FROM idempotency_keys"), "110");

  // A day and a minute later the old ones are expired, the new ones are not.
  clock_ms_ = kT0 + 24 * kHour + kMinute;
  // Reads write nothing, so they purge nothing.
  ASSERT_TRUE(get(*store, enqueueOk(*store, message())).has_value());
  // That enqueue was a writing batch without keys: it purged 32.
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM idempotency_keys"), "78");
  ASSERT_TRUE(countsFor(*store, {"*"}).has_value());
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM idempotency_keys"), "78");
  // A batch that wrote a key purges 2 more for it: 34.
  enqueueKeyedOk(*store, message(kT0 + 24 * kHour + kMinute), idemKey("newest"));
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM idempotency_keys"), "45");
  // Any write purges: a route state.
  ASSERT_TRUE(await<void>(q_, [&](auto done) {
                store->recordEvent(relay::EventRecord{"route.failover", "acme", "", ""}, done);
              }).has_value());
  ASSERT_TRUE(await<void>(q_, [&](auto done) {
                store->recordEvent(relay::EventRecord{"route.failback", "acme", "", ""}, done);
              }).has_value());
  // Only the 11 unexpired ones are left, and they are never purged early.
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM idempotency_keys"), "11");
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM idempotency_keys WHERE key LIKE 'old-%'"), "0");
  enqueueOk(*store, message());
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM idempotency_keys"), "11");
}

TEST_F(ControlApiStoreTest, TwoRequestsWithOneKeyInOneBatchMakeOneMessage) {
  auto store = openWithClock();
  ASSERT_TRUE(store);
  // An operator's shell holds the write lock; a first enqueue takes the storage thread into
  // waiting for it, so that everything below piles up for the next batch.
  RawDb raw(dbFile());
  ASSERT_EQ(raw.exec("BEGIN IMMEDIATE"), SQLITE_OK);
  std::optional<Result<std::string>> blocker;
  store->enqueue(message(), [&](Result<std::string> r) { blocker = std::move(r); });
  while (store->stats().pending_ops != 0) {
    std::this_thread::yield();
  }
  std::vector<Result<EnqueueOutcome>> out;
  for (const auto& k : {idemKey("dup"), idemKey("dup"), idemKey("dup", "fp-other"), idemKey("dup"),
                        idemKey("solo")}) {
    store->enqueueIdempotent(message(), k,
                             [&](Result<EnqueueOutcome> r) { out.push_back(std::move(r)); });
  }
  ASSERT_EQ(raw.exec("ROLLBACK"), SQLITE_OK);
  ASSERT_TRUE(q_.runUntil([&] { return out.size() == 5; }));
  ASSERT_TRUE(blocker.has_value() && blocker->has_value());
  EXPECT_EQ(store->stats().commits, 2u); // the blocker's batch, then one batch of five
  EXPECT_EQ(store->stats().max_batch, 5u);
  ASSERT_TRUE(out[0].has_value() && out[1].has_value() && out[3].has_value());
  EXPECT_FALSE(out[0]->replayed);
  EXPECT_TRUE(out[1]->replayed);
  EXPECT_TRUE(out[3]->replayed);
  EXPECT_EQ(out[1]->id, out[0]->id);
  EXPECT_EQ(out[3]->id, out[0]->id);
  ASSERT_FALSE(out[2].has_value());
  EXPECT_EQ(out[2].error().code, "store.idempotency_mismatch");
  ASSERT_TRUE(out[4].has_value());
  EXPECT_FALSE(out[4]->replayed);
  EXPECT_EQ(rowCounts(), "messages 3; bodies 3; recipients 6; events 3; idempotency_keys 2; ");
}

TEST_F(ControlApiStoreTest, TheKeyAndTheMessageCommitTogether) {
  // A crash: the child enqueues with a key and dies at once, no destructor, WAL as it is.
  std::array<int, 2> pipefd{};
  ASSERT_EQ(pipe(pipefd.data()), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    PostQueue q;
    SqliteStoreOptions o;
    o.data_dir = dir_.path();
    o.post = q.fn();
    o.clock = [] { return kT0; };
    auto store = openSqliteQueueStore(std::move(o));
    if (!store) {
      _exit(3);
    }
    std::optional<Result<EnqueueOutcome>> r;
    (*store)->enqueueIdempotent(message(), idemKey(),
                                [&](Result<EnqueueOutcome> x) { r = std::move(x); });
    if (!q.runUntil([&] { return r.has_value(); }) || !r->has_value() || (*r)->replayed) {
      _exit(4);
    }
    if (write(pipefd[1], (*r)->id.data(), (*r)->id.size()) != 26) {
      _exit(5);
    }
    _exit(0);
  }
  close(pipefd[1]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  std::string id(26, '\0');
  ASSERT_EQ(read(pipefd[0], id.data(), id.size()), 26);
  close(pipefd[0]);

  auto store = openWithClock();
  ASSERT_TRUE(store);
  const EnqueueOutcome replay = enqueueKeyedOk(*store, message(kT0 + kMinute), idemKey());
  EXPECT_TRUE(replay.replayed);
  EXPECT_EQ(replay.id, id);
  EXPECT_EQ(rowCounts(), "messages 1; bodies 1; recipients 2; events 1; idempotency_keys 1; ");
}

TEST_F(ControlApiStoreTest, AFailedEnqueueLeavesNoKey) {
  SqliteStoreOptions o;
  o.max_db_bytes = 1024 * 1024;
  auto store = openWithClock(o);
  ASSERT_TRUE(store);
  NewMessage big = message();
  big.body = std::string(2 * 1024 * 1024, 'x');
  auto refused = enqueueKeyed(*store, big, idemKey("big"));
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, "store.full");
  EXPECT_EQ(rowCounts(), "messages 0; bodies 0; recipients 0; events 0; idempotency_keys 0; ");
  // Once there is room, the retry stores the message: it was never accepted.
  ASSERT_TRUE(await<void>(q_, [&](auto done) { store->setMaxDbBytes(0, done); }).has_value());
  const EnqueueOutcome stored = enqueueKeyedOk(*store, big, idemKey("big"));
  EXPECT_FALSE(stored.replayed);
  EXPECT_EQ(enqueueKeyedOk(*store, big, idemKey("big")).id, stored.id);
}

// EXPLAIN QUERY PLAN of `sql` on the store's schema, one detail line per row.
std::vector<std::string> planOf(RawDb& raw, const std::string& sql) {
  std::vector<std::string> out;
  for (auto& row : raw.rows("EXPLAIN QUERY PLAN " + sql)) {
    out.push_back(row.back());
  }
  return out;
}

TEST_F(ControlApiStoreTest, EveryListingStatementReadsAnIndexRange) {
  { ASSERT_TRUE(open()); }
  RawDb raw(dbFile());
  for (const auto& sql : MessageLister::sqlTexts()) {
    const auto plan = planOf(raw, sql);
    ASSERT_EQ(plan.size(), 1u) << sql;
    const std::string& step = plan[0];
    EXPECT_EQ(step.find("TEMP B-TREE"), std::string::npos) << sql << ": " << step;
    if (step.rfind("SCAN", 0) == 0) {
      // Only the smallest route overall: the first entry of the index, one row read.
      EXPECT_EQ(step, "SCAN messages USING COVERING INDEX messages_by_route") << sql;
      EXPECT_NE(sql.find("LIMIT 1"), std::string::npos) << sql;
    } else {
      EXPECT_EQ(step.rfind("SEARCH messages USING ", 0), 0u) << sql << ": " << step;
      const bool pk = step.find("PRIMARY KEY") != std::string::npos;
      const bool covering = step.find("COVERING INDEX messages_by_") != std::string::npos;
      EXPECT_TRUE(pk || covering) << sql << ": " << step;
    }
  }
}

// One message of the listing test, as the test expects to find it.
struct Listed {
  std::string id;
  std::string tenant;
  std::string mailbox;
  std::string route;
  MessageState state;
};

bool sameAscii(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// The ids `q` should list, computed from the model.
std::vector<std::string> expectedIds(const std::vector<Listed>& all, const MessageQuery& q) {
  const auto scope = scopedTenants(q.tenants);
  std::vector<std::string> out;
  for (const auto& m : all) {
    if (scope && std::find(scope->begin(), scope->end(), m.tenant) == scope->end()) {
      continue;
    }
    if ((q.state && m.state != *q.state) || (!q.tenant.empty() && m.tenant != q.tenant) ||
        (!q.mailbox.empty() && !sameAscii(m.mailbox, q.mailbox)) ||
        (!q.route.empty() && m.route != q.route)) {
      continue;
    }
    out.push_back(m.id);
  }
  std::sort(out.begin(), out.end());
  if (q.newest_first) {
    std::reverse(out.begin(), out.end());
  }
  return out;
}

class ListingTest : public ControlApiStoreTest {
protected:
  // 1,200 messages over three tenants (one of them empty), mailboxes that differ only in case,
  // one mailbox under two tenants, three routes and all five states.
  void SetUp() override {
    store_ = open();
    ASSERT_TRUE(store_);
    struct Shape {
      std::string tenant, mailbox;
    };
    const std::vector<Shape> shapes = {
        {"acme", "rep1@acme.example"},
        {"acme", "Rep1@ACME.example"},
        {"acme", "rep2@acme.example"},
        {"acme", ""},
        {"globex", "rep1@acme.example"},
        {"globex", "sales@globex.example"},
        {"", ""},
    };
    const std::vector<std::string> routes = {"microsoft365", "relay-a", ""};
    const std::vector<MessageState> states = {MessageState::kQueued, MessageState::kSending,
                                              MessageState::kDeferred, MessageState::kSent,
                                              MessageState::kFailed};
    constexpr size_t kMessages = 1200;
    all_.resize(kMessages);
    size_t stored = 0;
    for (size_t i = 0; i < kMessages; ++i) {
      const Shape& shape = shapes[i % shapes.size()];
      Listed& l = all_[i];
      l.tenant = shape.tenant;
      l.mailbox = shape.mailbox;
      l.route = routes[(i / 7) % routes.size()];
      l.state = states[(i / 3) % states.size()];
      store_->enqueue(message(kT0 + static_cast<int64_t>(i), l.tenant, l.mailbox, l.route),
                      [&, i](Result<std::string> r) {
                        ASSERT_TRUE(r.has_value()) << r.error().describe();
                        all_[i].id = *r;
                        ++stored;
                      });
    }
    ASSERT_TRUE(q_.runUntil([&] { return stored == kMessages; }));
    // Then the delivery calls, all at once, so that they share batches.
    size_t started = 0;
    size_t wanted = 0;
    for (const auto& l : all_) {
      if (l.state != MessageState::kQueued) {
        ++wanted;
        store_->markSending(l.id, kT0 + kMinute,
                            [&](Result<std::string> r) { started += r.has_value() ? 1 : 0; });
      }
    }
    ASSERT_TRUE(q_.runUntil([&] { return started == wanted; }));
    size_t recorded = 0;
    wanted = 0;
    for (const auto& l : all_) {
      if (l.state == MessageState::kQueued || l.state == MessageState::kSending) {
        continue;
      }
      AttemptOutcome o;
      o.id = l.id;
      o.now_ms = kT0 + 2 * kMinute;
      o.next_attempt_ms = kT0 + 10 * kMinute;
      const DeliveryResult each = l.state == MessageState::kSent     ? DeliveryResult::kSent
                                  : l.state == MessageState::kFailed ? DeliveryResult::kPermFail
                                                                     : DeliveryResult::kTempFail;
      o.recipients = {{"bob@example.net", each, "reply"}, {"carol@example.org", each, "reply"}};
      ++wanted;
      store_->recordAttempt(o, [&, state = l.state](Result<QueuedMessage> r) {
        EXPECT_TRUE(r.has_value() && r->state == state);
        ++recorded;
      });
    }
    ASSERT_TRUE(q_.runUntil([&] { return recorded == wanted; }));
  }

  std::unique_ptr<SqliteQueueStore> store_;
  std::vector<Listed> all_;
};

TEST_F(ListingTest, EveryFilterPagesThroughEveryMessageInBothOrdersWithoutGapsOrRepeats) {
  const std::vector<std::vector<std::string>> scopes = {{"*"}, {"acme"}, {"acme", "globex"}};
  const std::vector<std::string> tenants = {"", "acme", "globex"};
  const std::vector<std::string> mailboxes = {"", "REP1@acme.EXAMPLE", "sales@globex.example",
                                              "nobody@example.net"};
  const std::vector<std::string> routes = {"", "microsoft365", "relay-a"};
  std::vector<std::optional<MessageState>> states = {std::nullopt};
  for (auto st : {MessageState::kQueued, MessageState::kSending, MessageState::kDeferred,
                  MessageState::kSent, MessageState::kFailed}) {
    states.emplace_back(st);
  }
  size_t combinations = 0;
  size_t listed = 0;
  for (const auto& scope : scopes) {
    for (const auto& tenant : tenants) {
      for (const auto& mailbox : mailboxes) {
        for (const auto& route : routes) {
          for (const auto& state : states) {
            for (bool newest_first : {true, false}) {
              MessageQuery q;
              q.tenants = scope;
              q.tenant = tenant;
              q.mailbox = mailbox;
              q.route = route;
              q.state = state;
              q.newest_first = newest_first;
              q.limit = combinations % 3 == 0 ? 500 : 37;
              const auto expected = expectedIds(all_, q);
              const auto got = listAll(*store_, q);
              ASSERT_EQ(got, expected)
                  << "scope " << scope.size() << " tenant '" << tenant << "' mailbox '" << mailbox
                  << "' route '" << route << "' state "
                  << (state ? std::string(toString(*state)) : "any") << " newest_first "
                  << newest_first;
              ++combinations;
              listed += got.size();
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(combinations, 1296u);
  EXPECT_GT(listed, 50'000u); // the combinations are not mostly empty
}

TEST_F(ListingTest, APageHoldsWholeMessagesAndLimitsAreClamped) {
  MessageQuery q;
  q.limit = 0; // 1
  auto one = list(*store_, q);
  ASSERT_TRUE(one.has_value());
  ASSERT_EQ(one->messages.size(), 1u);
  EXPECT_EQ(one->messages[0].id, all_.back().id); // newest first by default
  EXPECT_EQ(one->next, all_.back().id);
  ASSERT_EQ(one->messages[0].recipients.size(), 2u);
  EXPECT_EQ(one->messages[0].recipients[0].address, "bob@example.net");
  EXPECT_EQ(one->messages[0].tenant, all_.back().tenant);
  EXPECT_EQ(one->messages[0].created_ms, kT0 + 1199);

  q.limit = 100000; // 500
  auto most = list(*store_, q);
  ASSERT_TRUE(most.has_value());
  EXPECT_EQ(most->messages.size(), kMaxPageLimit);
  EXPECT_FALSE(most->next.empty());

  // Every message in one pass, oldest first, one at a time.
  q.limit = 1;
  q.newest_first = false;
  q.state = MessageState::kDeferred;
  const auto deferred = listAll(*store_, q);
  EXPECT_EQ(deferred, expectedIds(all_, q));
  EXPECT_EQ(deferred.size(), 240u);

  // A cursor from the other order, or one that names no message, still works as a bound.
  q = MessageQuery{};
  q.after = all_[600].id;
  q.limit = 500;
  auto older = list(*store_, q);
  ASSERT_TRUE(older.has_value());
  ASSERT_EQ(older->messages.size(), 500u);
  EXPECT_EQ(older->messages.front().id, all_[599].id);
  q.after = "zzzz";
  q.limit = 1;
  auto past_end = list(*store_, q);
  ASSERT_TRUE(past_end.has_value());
  EXPECT_EQ(past_end->messages.front().id, all_.back().id);
}

TEST_F(ListingTest, TheScopeDecidesWhatCanBeSeen) {
  const auto count = [&](MessageQuery q) {
    q.limit = 500;
    return listAll(*store_, std::move(q)).size();
  };
  MessageQuery q;
  EXPECT_EQ(count(q), 1200u);
  q.tenants = {"acme"};
  EXPECT_EQ(count(q), expectedIds(all_, q).size());
  q.tenant = "globex"; // a filter outside the scope shows nothing
  EXPECT_EQ(count(q), 0u);
  q.tenants = {""}; // the empty tenant only under "*"
  q.tenant.clear();
  EXPECT_EQ(count(q), 0u);
  q.tenants = {};
  EXPECT_EQ(count(q), 0u);
  q.tenants = {"*", "globex"}; // "*" among others is no wildcard
  EXPECT_EQ(count(q), expectedIds(all_, q).size());
  EXPECT_LT(count(q), 1200u);
  q.tenants = {"*"};
  q.tenant = "";
  q.mailbox = "rep1@acme.example"; // under "*", both tenants that have this mailbox
  const auto ids = listAll(*store_, q);
  EXPECT_EQ(ids, expectedIds(all_, q));
  std::set<std::string> seen;
  for (const auto& l : all_) {
    if (std::find(ids.begin(), ids.end(), l.id) != ids.end()) {
      seen.insert(l.tenant);
    }
  }
  EXPECT_EQ(seen, (std::set<std::string>{"acme", "globex"}));
}

TEST_F(ControlApiStoreTest, AListingThatWouldMergeTooManyRangesIsRefused) {
  auto store = open();
  ASSERT_TRUE(store);
  // 201 tenants with one route each: 201 x 5 states = 1005 ranges without a state filter.
  std::vector<std::string> tenants;
  size_t stored = 0;
  for (int i = 0; i < 201; ++i) {
    tenants.push_back("t" + std::to_string(i));
    store->enqueue(message(kT0, tenants.back()),
                   [&](Result<std::string> r) { stored += r.has_value() ? 1 : 0; });
  }
  ASSERT_TRUE(q_.runUntil([&] { return stored == 201; }));
  MessageQuery q;
  q.tenants = tenants;
  auto refused = list(*store, q);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, "store.invalid");
  EXPECT_FALSE(refused.error().hint.empty());
  q.state = MessageState::kQueued; // 201 ranges
  q.limit = 500;
  EXPECT_EQ(listAll(*store, q).size(), 201u);
}

TEST_F(ControlApiStoreTest, AMessagesHistoryIsItsEventsOldestFirst) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string id = enqueueOk(*store, message());
  const std::string other = enqueueOk(*store, message());
  moveTo(*store, id, MessageState::kDeferred);
  ASSERT_TRUE(await<void>(q_, [&](auto done) {
                store->recordEvent(relay::EventRecord{"route.failover", "acme", "", ""}, done);
              }).has_value());
  const auto history = [&](const std::string& queue_id, size_t limit) {
    auto r = await<std::vector<StoredEvent>>(
        q_, [&](auto done) { store->listMessageEvents(queue_id, limit, done); });
    EXPECT_TRUE(r.has_value());
    std::vector<std::string> types;
    for (const auto& e : r.value_or(std::vector<StoredEvent>{})) {
      EXPECT_EQ(e.queue_id, queue_id);
      types.push_back(e.type);
    }
    return types;
  };
  EXPECT_EQ(history(id, 100),
            (std::vector<std::string>{"message.queued", "message.sending", "message.deferred"}));
  EXPECT_EQ(history(id, 2), (std::vector<std::string>{"message.queued", "message.sending"}));
  EXPECT_EQ(history(id, 0), (std::vector<std::string>{"message.queued"})); // clamped to 1
  EXPECT_EQ(history(other, 100), (std::vector<std::string>{"message.queued"}));
  EXPECT_TRUE(history("01NOSUCHMESSAGE00000000000", 100).empty());
  EXPECT_TRUE(history("", 100).empty()); // route events belong to no message
  RawDb raw(dbFile());
  EXPECT_EQ(
      planOf(raw, "SELECT seq, id, type, time, queue_id, tenant, mailbox, data FROM events "
                  "WHERE queue_id = ?1 ORDER BY seq LIMIT ?2"),
      (std::vector<std::string>{"SEARCH events USING INDEX events_by_queue_id (queue_id=?)"}));
}

TEST_F(ControlApiStoreTest, LastEventSeqMovesOnlyAfterACommitThatAddedEvents) {
  auto store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->lastEventSeq(), 0);
  RawDb raw(dbFile());
  const auto maxSeq = [&] {
    return std::stoll(raw.scalar("SELECT coalesce(max(seq), 0) FROM events"));
  };

  // Raised before the completion runs: the caller already sees its own event counted.
  std::optional<int64_t> seen_in_completion;
  std::string id;
  store->enqueue(message(), [&](Result<std::string> r) {
    id = r.value_or("");
    seen_in_completion = store->lastEventSeq();
  });
  ASSERT_TRUE(q_.runUntil([&] { return seen_in_completion.has_value(); }));
  EXPECT_EQ(*seen_in_completion, maxSeq());
  EXPECT_EQ(*seen_in_completion, 1);

  // Not while the commit waits: an operator's shell holds the write lock.
  ASSERT_EQ(raw.exec("BEGIN IMMEDIATE"), SQLITE_OK);
  std::optional<Result<std::string>> sending;
  store->markSending(id, kT0 + 1, [&](Result<std::string> r) { sending = std::move(r); });
  while (store->stats().pending_ops != 0) {
    std::this_thread::yield();
  }
  // The batch is taken and cannot commit while the lock is held: the seq must still be 1.
  EXPECT_EQ(store->lastEventSeq(), 1);
  ASSERT_EQ(raw.exec("ROLLBACK"), SQLITE_OK);
  ASSERT_TRUE(q_.runUntil([&] { return sending.has_value(); }));
  ASSERT_TRUE(sending->has_value());
  EXPECT_EQ(store->lastEventSeq(), 2);

  // Not by reads, nor by writes that failed or added no event.
  ASSERT_TRUE(get(*store, id).has_value());
  EXPECT_FALSE(markSending(*store, id, kT0 + 2).has_value()); // already sending
  ASSERT_TRUE(
      await<void>(q_, [&](auto done) { store->setMaxDbBytes(1024 * 1024, done); }).has_value());
  NewMessage big = message();
  big.body = std::string(2 * 1024 * 1024, 'x');
  EXPECT_EQ(enqueue(*store, big).error().code, "store.full");
  EXPECT_EQ(store->lastEventSeq(), 2);
  EXPECT_EQ(maxSeq(), 2);

  // Route events count too; and a reopened store starts from the database.
  ASSERT_TRUE(await<void>(q_, [&](auto done) {
                store->recordEvent(relay::EventRecord{"route.failover", "acme", "", ""}, done);
              }).has_value());
  EXPECT_EQ(store->lastEventSeq(), 3);
  store.reset();
  store = open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->lastEventSeq(), 3);
}

TEST_F(ControlApiStoreTest, LastEventSeqCanBeReadFromAnyThreadAndNeverGoesBack) {
  auto store = open();
  ASSERT_TRUE(store);
  std::atomic<bool> stop{false};
  std::atomic<bool> went_back{false};
  std::thread reader([&] {
    int64_t last = 0;
    while (!stop.load()) {
      const int64_t now = store->lastEventSeq();
      went_back = went_back || now < last;
      last = now;
    }
  });
  size_t stored = 0;
  for (int i = 0; i < 300; ++i) {
    store->enqueue(message(), [&](Result<std::string> r) { stored += r.has_value() ? 1 : 0; });
  }
  ASSERT_TRUE(q_.runUntil([&] { return stored == 300; }));
  stop = true;
  reader.join();
  EXPECT_FALSE(went_back.load());
  EXPECT_EQ(store->lastEventSeq(), 300);
}

TEST_F(ControlApiStoreTest, ABatchOfReadsCostsNoFsync) {
  SyncCountingVfs vfs;
  {
    auto store = openWithClock();
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
    store->listMessages(MessageQuery{}, [&](Result<MessagePage> r) { count(r); });
    MessageQuery filtered;
    filtered.tenants = {"acme"};
    filtered.mailbox = "rep1@acme.example";
    store->listMessages(filtered, [&](Result<MessagePage> r) { count(r); });
    store->listMessageEvents(id, 10, [&](Result<std::vector<StoredEvent>> r) { count(r); });
    store->countsFor({"acme"}, [&](Result<QueueCounts> r) { count(r); });
    ASSERT_TRUE(q_.runUntil([&] { return done == 8; }));
    EXPECT_EQ(vfs.syncs(), after_write);
    EXPECT_EQ(store->stats().commits, commits);

    // Nor does a write that changed nothing: refused, or a replay of an idempotency key.
    EXPECT_EQ(await<QueuedMessage>(
                  q_, [&](auto d) { store->retryNow("01NOSUCHMESSAGE00000000000", kT0, "ops", d); })
                  .error()
                  .code,
              "store.not_found");
    const std::string keyed = enqueueKeyedOk(*store, message(), idemKey()).id;
    const int after_keyed = vfs.syncs();
    EXPECT_EQ(enqueueKeyedOk(*store, message(), idemKey()).id, keyed);
    EXPECT_EQ(vfs.syncs(), after_keyed);
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

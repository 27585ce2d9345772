// What the control API reads and writes through the SQLite store: reads that cost no fsync and do
// not wait for the write lock.
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

class ControlApiStoreTest : public testing::StoreFixture {};

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

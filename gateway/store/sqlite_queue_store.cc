#include "gateway/store/sqlite_queue_store.h"

#include "gateway/store/queue_tables.h"
#include "gateway/store/schema.h"
#include "gateway/store/sqlite_db.h"

#include <algorithm>
#include <chrono>
#include <fcntl.h>
#include <filesystem>
#include <fmt/format.h>
#include <future>
#include <optional>
#include <system_error>
#include <unistd.h>
#include <utility>

namespace mailgate::store {

namespace {

// Pages of WAL after which a commit also checkpoints (copies the WAL back into the database
// file). 4096 pages of 4 KiB = 16 MiB: large enough that checkpoints are rare under a burst,
// small enough that start-up recovery and readers stay quick.
constexpr int kWalAutocheckpointPages = 4096;
// After a checkpoint the WAL file is truncated to this size instead of staying at its peak.
constexpr int64_t kJournalSizeLimitBytes = 64LL * 1024 * 1024;
// Expired idempotency keys deleted per writing batch: this many, plus two for every key the
// batch wrote, so purging always outpaces new keys while one batch's extra work stays bounded
// (at most 32 + 2 * batch_max index deletions).
constexpr size_t kKeyPurgeBase = 32;
constexpr size_t kKeyPurgePerKeyWritten = 2;

int64_t wallClockMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<void> configure(SqliteDb& db, int busy_timeout_ms) {
  // The busy timeout first, so that the statements below also wait for another process's lock.
  if (auto r = db.exec(fmt::format("PRAGMA busy_timeout = {}", std::max(busy_timeout_ms, 0))); !r) {
    return r;
  }
  auto mode = db.queryText("PRAGMA journal_mode = WAL");
  if (!mode) {
    return std::unexpected(std::move(mode.error()));
  }
  if (*mode != "wal") {
    return fail("store.io", fmt::format("the database refused WAL mode (journal_mode={})", *mode),
                "node.data_dir must be on a local file system that supports shared memory");
  }
  return db.exec(fmt::format("PRAGMA synchronous = FULL;"
                             "PRAGMA wal_autocheckpoint = {};"
                             "PRAGMA journal_size_limit = {};"
                             "PRAGMA cache_size = -16384;"
                             "PRAGMA temp_store = MEMORY;",
                             kWalAutocheckpointPages, kJournalSizeLimitBytes));
}

Result<void> makeDataDir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(dir, ec)) {
    return {};
  }
  if (!fs::create_directories(dir, ec) && ec) {
    return fail("store.io", fmt::format("cannot create node.data_dir {}: {}", dir, ec.message()),
                "create it, or point node.data_dir at a writable folder");
  }
  // It will hold mail: only the daemon's user may enter.
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  return {};
}

// Makes the directory entries of mailgate.db and its WAL durable: SQLite syncs file contents,
// and a crash right after the first start must not lose the files themselves.
void syncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)::fsync(fd);
    ::close(fd);
  }
}

} // namespace

template <typename T, typename Work> struct SqliteQueueStore::TypedOp final : Op {
  TypedOp(Work w, std::function<void(Result<T>)> d) : work(std::move(w)), done(std::move(d)) {}

  void run(QueueTables& t) override { result.emplace(work(t)); }
  [[nodiscard]] const Error* error() const override {
    return result && !result->has_value() ? &result->error() : nullptr;
  }
  void fail(const Error& e) override { result.emplace(std::unexpected(e)); }
  std::function<void()> completion() override {
    if (!result) {
      result.emplace(std::unexpected(Error("store.io", "operation never ran")));
    }
    return [d = std::move(done), r = std::move(*result)]() mutable {
      if (d) {
        d(std::move(r));
      }
    };
  }

  Work work;
  std::function<void(Result<T>)> done;
  std::optional<Result<T>> result;
};

SqliteQueueStore::SqliteQueueStore(Key, std::string path, PostFn post, size_t batch_max,
                                   std::chrono::milliseconds idempotency_ttl,
                                   std::function<int64_t()> clock, int64_t last_event_seq,
                                   std::unique_ptr<QueueTables> tables)
    : path_(std::move(path)), post_(std::move(post)), batch_max_(batch_max),
      idempotency_ttl_ms_(idempotency_ttl.count()),
      clock_(clock ? std::move(clock) : std::function<int64_t()>(&wallClockMs)),
      tables_(std::move(tables)), last_event_seq_(last_event_seq) {
  thread_ = std::thread([this] { storageLoop(); });
}

SqliteQueueStore::~SqliteQueueStore() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

template <typename T, typename Work>
void SqliteQueueStore::submit(std::function<void(Result<T>)> done, Work work, bool direct) {
  auto op = std::make_unique<TypedOp<T, Work>>(std::move(work), std::move(done));
  op->direct = direct;
  push(std::move(op));
}

template <typename T, typename Work>
void SqliteQueueStore::submitRead(std::function<void(Result<T>)> done, Work work) {
  auto op = std::make_unique<TypedOp<T, Work>>(std::move(work), std::move(done));
  op->read_only = true;
  push(std::move(op));
}

void SqliteQueueStore::submitErased(ErasedWork w, bool read_only, bool direct) {
  auto work = [fn = std::move(w.work)](QueueTables& t) { return fn(t); };
  auto op = std::make_unique<TypedOp<void, decltype(work)>>(std::move(work), std::move(w.done));
  op->read_only = read_only;
  op->direct = direct;
  push(std::move(op));
}

void SqliteQueueStore::push(std::unique_ptr<Op> op) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      pending_.push_back(std::move(op));
      wake_.notify_one();
      return;
    }
  }
  op->fail(Error("store.closed", "the store is shutting down"));
  auto complete = op->completion();
  if (op->direct) {
    complete();
  } else {
    post_(std::move(complete));
  }
}

void SqliteQueueStore::storageLoop() {
  std::vector<std::unique_ptr<Op>> batch;
  batch.reserve(batch_max_);
  for (;;) {
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) {
        return; // stopping, and everything queued has been completed
      }
      const size_t n = std::min(batch_max_, pending_.size());
      for (size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(pending_.front()));
        pending_.pop_front();
      }
    }
    runBatch(batch);
    batch.clear();
  }
}

SqliteQueueStore::BatchResult SqliteQueueStore::tryBatch(std::vector<std::unique_ptr<Op>>& batch,
                                                         const std::vector<bool>& skip) {
  QueueTables& t = *tables_;
  BatchResult out;
  const int64_t changes_before = t.db().totalChanges();
  if (auto begun = t.begin(); !begun) {
    out.lost = begun.error();
    return out;
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    if (skip[i]) {
      continue;
    }
    Op& op = *batch[i];
    if (auto r = t.savepoint(); !r) {
      out.lost = r.error();
      break;
    }
    op.run(t);
    if (const Error* e = op.error(); e != nullptr) {
      if (t.db().autocommit()) {
        // SQLite rolled the whole transaction back (it does after SQLITE_FULL and I/O errors
        // in most statements): the operations before this one are gone too.
        out.lost = *e;
        out.culprit = i;
        break;
      }
      if (auto r = t.rollbackToSavepoint(); !r) {
        out.lost = r.error();
        break;
      }
    }
    if (auto r = t.release(); !r) {
      out.lost = r.error();
      break;
    }
  }
  if (!out.lost) {
    out.wrote = t.db().totalChanges() != changes_before;
    // Only a batch that writes anyway pays for the clean-up: a read-only one stays free.
    if (out.wrote) {
      if (auto r = tidy(t); !r) {
        out.lost = r.error();
      }
    }
    if (out.wrote && !out.lost) {
      // What the commit below makes visible. Should this read fail, lastEventSeq() lags until
      // the next writing batch, which is no reason to lose this one.
      if (auto seq = t.maxEventSeq(); seq) {
        out.max_event_seq = *seq;
      }
    }
  }
  if (!out.lost) {
    if (auto r = t.commit(); !r) {
      out.lost = r.error();
    }
  }
  if (out.lost) {
    t.rollback();
  }
  return out;
}

void SqliteQueueStore::runReads(std::vector<std::unique_ptr<Op>>& reads) {
  QueueTables& t = *tables_;
  std::optional<Error> lost;
  if (auto begun = t.beginRead(); !begun) {
    lost = begun.error();
  } else {
    for (auto& op : reads) {
      op->run(t);
    }
    // Ends the read transaction; it wrote nothing, so there is nothing to sync.
    if (auto r = t.commit(); !r) {
      lost = r.error();
      t.rollback();
    }
  }
  uint64_t ok = 0;
  for (auto& op : reads) {
    if (lost) {
      op->fail(*lost);
    } else {
      ok += op->error() == nullptr ? 1 : 0;
    }
  }
  if (lost) {
    failed_batches_.fetch_add(1, std::memory_order_relaxed);
  }
  committed_ops_.fetch_add(ok, std::memory_order_relaxed);
  complete(reads);
}

void SqliteQueueStore::complete(std::vector<std::unique_ptr<Op>>& ops) {
  std::vector<std::function<void()>> completions;
  completions.reserve(ops.size());
  for (auto& op : ops) {
    auto done = op->completion();
    if (op->direct) {
      done();
    } else {
      completions.push_back(std::move(done));
    }
  }
  if (!completions.empty()) {
    post_([cs = std::move(completions)]() mutable {
      for (auto& c : cs) {
        c();
      }
    });
  }
}

Result<void> SqliteQueueStore::tidy(QueueTables& t) {
  if (auto r = t.savepoint(); !r) {
    return r;
  }
  const size_t budget = kKeyPurgeBase + kKeyPurgePerKeyWritten * t.keysWritten();
  if (auto purged = t.purgeIdempotencyKeys(clock_() - idempotency_ttl_ms_, budget); !purged) {
    if (t.db().autocommit()) {
      return std::unexpected(purged.error());
    }
    // Not worth failing the batch for: the keys are purged by a later one.
    if (auto r = t.rollbackToSavepoint(); !r) {
      return r;
    }
  }
  return t.release();
}

void SqliteQueueStore::runBatch(std::vector<std::unique_ptr<Op>>& batch) {
  uint64_t seen = max_batch_.load(std::memory_order_relaxed);
  while (batch.size() > seen &&
         !max_batch_.compare_exchange_weak(seen, batch.size(), std::memory_order_relaxed)) {
  }

  // The reads at the head of the batch need neither the write lock nor the writes' fsync; a
  // read behind a write stays in the write transaction, so completions keep their order.
  size_t reads = 0;
  while (reads < batch.size() && batch[reads]->read_only) {
    ++reads;
  }
  if (reads > 0) {
    std::vector<std::unique_ptr<Op>> head(std::make_move_iterator(batch.begin()),
                                          std::make_move_iterator(batch.begin() + reads));
    batch.erase(batch.begin(), batch.begin() + reads);
    runReads(head);
    if (batch.empty()) {
      return;
    }
  }

  std::vector<bool> skip(batch.size(), false);
  BatchResult result = tryBatch(batch, skip);
  if (result.lost && result.culprit) {
    // One operation took the transaction down (typically a message too big for the space
    // left). It keeps its own error; the others run again without it, once, so that one
    // oversized message does not fail its neighbours. A second loss fails the whole batch.
    skip[*result.culprit] = true;
    result = tryBatch(batch, skip);
  }
  const std::optional<Error>& lost = result.lost;

  uint64_t ok = 0;
  if (lost) {
    for (auto& op : batch) {
      op->fail(*lost);
    }
    failed_batches_.fetch_add(1, std::memory_order_relaxed);
  } else {
    for (const auto& op : batch) {
      ok += op->error() == nullptr ? 1 : 0;
    }
    if (result.wrote) {
      commits_.fetch_add(1, std::memory_order_relaxed);
    }
    committed_ops_.fetch_add(ok, std::memory_order_relaxed);
    if (result.max_event_seq && *result.max_event_seq > last_event_seq_.load()) {
      last_event_seq_.store(*result.max_event_seq, std::memory_order_release);
    }
  }
  // One post per batch: one loop wake-up however many messages shared the fsync.
  complete(batch);
}

void SqliteQueueStore::enqueue(relay::NewMessage msg,
                               std::function<void(Result<std::string>)> done) {
  submit<std::string>(std::move(done),
                      [m = std::move(msg)](QueueTables& t) { return t.enqueue(m); });
}

void SqliteQueueStore::enqueueIdempotent(relay::NewMessage msg, IdempotencyKey key,
                                         std::function<void(Result<EnqueueOutcome>)> done) {
  submit<EnqueueOutcome>(std::move(done),
                         [m = std::move(msg), k = std::move(key), ttl = idempotency_ttl_ms_](
                             QueueTables& t) { return t.enqueueIdempotent(m, k, ttl); });
}

void SqliteQueueStore::markSending(std::string id, int64_t now_ms, relay::AttemptStart start,
                                   std::function<void(Result<std::string>)> done) {
  // One operation, so a failure of any part (state, route, charges, body) rolls all of it back
  // (the op's savepoint).
  submit<std::string>(std::move(done),
                      [id = std::move(id), now_ms,
                       start = std::move(start)](QueueTables& t) -> Result<std::string> {
                        if (auto marked = t.markSending(id, now_ms, start); !marked) {
                          return std::unexpected(marked.error());
                        }
                        return t.loadBody(id);
                      });
}

void SqliteQueueStore::recordAttempt(relay::AttemptOutcome outcome,
                                     std::function<void(Result<relay::QueuedMessage>)> done) {
  submit<relay::QueuedMessage>(
      std::move(done), [o = std::move(outcome)](QueueTables& t) { return t.recordAttempt(o); });
}

void SqliteQueueStore::expire(std::string id, int64_t now_ms,
                              std::function<void(Result<relay::QueuedMessage>)> done) {
  submit<relay::QueuedMessage>(std::move(done), [id = std::move(id), now_ms](QueueTables& t) {
    return t.expire(id, now_ms);
  });
}

void SqliteQueueStore::retryNow(std::string id, int64_t now_ms, std::string actor,
                                std::function<void(Result<relay::QueuedMessage>)> done) {
  submit<relay::QueuedMessage>(
      std::move(done), [id = std::move(id), now_ms, actor = std::move(actor)](QueueTables& t) {
        return t.retryNow(id, now_ms, actor);
      });
}

void SqliteQueueStore::cancel(std::string id, int64_t now_ms, std::string actor,
                              std::function<void(Result<relay::QueuedMessage>)> done) {
  submit<relay::QueuedMessage>(
      std::move(done), [id = std::move(id), now_ms, actor = std::move(actor)](QueueTables& t) {
        return t.cancel(id, now_ms, actor);
      });
}

void SqliteQueueStore::loadBody(std::string id, std::function<void(Result<std::string>)> done) {
  submitRead<std::string>(std::move(done),
                          [id = std::move(id)](QueueTables& t) { return t.loadBody(id); });
}

void SqliteQueueStore::get(std::string id, std::function<void(Result<relay::QueuedMessage>)> done) {
  submitRead<relay::QueuedMessage>(std::move(done),
                                   [id = std::move(id)](QueueTables& t) { return t.get(id); });
}

void SqliteQueueStore::counts(std::function<void(Result<relay::QueueCounts>)> done) {
  submitRead<relay::QueueCounts>(std::move(done), [](QueueTables& t) { return t.counts(); });
}

void SqliteQueueStore::listMessages(MessageQuery q, std::function<void(Result<MessagePage>)> done) {
  submitRead<MessagePage>(std::move(done),
                          [q = std::move(q)](QueueTables& t) { return t.listMessages(q); });
}

void SqliteQueueStore::listMessageEvents(
    std::string queue_id, size_t limit,
    std::function<void(Result<std::vector<StoredEvent>>)> done) {
  submitRead<std::vector<StoredEvent>>(
      std::move(done),
      [id = std::move(queue_id), limit](QueueTables& t) { return t.listMessageEvents(id, limit); });
}

void SqliteQueueStore::countsFor(std::vector<std::string> tenants,
                                 std::function<void(Result<relay::QueueCounts>)> done) {
  submitRead<relay::QueueCounts>(std::move(done), [tenants = std::move(tenants)](QueueTables& t) {
    return t.countsFor(tenants);
  });
}

void SqliteQueueStore::listEvents(int64_t after_seq, size_t limit,
                                  std::function<void(Result<std::vector<StoredEvent>>)> done) {
  submitRead<std::vector<StoredEvent>>(std::move(done), [after_seq, limit](QueueTables& t) {
    return t.listEvents(after_seq, limit);
  });
}

void SqliteQueueStore::setMaxDbBytes(uint64_t bytes, std::function<void(Result<void>)> done) {
  submit<void>(std::move(done), [bytes](QueueTables& t) { return t.setMaxDbBytes(bytes); });
}

Result<std::vector<relay::QueuedMessage>> SqliteQueueStore::recover(int64_t now_ms) {
  // Runs on the storage thread like every other operation (one connection, one thread), and
  // completes there: the caller is blocked here, not waiting on its loop.
  using Out = std::vector<relay::QueuedMessage>;
  std::promise<Result<Out>> promise;
  auto future = promise.get_future();
  submit<Out>([&promise](Result<Out> r) { promise.set_value(std::move(r)); },
              [now_ms](QueueTables& t) { return t.recover(now_ms); }, /*direct=*/true);
  return future.get();
}

void SqliteQueueStore::saveRouteState(relay::RouteStateRecord state,
                                      std::optional<relay::EventRecord> event,
                                      std::function<void(Result<void>)> done) {
  submit<void>(std::move(done), [st = std::move(state), ev = std::move(event)](QueueTables& t) {
    return t.saveRouteState(st, ev);
  });
}

void SqliteQueueStore::recordEvent(relay::EventRecord event,
                                   std::function<void(Result<void>)> done) {
  submit<void>(std::move(done),
               [ev = std::move(event)](QueueTables& t) { return t.recordEvent(ev); });
}

Result<relay::RoutingSnapshot> SqliteQueueStore::loadRouting(int64_t now_ms,
                                                             int64_t max_window_ms) {
  // As recover(): the caller blocks, so the operation completes on the storage thread.
  std::promise<Result<relay::RoutingSnapshot>> promise;
  auto future = promise.get_future();
  submit<relay::RoutingSnapshot>(
      [&promise](Result<relay::RoutingSnapshot> r) { promise.set_value(std::move(r)); },
      [now_ms, max_window_ms](QueueTables& t) { return t.loadRouting(now_ms, max_window_ms); },
      /*direct=*/true);
  return future.get();
}

StoreStats SqliteQueueStore::stats() const {
  StoreStats s;
  s.commits = commits_.load(std::memory_order_relaxed);
  s.committed_ops = committed_ops_.load(std::memory_order_relaxed);
  s.failed_batches = failed_batches_.load(std::memory_order_relaxed);
  s.max_batch = max_batch_.load(std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  s.pending_ops = pending_.size();
  return s;
}

Result<std::unique_ptr<SqliteQueueStore>> openSqliteQueueStore(SqliteStoreOptions options) {
  if (!options.post) {
    return fail("store.config", "the store needs a post function to complete operations");
  }
  if (options.batch_max == 0) {
    return fail("store.config", "batch_max must be at least 1");
  }
  if (options.idempotency_ttl.count() <= 0) {
    return fail("store.config", "idempotency_ttl must be positive");
  }
  if (options.data_dir.empty()) {
    return fail("store.config", "node.data_dir is empty", "set node.data_dir in the config");
  }
  if (auto r = makeDataDir(options.data_dir); !r) {
    return std::unexpected(std::move(r.error()));
  }
  std::string path = (std::filesystem::path(options.data_dir) / "mailgate.db").string();
  auto db = SqliteDb::open(path);
  if (!db) {
    return std::unexpected(std::move(db.error()));
  }
  if (auto r = configure(*db, options.busy_timeout_ms); !r) {
    return std::unexpected(std::move(r.error()));
  }
  if (auto r = migrateSchema(*db, wallClockMs()); !r) {
    return std::unexpected(std::move(r.error()));
  }
  syncDirectory(options.data_dir);
  auto tables = QueueTables::create(std::move(*db));
  if (!tables) {
    return std::unexpected(std::move(tables.error()));
  }
  if (options.max_db_bytes != 0) {
    if (auto r = (*tables)->setMaxDbBytes(options.max_db_bytes); !r) {
      return std::unexpected(std::move(r.error()));
    }
  }
  auto last_event_seq = (*tables)->maxEventSeq();
  if (!last_event_seq) {
    return std::unexpected(std::move(last_event_seq.error()));
  }
  return std::make_unique<SqliteQueueStore>(
      SqliteQueueStore::Key{}, std::move(path), std::move(options.post), options.batch_max,
      options.idempotency_ttl, std::move(options.clock), *last_event_seq, std::move(*tables));
}

} // namespace mailgate::store

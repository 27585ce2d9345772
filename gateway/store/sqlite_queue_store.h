// The embedded QueueStore: SQLite in WAL mode, `mailgate.db` under node.data_dir, with grouped
// commits on one storage thread.
//
// How a write becomes durable: callers queue operations; the storage thread takes everything
// queued since its last commit (at most batch_max operations), runs them in one transaction
// (each inside its own savepoint, so one failing operation does not undo the others) and
// commits with synchronous=FULL, i.e. one fsync for the whole batch. Only then are the
// completions posted, all of one batch in one call to `post`, in the order the operations were
// queued. While a commit is in flight new operations pile up for the next one, so the batch size
// follows the load by itself and no timer is needed.
//
// Reads: operations that only read (get, loadBody, counts, the listings) and stand at the head
// of a batch run first in a read transaction of their own (BEGIN DEFERRED): it takes no write
// lock, writes no WAL frame and so costs no fsync, and their completions are posted before the
// batch's writes start. A read queued behind a write waits for that write's commit, so that
// completions keep the order of their calls; a read therefore waits at most for the commit in
// flight when it was queued plus the one of the writes queued before it.
//
// Failures: if the transaction or its commit fails (disk full, I/O error, lock timeout), every
// operation of that batch completes with the error ("store.full", "store.io", "store.busy") and
// nothing of the batch is stored; the next batch starts afresh, so the store keeps working once
// space is back. When a single operation's failure is what rolled the transaction back (one
// message too big for the space left), that operation fails alone: the batch is retried once
// without it.
//
// Shutdown: the destructor stops accepting operations (later calls complete with
// "store.closed"), lets the storage thread finish every queued operation and post its
// completion, then joins it. `post` must therefore stay callable until the destructor returns.
// Completions that `post` receives after the loop stopped running may be dropped unrun: it is
// safe because callbacks own their state (see relay/queue_store.h). To see every completion,
// destroy the store before stopping the loop and run the loop once more.
#pragma once

#include "gateway/store/message_queries.h"
#include "gateway/store/stored_event.h"
#include "relay/queue_store.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace mailgate::store {

class QueueTables;

// Runs a closure on the owner's loop; must be thread-safe (net::Loop::post is).
using PostFn = std::function<void(std::function<void()>)>;

struct SqliteStoreOptions {
  std::string data_dir;   // created (0700) if missing; the file is data_dir/mailgate.db
  size_t batch_max = 512; // operations per transaction at most
  PostFn post;            // required
  // Caps the main database file (0: no cap). Beyond it writes fail with "store.full", as on a
  // full disk. Also how tests simulate a full disk.
  uint64_t max_db_bytes = 0;
  // How long a transaction waits for a lock held by another process before its batch fails
  // with "store.busy".
  int busy_timeout_ms = 5000;
  // How long enqueueIdempotent remembers a key, from the now_ms of the message that first used
  // it: an older key is forgotten, and the same key then makes a new message.
  std::chrono::milliseconds idempotency_ttl = std::chrono::hours(24);
  // Wall-clock milliseconds since the epoch; empty: the system clock. Decides which idempotency
  // keys are old enough to purge. Keys are stamped with NewMessage::now_ms, so callers must pass
  // the same clock there (the daemon does); tests that use made-up times inject one here.
  std::function<int64_t()> clock;
};

struct StoreStats {
  uint64_t commits = 0;        // transactions that wrote something (each is one fsync'd commit)
  uint64_t committed_ops = 0;  // operations that completed successfully
  uint64_t failed_batches = 0; // batches lost to a transaction or commit error
  uint64_t max_batch = 0;      // largest batch seen
  uint64_t pending_ops = 0;    // queued now, not yet taken by the storage thread
};

class SqliteQueueStore final : public relay::QueueStore {
public:
  ~SqliteQueueStore() override;

  void enqueue(relay::NewMessage msg, std::function<void(Result<std::string>)> done) override;
  using relay::QueueStore::markSending; // the form without AttemptStart
  void markSending(std::string id, int64_t now_ms, relay::AttemptStart start,
                   std::function<void(Result<std::string>)> done) override;
  void recordAttempt(relay::AttemptOutcome outcome,
                     std::function<void(Result<relay::QueuedMessage>)> done) override;
  void expire(std::string id, int64_t now_ms,
              std::function<void(Result<relay::QueuedMessage>)> done) override;
  void retryNow(std::string id, int64_t now_ms, std::string actor,
                std::function<void(Result<relay::QueuedMessage>)> done) override;
  void cancel(std::string id, int64_t now_ms, std::string actor,
              std::function<void(Result<relay::QueuedMessage>)> done) override;
  void loadBody(std::string id, std::function<void(Result<std::string>)> done) override;
  void get(std::string id, std::function<void(Result<relay::QueuedMessage>)> done) override;
  void counts(std::function<void(Result<relay::QueueCounts>)> done) override;
  Result<std::vector<relay::QueuedMessage>> recover(int64_t now_ms) override;
  void saveRouteState(relay::RouteStateRecord state, std::optional<relay::EventRecord> event,
                      std::function<void(Result<void>)> done) override;
  void recordEvent(relay::EventRecord event, std::function<void(Result<void>)> done) override;
  // Like recover(): blocks until the storage thread has run it in its next batch.
  Result<relay::RoutingSnapshot> loadRouting(int64_t now_ms, int64_t max_window_ms) override;

  // --- the control API (gateway/api/); not part of relay::QueueStore -------------------------
  // Same conventions as relay::QueueStore. Gateway-only error codes:
  //  "store.invalid"               the request cannot be stored as given (see each call)
  //  "store.idempotency_mismatch"  an Idempotency-Key reused for a different request

  // enqueue() for POST /v1/messages with an Idempotency-Key. When `key` (scope + key) was used
  // less than idempotency_ttl before msg.now_ms with the same fingerprint, nothing is stored and
  // the outcome is that first message as it is now (replayed). Otherwise the message is stored
  // as enqueue() does and the key is written in the same transaction, so a retry after a crash
  // finds it too; a key past its retention is replaced. Two calls with one key in one batch
  // make one message (the second sees the first's key). Errors: enqueue()'s, store.invalid
  // (empty key, or longer than kMaxIdempotencyKeyBytes), store.idempotency_mismatch (the key
  // was used for another fingerprint; the message says when, nothing is stored). Expired keys
  // are purged a few per writing batch (docs/queue.md), not by a timer.
  void enqueueIdempotent(relay::NewMessage msg, IdempotencyKey key,
                         std::function<void(Result<EnqueueOutcome>)> done);

  // One page of GET /v1/queue: the messages that match `q`, in id order (creation order; newest
  // first unless q.newest_first is false), after q.after, at most q.limit (clamped to
  // 1..kMaxPageLimit), recipients included. page.next is the `after` of the next page, empty when
  // no further message matched. Every filter combination reads index ranges only, so a page
  // costs O(limit + ranges) rows however long the queue (message_lister.h). A message that
  // changes state between two pages may drop out of a state-filtered listing; none appears
  // twice (the cursor is the id). Errors: store.invalid when the query would merge more than
  // kMaxListRanges index ranges.
  void listMessages(MessageQuery q, std::function<void(Result<MessagePage>)> done);

  // A message's history for GET /v1/messages/{id}: its events, oldest first, at most `limit`
  // (clamped to 1..kMaxMessageEvents). An unknown id has no events (an empty list, not an
  // error: the API asks get() for the 404).
  void listMessageEvents(std::string queue_id, size_t limit,
                         std::function<void(Result<std::vector<StoredEvent>>)> done);

  // The counts of the messages of the tenants `tenants` names: {"*"} alone is every tenant (as
  // counts()), otherwise only the listed ones (a message without a tenant counts only under
  // "*"). Reads a few rows per tenant (message_counts), however long the queue.
  void countsFor(std::vector<std::string> tenants,
                 std::function<void(Result<relay::QueueCounts>)> done);

  // The highest seq of a committed event: read from the database at open, raised after each
  // commit that added events and before that batch's completions are posted (so a completion
  // already sees its own events counted). Never ahead of what listEvents can return. Any
  // thread; one atomic load. For the /v1/events feed, to know when to call listEvents.
  [[nodiscard]] int64_t lastEventSeq() const {
    return last_event_seq_.load(std::memory_order_acquire);
  }

  // Outbox events with seq > after_seq, oldest first, at most `limit`.
  void listEvents(int64_t after_seq, size_t limit,
                  std::function<void(Result<std::vector<StoredEvent>>)> done);
  // --- the tables of other features (webhook cursors, sync state, write-back) ----------------
  // Runs `work` on the storage thread inside a batch transaction (in its own savepoint, as every
  // operation) and hands its result to `done` through post once the batch is committed. Errors
  // as for every write; a lost batch completes with the batch's error even when `work`
  // succeeded. `work` may run twice (a batch retried without another operation's failure), so
  // it must only touch the database. Events it adds (QueueTables::addEvent) count in
  // lastEventSeq() before `done` runs.
  template <typename T>
  void write(std::function<Result<T>(QueueTables&)> work, std::function<void(Result<T>)> done) {
    submitErased(erase<T>(std::move(work), std::move(done)), false);
  }
  // write() for work that only reads (one read transaction, no fsync; see the top).
  template <typename T>
  void read(std::function<Result<T>(QueueTables&)> work, std::function<void(Result<T>)> done) {
    submitErased(erase<T>(std::move(work), std::move(done)), true);
  }

  // read() for start-up: blocks the caller until the storage thread has run `work` (as
  // recover() does); never call it on the loop thread once the loop runs.
  template <typename T> Result<T> readNow(std::function<Result<T>(QueueTables&)> work) {
    std::promise<Result<T>> promise;
    auto future = promise.get_future();
    submitErased(
        erase<T>(std::move(work), [&promise](Result<T> r) { promise.set_value(std::move(r)); }),
        true, /*direct=*/true);
    return future.get();
  }
  // How long enqueueIdempotent remembers a key (SqliteStoreOptions::idempotency_ttl), for work
  // given to write() that calls QueueTables::enqueueIdempotent.
  [[nodiscard]] int64_t idempotencyTtlMs() const { return idempotency_ttl_ms_; }

  // Changes the size cap at run time (0: none), e.g. on config reload.
  void setMaxDbBytes(uint64_t bytes, std::function<void(Result<void>)> done);

  // A consistent-enough snapshot for metrics and tests; callable from any thread.
  [[nodiscard]] StoreStats stats() const;
  [[nodiscard]] const std::string& path() const { return path_; }

private:
  friend Result<std::unique_ptr<SqliteQueueStore>> openSqliteQueueStore(SqliteStoreOptions);

  // One queued operation. run() executes on the storage thread inside the batch transaction and
  // keeps its result; fail() replaces that result when the batch is lost; completion() moves the
  // result and the callback into the closure that is posted.
  struct Op {
    Op() = default;
    Op(const Op&) = delete;
    Op& operator=(const Op&) = delete;
    virtual ~Op() = default;
    virtual void run(QueueTables& t) = 0;
    // The error run() produced, or null.
    [[nodiscard]] virtual const Error* error() const = 0;
    virtual void fail(const Error& e) = 0;
    virtual std::function<void()> completion() = 0;
    bool direct = false;    // complete on the storage thread instead of through post (recover)
    bool read_only = false; // writes nothing: may run in a read transaction (see the top)
  };
  template <typename T, typename Work> struct TypedOp;

  // Lets openSqliteQueueStore use std::make_unique with a constructor nobody else can call.
  struct Key {
    explicit Key() = default;
  };

public:
  SqliteQueueStore(Key, std::string path, PostFn post, size_t batch_max,
                   std::chrono::milliseconds idempotency_ttl, std::function<int64_t()> clock,
                   int64_t last_event_seq, std::unique_ptr<QueueTables> tables);

private:
  struct ErasedWork {
    std::function<Result<void>(QueueTables&)> work;
    std::function<void(Result<void>)> done;
  };
  template <typename T>
  static ErasedWork erase(std::function<Result<T>(QueueTables&)> work,
                          std::function<void(Result<T>)> done) {
    auto slot = std::make_shared<std::optional<Result<T>>>();
    return ErasedWork{[work = std::move(work), slot](QueueTables& t) -> Result<void> {
                        slot->emplace(work(t));
                        if (!slot->value()) {
                          return std::unexpected(slot->value().error());
                        }
                        return {};
                      },
                      [done = std::move(done), slot](Result<void> r) {
                        if (!done) {
                          return;
                        }
                        if (!r) {
                          done(std::unexpected(std::move(r.error())));
                        } else {
                          done(std::move(slot->value()));
                        }
                      }};
  }
  void submitErased(ErasedWork w, bool read_only, bool direct = false);

  template <typename T, typename Work>
  void submit(std::function<void(Result<T>)> done, Work work, bool direct = false);
  // submit() for an operation that only reads.
  template <typename T, typename Work>
  void submitRead(std::function<void(Result<T>)> done, Work work);
  void push(std::unique_ptr<Op> op);
  void storageLoop();
  void runBatch(std::vector<std::unique_ptr<Op>>& batch);
  // Runs read-only operations in one read transaction (no write lock, no fsync).
  void runReads(std::vector<std::unique_ptr<Op>>& reads);
  // Hands the completions of `ops` to post_ (one call) or runs the direct ones here.
  void complete(std::vector<std::unique_ptr<Op>>& ops);
  struct BatchResult {
    std::optional<Error> lost;     // set when nothing of the transaction was stored
    std::optional<size_t> culprit; // the operation whose failure rolled the transaction back
    bool wrote = false;            // the committed transaction changed rows (it cost an fsync)
    std::optional<int64_t> max_event_seq; // the highest event seq once it is committed
  };
  // One transaction over the operations not skipped.
  BatchResult tryBatch(std::vector<std::unique_ptr<Op>>& batch, const std::vector<bool>& skip);
  // Bounded clean-up that rides on a transaction that writes anyway (expired idempotency
  // keys). A failure undoes only the clean-up, unless SQLite rolled back the transaction.
  Result<void> tidy(QueueTables& t);

  const std::string path_;
  const PostFn post_;
  const size_t batch_max_;
  const int64_t idempotency_ttl_ms_;
  const std::function<int64_t()> clock_;
  std::unique_ptr<QueueTables> tables_; // touched only by the storage thread once it runs

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::unique_ptr<Op>> pending_; // guarded by mu_
  bool stopping_ = false;                   // guarded by mu_

  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> committed_ops_{0};
  std::atomic<uint64_t> failed_batches_{0};
  std::atomic<uint64_t> max_batch_{0};
  std::atomic<int64_t> last_event_seq_{0};

  std::thread thread_; // last: started once everything above exists
};

// Opens or creates the store, applies the schema migrations and starts the storage thread.
// Errors: "store.config" (no post, batch_max 0), "store.io" (cannot create data_dir or open the
// file, journal mode not WAL), "store.schema" (database from a newer version), "store.busy".
[[nodiscard]] Result<std::unique_ptr<SqliteQueueStore>>
openSqliteQueueStore(SqliteStoreOptions options);

} // namespace mailgate::store

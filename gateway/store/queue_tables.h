// Every SQL statement of the queue, over one connection. Used only by the storage thread of
// SqliteQueueStore, always inside a transaction that the caller opened with begin(); the methods
// never commit. Statements are prepared once and reused.
#pragma once

#include "base/error.h"
#include "gateway/store/id_generator.h"
#include "gateway/store/message_lister.h"
#include "gateway/store/message_queries.h"
#include "gateway/store/sqlite_db.h"
#include "gateway/store/stored_event.h"
#include "relay/queue/delivery_rules.h"
#include "relay/queue_store.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::store {

class QueueTables {
public:
  // Takes a migrated connection and prepares the statements.
  [[nodiscard]] static Result<std::unique_ptr<QueueTables>> create(SqliteDb db);

  // Transaction control. begin() takes the write lock at once (BEGIN IMMEDIATE), so waiting for
  // another process happens there and not half-way through a batch.
  [[nodiscard]] Result<void> begin();
  // A read transaction (BEGIN DEFERRED): one snapshot, no write lock; commit() ends it.
  [[nodiscard]] Result<void> beginRead();
  [[nodiscard]] Result<void> commit();
  void rollback();
  [[nodiscard]] Result<void> savepoint();
  [[nodiscard]] Result<void> release();
  [[nodiscard]] Result<void> rollbackToSavepoint();

  [[nodiscard]] Result<std::string> enqueue(const relay::NewMessage& msg);
  // SqliteQueueStore::enqueueIdempotent; a key is remembered for ttl_ms after msg.now_ms.
  [[nodiscard]] Result<EnqueueOutcome> enqueueIdempotent(const relay::NewMessage& msg,
                                                         const IdempotencyKey& key, int64_t ttl_ms);
  // Deletes at most `max` idempotency keys first used at or before cutoff_ms, oldest first.
  // Returns how many it deleted.
  [[nodiscard]] Result<size_t> purgeIdempotencyKeys(int64_t cutoff_ms, size_t max);
  // Idempotency keys written since begin(): sizes the purge of the same transaction.
  [[nodiscard]] size_t keysWritten() const { return keys_written_; }
  // Also sets the route (unless start.route is empty) and applies start.charges.
  [[nodiscard]] Result<void> markSending(const std::string& id, int64_t now_ms,
                                         const relay::AttemptStart& start);
  [[nodiscard]] Result<relay::QueuedMessage> recordAttempt(const relay::AttemptOutcome& outcome);
  [[nodiscard]] Result<relay::QueuedMessage> expire(const std::string& id, int64_t now_ms);
  [[nodiscard]] Result<relay::QueuedMessage> retryNow(const std::string& id, int64_t now_ms,
                                                      const std::string& actor);
  [[nodiscard]] Result<relay::QueuedMessage> cancel(const std::string& id, int64_t now_ms,
                                                    const std::string& actor);
  [[nodiscard]] Result<std::string> loadBody(const std::string& id);
  [[nodiscard]] Result<relay::QueuedMessage> get(const std::string& id);
  // From message_counts (kept by triggers): a few rows whatever the size of the queue.
  [[nodiscard]] Result<relay::QueueCounts> counts();
  // The counts of the tenants `scope` names (scopedTenants()).
  [[nodiscard]] Result<relay::QueueCounts> countsFor(const std::vector<std::string>& scope);
  [[nodiscard]] Result<std::vector<relay::QueuedMessage>> recover(int64_t now_ms);
  [[nodiscard]] Result<std::vector<StoredEvent>> listEvents(int64_t after_seq, size_t limit);
  // The highest event seq in the database (0: none), as this transaction sees it.
  [[nodiscard]] Result<int64_t> maxEventSeq();
  // SqliteQueueStore::listMessages and listMessageEvents.
  [[nodiscard]] Result<MessagePage> listMessages(const MessageQuery& q);
  [[nodiscard]] Result<std::vector<StoredEvent>> listMessageEvents(const std::string& queue_id,
                                                                   size_t limit);

  // Routing state (relay::QueueStore's "routing state" section).
  [[nodiscard]] Result<void> saveRouteState(const relay::RouteStateRecord& state,
                                            const std::optional<relay::EventRecord>& event);
  // Stamped with the wall clock: an EventRecord carries no time of its own.
  [[nodiscard]] Result<void> recordEvent(const relay::EventRecord& event);
  [[nodiscard]] Result<relay::RoutingSnapshot> loadRouting(int64_t now_ms, int64_t max_window_ms);
  // 0 removes the cap. Applies to the main database file (PRAGMA max_page_count).
  [[nodiscard]] Result<void> setMaxDbBytes(uint64_t bytes);

  SqliteDb& db() { return db_; }

  // --- for the tables of other features (webhook cursors, sync state, write-back) ---------------
  // The statement for `sql`, prepared on first use and kept for the life of the connection (so
  // `sql` should be a constant). The caller resets it (StatementScope) before the next use.
  [[nodiscard]] Result<Statement*> cached(std::string_view sql);
  // Adds `event` to the outbox in the caller's transaction, stamped `now_ms`, with a new id.
  [[nodiscard]] Result<void> addEvent(const relay::EventRecord& event, int64_t now_ms);

private:
  // Only create() can make a Key, so only create() constructs (through std::make_unique).
  struct Key {
    explicit Key() = default;
  };

public:
  QueueTables(Key, SqliteDb db);
  ~QueueTables();
  QueueTables(const QueueTables&) = delete;
  QueueTables& operator=(const QueueTables&) = delete;

private:
  struct Statements;

  Result<void> addEvent(std::string_view type, int64_t now_ms, const relay::QueuedMessage& m,
                        const std::string& data);
  Result<void> addRouteEvent(const relay::EventRecord& event, int64_t now_ms);
  // Adds each charge's count to its ledger bucket (floor 0); a bucket that reaches 0 is deleted.
  Result<void> applyCharges(const std::vector<relay::LedgerCharge>& charges);
  Result<void> persistDelivery(const relay::QueuedMessage& m, const relay::DeliveryEffects& fx,
                               int64_t now_ms);
  // `route` is the route the event names: the attempt's, or the stored one.
  // `actor`: who cancelled the message (cancel() only), else empty.
  Result<void> reportDelivery(const relay::QueuedMessage& m, const relay::DeliveryEffects& fx,
                              int64_t now_ms, bool by_expiry, std::string_view route,
                              std::string_view actor = {});
  Result<relay::QueuedMessage> expireLoaded(relay::QueuedMessage m, int64_t now_ms);

  SqliteDb db_;
  IdGenerator ids_;
  std::unique_ptr<Statements> st_;
  std::optional<MessageLister> lister_; // set by create(); uses db_, so it is declared after it
  size_t keys_written_ = 0;
  std::map<std::string, Statement, std::less<>> cached_; // cached(); declared after db_
};

} // namespace mailgate::store

// synced_messages (schema 4): mail that belongs to a mailbox without passing through its
// Microsoft 365 account (BCC ingestion, docs/bcc.md; the IMAP sync engine uses the same table and
// event). Functions run inside a transaction of the storage thread (SqliteQueueStore::write);
// they never commit. The event each stored message gets, message.received, is added in the same
// transaction, so a reader of /v1/events never sees an event without its row or the reverse.
#pragma once

#include "base/error.h"
#include "gateway/store/message_queries.h"
#include "relay/bcc_ingest.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace mailgate::store {

class QueueTables;
class SqliteQueueStore;

// One message to store, and the facts its message.received event carries.
struct SyncedMessage {
  std::string tenant;
  std::string mailbox; // the mailbox's primary address
  std::string folder;  // "bcc" for BCC ingestion
  int64_t uidvalidity = 0;
  std::string message_id; // "<...>", or empty
  std::vector<std::string> flags;
  std::string raw; // the whole RFC 5322 message
  // For the event only.
  std::string direction; // "outgoing" (sent by the mailbox) or "incoming"
  std::string source;    // "bcc", ...
  std::string from;
  std::vector<std::string> to;
  std::vector<std::string> cc;
  std::string subject;
  std::string date; // RFC 3339, or the Date field as written
};

// The data of message.received for `m` stored as `uid`: {"message_id", "folder", "uid",
// "uidvalidity", "direction", "source", "from", "to", "cc", "subject", "date", "size", "flags"}.
[[nodiscard]] std::string messageReceivedData(const SyncedMessage& m, int64_t uid);

// Stores `m` with the next uid of its mailbox, folder and uidvalidity (the highest + 1; 1 for the
// first), stamped now_ms (synced_ms, and internal_date in RFC 3339), and adds message.received
// (tenant and mailbox of `m`). Returns the uid.
[[nodiscard]] Result<int64_t> insertSyncedMessage(QueueTables& t, const SyncedMessage& m,
                                                  int64_t now_ms);

// The uids stored for a mailbox and folder, ascending (tests and tools).
[[nodiscard]] Result<std::vector<int64_t>> syncedUids(QueueTables& t, const std::string& mailbox,
                                                      const std::string& folder);

// What storeBcc did.
struct BccOutcome {
  relay::BccReceipt receipt;
  // The Idempotency-Key named a message already stored: nothing new was stored (no copy either:
  // the first request made it). `first` is that message.
  bool replayed = false;
  relay::QueuedMessage first;
};

// One BCC submission in one transaction: queues `s.message` when it has recipients (with `key`
// through enqueueIdempotent, else enqueue; a message without recipients is not queued and the key
// is not recorded), stores one copy per s.copies from `facts` (its tenant and mailbox replaced by
// the copy's; folder "bcc", uidvalidity 0, direction "outgoing", source "bcc", no flags), and adds
// a message.bcc_skipped event per s.skipped, of the message's tenant and mailbox, data
// {"address", "tenant" (the bcc_address's), "sender", "message_id", "queue_id" (null when none)}.
[[nodiscard]] Result<BccOutcome> storeBcc(QueueTables& t, const relay::BccSubmission& s,
                                          const SyncedMessage& facts,
                                          const std::optional<IdempotencyKey>& key, int64_t ttl_ms);

// storeBcc through store.write(): `done` runs on the loop once the commit is durable.
void submitBcc(SqliteQueueStore& store, relay::BccSubmission s, SyncedMessage facts,
               std::optional<IdempotencyKey> key, std::function<void(Result<BccOutcome>)> done);

} // namespace mailgate::store

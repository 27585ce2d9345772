// What the sync engine (imap/sync_engine.h) keeps durably, as plain values, and the interface of
// the store that keeps it (gateway/store/sync_tables.h implements it over SQLite). imap/ knows
// nothing of the store: it hands over values and gets results back on the loop thread.
#pragma once

#include "base/error.h"
#include "imap/sync_status.h"

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace mailgate::imap {

struct SyncedAddress {
  std::string name;  // display name as the server gave it (RFC 2047 words not decoded)
  std::string email; // local@domain
};

// One message fetched from the server.
struct FetchedMessage {
  uint32_t uid = 0;
  std::vector<std::string> flags;
  std::string internal_date; // as the server sent it
  uint64_t size = 0;         // RFC822.SIZE
  std::string raw;           // BODY[]: the whole message, byte for byte
  // From the server's ENVELOPE.
  std::string message_id, subject, date, in_reply_to;
  std::vector<SyncedAddress> from, to, cc;
};

// The identity and direction every event of a folder carries.
struct SyncOwner {
  std::string tenant;
  std::string mailbox;
};

// One step of a folder's sync, stored in one transaction: the new state, the messages (each
// stored once per (mailbox, role, uidvalidity, uid): a message already stored is skipped and gets
// no second event), one message.received event per message stored, and a sync.progress event
// when `progress` is set.
struct SyncCommit {
  SyncOwner owner;
  FolderSyncState state;
  std::vector<FetchedMessage> messages;
  std::string direction; // "incoming" (INBOX and extra folders) or "outgoing" (Sent)
  bool progress = false;
  double rate_per_s = 0; // for the progress event's estimate
};

class SyncStore {
public:
  virtual ~SyncStore() = default;
  // The stored state of every folder of `owner.mailbox` (an unknown mailbox has none).
  virtual void loadFolders(SyncOwner owner,
                           std::function<void(Result<std::vector<FolderSyncState>>)> done) = 0;
  // Stores `commit`; `done` gets how many messages were new.
  virtual void commit(SyncCommit commit, std::function<void(Result<uint64_t>)> done) = 0;
  // The folder's UIDVALIDITY changed from `old_uidvalidity`: stores `fresh` and emits
  // mailbox.reset in the same transaction. Messages of the old UIDVALIDITY are kept.
  // Flags as the server has them now, for messages already stored: each that differs from the
  // stored flags is updated and gets a message.updated event; unknown UIDs are ignored. `state`
  // is stored too (its highest_modseq after a CHANGEDSINCE scan). `done` gets how many changed.
  using FlagUpdate = std::pair<uint32_t, std::vector<std::string>>;
  virtual void updateFlags(SyncOwner owner, FolderSyncState state, std::vector<FlagUpdate> flags,
                           std::function<void(Result<uint64_t>)> done) = 0;
  virtual void reset(SyncOwner owner, FolderSyncState fresh, uint32_t old_uidvalidity,
                     std::function<void(Result<void>)> done) = 0;
};

} // namespace mailgate::imap

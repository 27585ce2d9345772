// imap::SyncStore over the SQLite store: the sync_folders and synced_messages tables of schema 4
// and the outbox events of the sync (message.received, sync.progress, mailbox.reset), each
// written in the transaction of the state change it reports. docs/sync.md has the event shapes.
#pragma once

#include "gateway/store/sqlite_queue_store.h"
#include "imap/sync_store.h"

namespace mailgate::store {

class SqliteSyncStore final : public imap::SyncStore {
public:
  // `store` must outlive this object.
  explicit SqliteSyncStore(SqliteQueueStore& store) : store_(store) {}

  void loadFolders(imap::SyncOwner owner,
                   std::function<void(Result<std::vector<imap::FolderSyncState>>)> done) override;
  void commit(imap::SyncCommit commit, std::function<void(Result<uint64_t>)> done) override;
  void updateFlags(imap::SyncOwner owner, imap::FolderSyncState state,
                   std::vector<FlagUpdate> flags,
                   std::function<void(Result<uint64_t>)> done) override;
  void reset(imap::SyncOwner owner, imap::FolderSyncState fresh, uint32_t old_uidvalidity,
             std::function<void(Result<void>)> done) override;

private:
  SqliteQueueStore& store_;
};

// The data of a message.received event for `m` (exposed for tests).
[[nodiscard]] std::string receivedEventData(const imap::FolderSyncState& folder,
                                            const imap::FetchedMessage& m,
                                            std::string_view direction);

} // namespace mailgate::store

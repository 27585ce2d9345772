// Mailbox connections made through the API (schema 5, mailbox_connections): the last connect or
// disconnect of each mailbox, laid over the configuration file at start and on every reload.
#pragma once

#include "gateway/store/sqlite_queue_store.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mailgate::store {

struct MailboxConnection {
  std::string mailbox; // the primary address as configured
  std::string tenant;
  bool connected = false;
  std::string method; // "app_password" or "oauth2" (connected only)
  std::string secret; // the App Password or refresh token (connected only)
  std::string actor;  // who did it ("API token crm")
  int64_t updated_ms = 0;
};

// Every stored connection; blocks (start-up only, before the loop runs).
[[nodiscard]] Result<std::vector<MailboxConnection>> loadConnections(SqliteQueueStore& store);

// Stores `c` (replacing the mailbox's row) with a mailbox.connected or mailbox.disconnected
// event in the same transaction. A disconnect with keep_synced false also deletes what was
// synced from the mailbox (synced_messages, sync_folders); its events stay in the outbox.
// `done` gets how many synced messages were deleted.
void saveConnection(SqliteQueueStore& store, MailboxConnection c, bool keep_synced,
                    std::function<void(Result<uint64_t>)> done);

} // namespace mailgate::store

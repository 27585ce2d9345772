// The sync side of one mailbox as the store keeps it and the control API shows it. Plain data,
// standard library only (the API links it without the sync engine).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mailgate::imap {

// The sync state of one folder of one mailbox. UIDs in [low_uid, top_uid] of `uidvalidity` are
// synced; the backfill walks low_uid down (newest mail first), new mail arrives above top_uid.
struct FolderSyncState {
  std::string role;         // "inbox", "sent", or an extra folder's configured name: the stable key
  std::string name;         // the server's name (UTF-8) last selected
  uint32_t uidvalidity = 0; // 0: never selected
  uint64_t highest_modseq = 0;
  uint32_t top_uid = 0;
  uint32_t low_uid = 1;
  bool backfill_done = false;
  uint64_t total = 0;     // messages known in the folder (EXISTS when the backfill started, + new)
  uint64_t done = 0;      // messages synced in this uidvalidity
  int64_t started_ms = 0; // wall clock: the backfill of this uidvalidity began
  int64_t updated_ms = 0; // wall clock: the last commit

  bool operator==(const FolderSyncState&) const = default;
};

struct FolderSyncStatus {
  FolderSyncState state;
  double rate_per_s = 0;    // backfill messages per second in this run; 0: none yet
  int64_t eta_seconds = -1; // -1: unknown or done

  bool operator==(const FolderSyncStatus&) const = default;
};

struct MailboxSyncStatus {
  // "starting" (loading state), "backfill", "live" (every backfill done), "waiting" (for a
  // session, or after an error), "stopped".
  std::string phase = "starting";
  std::vector<FolderSyncStatus> folders;
  uint64_t fetched = 0; // messages fetched since start
  std::string last_error_code, last_error;
  int64_t last_error_at_ms = 0;
  int64_t last_cycle_ms = 0; // wall clock of the last completed cycle

  bool operator==(const MailboxSyncStatus&) const = default;
};

} // namespace mailgate::imap

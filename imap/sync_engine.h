// The sync of one mailbox (sync: two_way): INBOX, the Sent folder and configured extra folders,
// each from its stored state (imap/sync_store.h). A cycle leases one session from the mailbox's
// pool and, folder after folder: EXAMINEs it; when its UIDVALIDITY changed, resets it (stored
// with a mailbox.reset event); fetches what is new above the synced range (oldest first, so
// the CRM sees a thread in order); then spends up to a time slice on the backfill, newest first,
// before the next folder gets its turn. Cycles repeat until every backfill is done, then the
// engine waits for an IDLE push on INBOX (the pool's IDLE session) or the periodic check.
//
// New mail is found from UIDNEXT and a UID FETCH of what lies above the synced range, so no
// CONDSTORE is needed (Microsoft 365 has none). Messages go to the store in batches bounded in
// count and bytes; each batch is one transaction holding the messages, the folder's new state
// and their events, so a restart resumes at the last committed batch and nothing is emitted
// twice. Up to two batches may be committing while the next is fetched.
//
// Threading: loop thread only. The pool and the store must outlive the engine.
#pragma once

#include "imap/mailbox_pool.h"
#include "imap/sync_store.h"
#include "net/backoff.h"
#include "net/timer.h"

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mailgate::net {
class Loop;
}

namespace mailgate::imap {

struct SyncEngineSettings {
  SyncOwner owner;
  std::string sent_folder;                   // mailboxes[].imap.sent_folder (last resort)
  std::vector<std::string> extra_folders;    // UTF-8 names, synced as "incoming"
  size_t batch_messages = 250;               // messages per fetch and commit at most
  uint64_t batch_bytes = 8ull * 1024 * 1024; // RFC822.SIZE per batch at most (one bigger message
                                             // goes alone)
  // Flag changes without CONDSTORE (Microsoft 365): each live cycle reads the flags of the newest
  // flag_recent messages of a folder and of the next flag_chunk of the rest, walking down and
  // wrapping, so a mailbox of N messages is covered every N / flag_chunk cycles. With CONDSTORE
  // one UID FETCH CHANGEDSINCE per cycle does it.
  uint32_t flag_recent = 500;
  uint32_t flag_chunk = 5000;
  size_t max_committing = 2; // batches committing while the next is fetched
  std::chrono::milliseconds slice{std::chrono::seconds(20)};         // backfill per folder per turn
  std::chrono::milliseconds check_interval{std::chrono::minutes(2)}; // every folder
  std::chrono::milliseconds progress_interval{std::chrono::seconds(10)}; // sync.progress events
  std::chrono::milliseconds push_delay{std::chrono::milliseconds(200)};  // gathers a burst
  net::BackoffOptions retry{std::chrono::seconds(2), std::chrono::minutes(5), 2.0, 0.2, {}};
};

class SyncEngine {
public:
  SyncEngine(net::Loop& loop, MailboxPool& pool, SyncStore& store, SyncEngineSettings settings);
  ~SyncEngine();
  SyncEngine(const SyncEngine&) = delete;
  SyncEngine& operator=(const SyncEngine&) = delete;

  // Loads the stored state, then starts the first cycle.
  void start();
  // New mail or a change was signalled (an IDLE push): a cycle runs soon.
  void poke();
  // Gives the session back and does nothing more (commits already handed to the store finish).
  void stop();

  void statusInto(MailboxSyncStatus& out) const;

private:
  struct Folder {
    FolderSyncState state;
    bool resolved = false;                            // its server name is known
    std::vector<std::pair<uint32_t, uint64_t>> older; // backfill to do: (uid, size), ascending
    bool older_listed = false;                        // `older` is the server's list
    int64_t run_started_ms = 0;                       // this run's backfill, for the rate
    uint64_t run_done = 0;
    int64_t last_progress_ms = 0;
    uint32_t exists = 0;        // at the last EXAMINE
    uint64_t modseq_seen = 0;   // HIGHESTMODSEQ at the last EXAMINE (CONDSTORE servers)
    uint32_t flag_cursor = 0;   // the rolling flag scan's next sequence number (0: from the top)
    uint64_t flags_run = ~0ull; // the cycle that scanned this folder's flags
  };

  void loaded(Result<std::vector<FolderSyncState>> result);
  void scheduleCycle(std::chrono::milliseconds delay);
  void cycle();
  void leased(Result<LeasePtr> lease);
  void resolveFolders();
  void nextFolder();
  void selected(Folder& f, SelectInfo info);
  void afterReset(Folder& f, const SelectInfo& info);
  void listRange(Folder& f, uint32_t first, bool older);
  void fetchNewer(Folder& f, std::vector<std::pair<uint32_t, uint64_t>> newer);
  void backfill(Folder& f);
  void scanFlags(Folder& f);
  void storeFlags(Folder& f, std::vector<SyncStore::FlagUpdate> flags, bool condstore);
  void fetchBatch(Folder& f, std::vector<uint32_t> uids, bool older, std::function<void()> then);
  void submit(Folder& f, SyncCommit commit, std::function<void()> then);
  void folderDone();
  void finishCycle();
  void abortCycle(const Error& error);
  void fail(const Error& error);
  [[nodiscard]] bool current(uint64_t run) const { return run == run_ && !stopped_; }
  [[nodiscard]] int64_t wallMs() const;
  [[nodiscard]] Session* session();

  net::Loop& loop_;
  MailboxPool& pool_;
  SyncStore& store_;
  SyncEngineSettings settings_;
  std::vector<Folder> folders_; // inbox, sent, extras: the order of a cycle
  bool loaded_ = false;
  bool stopped_ = false;
  bool running_ = false;
  bool poked_ = false;
  bool listed_ = false; // the folder names are resolved (LIST ran in this process)
  uint64_t run_ = 0;    // bumped when a cycle ends: stale callbacks check it
  size_t folder_index_ = 0;
  int64_t slice_end_ms_ = 0;
  size_t committing_ = 0;
  std::function<void()> when_committed_; // a fetch waiting for a commit slot
  LeaseRequestPtr lease_request_;
  LeasePtr lease_;
  net::TimerPtr timer_;
  net::Backoff retry_;
  MailboxSyncStatus status_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

} // namespace mailgate::imap

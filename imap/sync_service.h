// The sync engines of every mailbox with `sync: two_way` and an IMAP pool, built from the
// configuration after ImapService::apply and kept in step with it on reload. The IDLE pushes of
// each pool wake its engine. Loop thread only; the ImapService and the store must outlive it.
#pragma once

#include "config/config.h"
#include "imap/imap_service.h"
#include "imap/sync_engine.h"
#include "imap/sync_store.h"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace mailgate::imap {

class SyncService {
public:
  // `tune` may adjust each engine's settings before it starts (tests shorten intervals).
  SyncService(net::Loop& loop, ImapService& imap, SyncStore& store,
              std::function<void(SyncEngineSettings&)> tune = {});
  ~SyncService();
  SyncService(const SyncService&) = delete;
  SyncService& operator=(const SyncService&) = delete;

  // Call after imap.apply(config): engines for the two_way mailboxes that have a pool; engines of
  // mailboxes that are gone, changed mode, or got a new pool are stopped (their stored state
  // stays).
  void apply(const config::Config& config);
  // Stops every engine (SIGTERM); commits already handed to the store still finish.
  void stop();

  // The sync side of `address` (any case); false when it has no engine.
  bool status(std::string_view address, MailboxSyncStatus& out) const;
  [[nodiscard]] std::size_t engineCount() const { return engines_.size(); }

private:
  struct Entry {
    MailboxPool* pool = nullptr;
    SyncEngineSettings settings;
    std::unique_ptr<SyncEngine> engine;
  };
  void remove(std::map<std::string, Entry, std::less<>>::iterator it);

  net::Loop& loop_;
  ImapService& imap_;
  SyncStore& store_;
  std::function<void(SyncEngineSettings&)> tune_;
  std::map<std::string, Entry, std::less<>> engines_; // by lower-case address
};

} // namespace mailgate::imap

#include "imap/sync_service.h"

#include "config/values.h"

#include <utility>
#include <vector>

namespace mailgate::imap {

SyncService::SyncService(net::Loop& loop, ImapService& imap, SyncStore& store,
                         std::function<void(SyncEngineSettings&)> tune)
    : loop_(loop), imap_(imap), store_(store), tune_(std::move(tune)) {}

SyncService::~SyncService() {
  stop();
}

void SyncService::remove(std::map<std::string, Entry, std::less<>>::iterator it) {
  it->second.engine->stop();
  if (imap_.pool(it->first) == it->second.pool) {
    it->second.pool->setPushHandler({});
    it->second.pool->setWatchHandler({});
  }
  engines_.erase(it);
}

void SyncService::apply(const config::Config& config) {
  std::map<std::string, std::pair<SyncEngineSettings, MailboxPool*>, std::less<>> wanted;
  for (const auto& tenant : config.tenants) {
    for (const auto& mailbox : tenant.mailboxes) {
      if (mailbox.sync != config::SyncMode::kTwoWay) {
        continue;
      }
      const std::string key = config::lowerAscii(mailbox.address);
      MailboxPool* pool = imap_.pool(key);
      if (pool == nullptr) {
        continue;
      }
      SyncEngineSettings s;
      s.owner = SyncOwner{tenant.id, mailbox.address};
      s.sent_folder = mailbox.imap_sent_folder;
      s.extra_folders = mailbox.imap_sync_folders;
      if (tune_) {
        tune_(s);
      }
      wanted.emplace(key, std::make_pair(std::move(s), pool));
    }
  }
  for (auto it = engines_.begin(); it != engines_.end();) {
    auto w = wanted.find(it->first);
    const bool keep = w != wanted.end() && w->second.second == it->second.pool &&
                      w->second.first.owner.tenant == it->second.settings.owner.tenant &&
                      w->second.first.owner.mailbox == it->second.settings.owner.mailbox &&
                      w->second.first.sent_folder == it->second.settings.sent_folder &&
                      w->second.first.extra_folders == it->second.settings.extra_folders;
    auto next = std::next(it);
    if (!keep) {
      remove(it);
    }
    it = next;
  }
  for (auto& [key, want] : wanted) {
    if (engines_.count(key) != 0) {
      continue;
    }
    Entry e;
    e.pool = want.second;
    e.settings = want.first;
    e.engine = std::make_unique<SyncEngine>(loop_, *e.pool, store_, want.first);
    SyncEngine* engine = e.engine.get();
    e.pool->setPushHandler([engine](const protocol::UntaggedData&) { engine->poke(); });
    e.pool->setWatchHandler([engine] { engine->poke(); });
    engine->start();
    engines_.emplace(key, std::move(e));
  }
}

void SyncService::stop() {
  while (!engines_.empty()) {
    remove(engines_.begin());
  }
}

bool SyncService::status(std::string_view address, MailboxSyncStatus& out) const {
  auto it = engines_.find(config::lowerAscii(address));
  if (it == engines_.end()) {
    return false;
  }
  it->second.engine->statusInto(out);
  return true;
}

} // namespace mailgate::imap

#include "imap/sync_engine.h"

#include "imap/protocol/sequence_set.h"
#include "imap/sent_folder.h"
#include "net/loop.h"

#include <algorithm>
#include <chrono>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <variant>

namespace mailgate::imap {
namespace {

constexpr std::string_view kInbox = "inbox";
constexpr std::string_view kSent = "sent";
constexpr std::string_view kFetchItems =
    "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY.PEEK[])";

// Flags as the CRM sees them: \Recent is a per-session flag (gone in IMAP4rev2) that says
// nothing about the message.
std::vector<std::string> persistentFlags(std::vector<std::string> flags) {
  std::erase_if(flags, [](const std::string& f) {
    return f.size() == 7 && (f[0] == '\\') &&
           std::equal(f.begin() + 1, f.end(), "recent",
                      [](char a, char b) { return (a | 0x20) == b; });
  });
  return flags;
}

std::vector<SyncedAddress> addresses(const std::vector<protocol::Address>& in) {
  std::vector<SyncedAddress> out;
  out.reserve(in.size());
  for (const auto& a : in) {
    std::string email = a.email();
    if (!email.empty()) {
      out.push_back(SyncedAddress{a.name, std::move(email)});
    }
  }
  return out;
}

FetchedMessage toMessage(protocol::FetchData&& d) {
  FetchedMessage m;
  m.uid = d.uid.value_or(0);
  if (d.flags) {
    m.flags = persistentFlags(std::move(*d.flags));
  }
  m.internal_date = d.internal_date.value_or("");
  m.size = d.rfc822_size.value_or(0);
  for (auto& s : d.sections) {
    if (s.section.empty() && s.data) {
      m.raw = std::move(*s.data);
    }
  }
  if (m.size == 0) {
    m.size = m.raw.size();
  }
  if (d.envelope) {
    auto& e = *d.envelope;
    m.message_id = std::move(e.message_id);
    m.subject = std::move(e.subject);
    m.date = std::move(e.date);
    m.in_reply_to = std::move(e.in_reply_to);
    m.from = addresses(e.from);
    m.to = addresses(e.to);
    m.cc = addresses(e.cc);
  }
  return m;
}

} // namespace

SyncEngine::SyncEngine(net::Loop& loop, MailboxPool& pool, SyncStore& store,
                       SyncEngineSettings settings)
    : loop_(loop), pool_(pool), store_(store), settings_(std::move(settings)),
      timer_(net::Timer::create(loop)), retry_(settings_.retry) {
  auto add = [&](std::string role, std::string name, bool resolved) {
    Folder f;
    f.state.role = std::move(role);
    f.state.name = std::move(name);
    f.resolved = resolved;
    folders_.push_back(std::move(f));
  };
  add(std::string(kInbox), "INBOX", true);
  add(std::string(kSent), "", false);
  for (const auto& name : settings_.extra_folders) {
    add(name, name, false);
  }
}

SyncEngine::~SyncEngine() {
  *alive_ = false;
}

int64_t SyncEngine::wallMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Session* SyncEngine::session() {
  return lease_ ? &lease_->session() : nullptr;
}

void SyncEngine::start() {
  status_.phase = "starting";
  std::weak_ptr<bool> alive = alive_;
  store_.loadFolders(settings_.owner, [this, alive](Result<std::vector<FolderSyncState>> r) {
    if (!alive.expired()) {
      loaded(std::move(r));
    }
  });
}

void SyncEngine::loaded(Result<std::vector<FolderSyncState>> result) {
  if (stopped_) {
    return;
  }
  if (!result) {
    fail(result.error());
    return;
  }
  for (auto& stored : *result) {
    for (auto& f : folders_) {
      if (f.state.role == stored.role) {
        const bool resolved = f.resolved;
        const std::string configured = f.state.name;
        f = Folder{};
        f.state = std::move(stored);
        f.resolved = resolved;
        if (resolved) {
          f.state.name = configured; // INBOX is always INBOX
        }
      }
    }
  }
  loaded_ = true;
  scheduleCycle(std::chrono::milliseconds(0));
}

void SyncEngine::poke() {
  poked_ = true;
  if (loaded_ && !running_ && !stopped_) {
    scheduleCycle(settings_.push_delay);
  }
}

void SyncEngine::stop() {
  stopped_ = true;
  ++run_;
  timer_->stop();
  lease_request_.reset();
  lease_.reset();
  running_ = false;
  status_.phase = "stopped";
}

void SyncEngine::scheduleCycle(std::chrono::milliseconds delay) {
  std::weak_ptr<bool> alive = alive_;
  timer_->start(delay, [this, alive] {
    if (!alive.expired()) {
      cycle();
    }
  });
}

void SyncEngine::cycle() {
  if (running_ || stopped_ || !loaded_) {
    return;
  }
  running_ = true;
  poked_ = false;
  status_.phase = "waiting";
  std::weak_ptr<bool> alive = alive_;
  const uint64_t run = run_;
  lease_request_ = pool_.lease([this, alive, run](Result<LeasePtr> r) {
    if (!alive.expired() && current(run)) {
      leased(std::move(r));
    }
  });
}

void SyncEngine::leased(Result<LeasePtr> lease) {
  lease_request_.reset();
  if (!lease) {
    abortCycle(lease.error());
    return;
  }
  lease_ = std::move(*lease);
  status_.phase = "backfill";
  folder_index_ = 0;
  if (listed_) {
    nextFolder();
    return;
  }
  resolveFolders();
}

void SyncEngine::resolveFolders() {
  std::weak_ptr<bool> alive = alive_;
  const uint64_t run = run_;
  session()->list([this, alive, run](Result<std::vector<FolderInfo>> r) {
    if (alive.expired() || !current(run)) {
      return;
    }
    if (!r) {
      abortCycle(r.error());
      return;
    }
    const std::string sent = findSentFolder(*r, settings_.sent_folder);
    for (auto& f : folders_) {
      if (f.state.role == kInbox) {
        continue;
      }
      if (f.state.role == kSent) {
        f.resolved = !sent.empty();
        if (f.resolved) {
          f.state.name = sent;
        }
        continue;
      }
      f.resolved = std::any_of(r->begin(), r->end(), [&](const FolderInfo& info) {
        return info.name == f.state.role && info.selectable();
      });
      f.state.name = f.state.role;
    }
    listed_ = true;
    nextFolder();
  });
}

void SyncEngine::nextFolder() {
  while (folder_index_ < folders_.size() && !folders_[folder_index_].resolved) {
    ++folder_index_;
  }
  if (folder_index_ >= folders_.size()) {
    const bool more = std::any_of(folders_.begin(), folders_.end(), [](const Folder& f) {
      return f.resolved && !f.state.backfill_done;
    });
    if (more || poked_) {
      poked_ = false;
      folder_index_ = 0;
      nextFolder();
      return;
    }
    finishCycle();
    return;
  }
  Folder& f = folders_[folder_index_];
  std::weak_ptr<bool> alive = alive_;
  const uint64_t run = run_;
  session()->select(f.state.name, true, [this, alive, run, &f](Result<SelectInfo> r) {
    if (alive.expired() || !current(run)) {
      return;
    }
    if (!r) {
      abortCycle(r.error());
      return;
    }
    selected(f, std::move(*r));
  });
}

void SyncEngine::selected(Folder& f, SelectInfo info) {
  const uint32_t uidvalidity = info.uidvalidity.value_or(0);
  if (f.state.uidvalidity != 0 && uidvalidity != 0 && uidvalidity != f.state.uidvalidity) {
    const uint32_t old = f.state.uidvalidity;
    spdlog::warn("sync mailbox={} folder={}: UIDVALIDITY changed from {} to {}; the folder is "
                 "synced again from the start",
                 settings_.owner.mailbox, f.state.name, old, uidvalidity);
    const std::string role = f.state.role, name = f.state.name;
    f = Folder{};
    f.resolved = true;
    f.state.role = role;
    f.state.name = name;
    f.state.uidvalidity = uidvalidity;
    f.state.started_ms = wallMs();
    f.state.updated_ms = f.state.started_ms;
    std::weak_ptr<bool> alive = alive_;
    const uint64_t run = run_;
    store_.reset(settings_.owner, f.state, old,
                 [this, alive, run, &f, info = std::move(info)](Result<void> r) {
                   if (alive.expired() || !current(run)) {
                     return;
                   }
                   if (!r) {
                     fail(r.error());
                     return;
                   }
                   afterReset(f, info);
                 });
    return;
  }
  afterReset(f, info);
}

void SyncEngine::afterReset(Folder& f, const SelectInfo& info) {
  if (f.state.uidvalidity == 0 || (f.state.top_uid == 0 && !f.state.backfill_done)) {
    // First sight of this folder (or of its new UIDVALIDITY): list everything once; the newest
    // UID becomes the top and the backfill walks down from it.
    f.state.uidvalidity = info.uidvalidity.value_or(0);
    f.state.highest_modseq = info.highest_modseq.value_or(0);
    f.state.total = info.exists;
    f.exists = info.exists;
    f.modseq_seen = f.state.highest_modseq;
    if (f.state.started_ms == 0) {
      f.state.started_ms = wallMs();
    }
    listRange(f, 1, true);
    return;
  }
  f.exists = info.exists;
  f.modseq_seen = info.highest_modseq.value_or(0);
  const bool maybe_new = !info.uidnext || *info.uidnext > f.state.top_uid + 1;
  if (maybe_new && info.exists > 0) {
    listRange(f, f.state.top_uid + 1, false);
    return;
  }
  backfill(f);
}

void SyncEngine::listRange(Folder& f, uint32_t first, bool initial) {
  auto list = std::make_shared<std::vector<std::pair<uint32_t, uint64_t>>>();
  protocol::SequenceSet set;
  set.add(std::max<uint32_t>(first, 1), protocol::SequenceSet::kStar);
  std::weak_ptr<bool> alive = alive_;
  const uint64_t run = run_;
  session()->uidFetch(
      set, "(UID RFC822.SIZE)",
      [list, first](protocol::FetchData&& d) {
        if (d.uid && *d.uid >= first) {
          list->emplace_back(*d.uid, d.rfc822_size.value_or(0));
        }
      },
      [this, alive, run, &f, list, initial](Result<void> r) {
        if (alive.expired() || !current(run)) {
          return;
        }
        if (!r) {
          abortCycle(r.error());
          return;
        }
        std::sort(list->begin(), list->end());
        list->erase(std::unique(list->begin(), list->end()), list->end());
        if (initial) {
          f.older = std::move(*list);
          f.older_listed = true;
          f.state.top_uid = f.older.empty() ? 0 : f.older.back().first;
          f.state.low_uid = f.state.top_uid + 1;
          f.state.total = f.older.size();
          f.state.backfill_done = f.older.empty();
          backfill(f);
          return;
        }
        fetchNewer(f, std::move(*list));
      });
}

void SyncEngine::fetchNewer(Folder& f, std::vector<std::pair<uint32_t, uint64_t>> newer) {
  if (newer.empty()) {
    backfill(f);
    return;
  }
  // Oldest first, a batch at a time.
  std::vector<uint32_t> uids;
  uint64_t bytes = 0;
  size_t n = 0;
  while (n < newer.size() && uids.size() < settings_.batch_messages &&
         (uids.empty() || bytes + newer[n].second <= settings_.batch_bytes)) {
    uids.push_back(newer[n].first);
    bytes += newer[n].second;
    ++n;
  }
  newer.erase(newer.begin(), newer.begin() + static_cast<std::ptrdiff_t>(n));
  fetchBatch(f, std::move(uids), false,
             [this, &f, rest = std::move(newer)]() mutable { fetchNewer(f, std::move(rest)); });
}

void SyncEngine::backfill(Folder& f) {
  if (f.state.backfill_done) {
    scanFlags(f);
    return;
  }
  if (!f.older_listed) {
    // A restart (or a new cycle): the server's list below the synced range.
    if (f.state.low_uid <= 1) {
      f.older.clear();
      f.older_listed = true;
    } else {
      auto list = std::make_shared<std::vector<std::pair<uint32_t, uint64_t>>>();
      protocol::SequenceSet set;
      set.add(1, f.state.low_uid - 1);
      const uint32_t below = f.state.low_uid;
      std::weak_ptr<bool> alive = alive_;
      const uint64_t run = run_;
      session()->uidFetch(
          set, "(UID RFC822.SIZE)",
          [list, below](protocol::FetchData&& d) {
            if (d.uid && *d.uid < below) {
              list->emplace_back(*d.uid, d.rfc822_size.value_or(0));
            }
          },
          [this, alive, run, &f, list](Result<void> r) {
            if (alive.expired() || !current(run)) {
              return;
            }
            if (!r) {
              abortCycle(r.error());
              return;
            }
            std::sort(list->begin(), list->end());
            list->erase(std::unique(list->begin(), list->end()), list->end());
            f.older = std::move(*list);
            f.older_listed = true;
            backfill(f);
          });
      return;
    }
  }
  const int64_t now = wallMs();
  if (f.run_started_ms == 0) {
    f.run_started_ms = now;
  }
  if (slice_end_ms_ == 0) {
    slice_end_ms_ = now + settings_.slice.count();
  }
  if (f.older.empty()) {
    // Nothing left below: the last commit said so already unless the list was empty from the
    // start, and then this commit records it.
    f.state.backfill_done = true;
    f.state.total = f.state.done;
    SyncCommit c;
    c.owner = settings_.owner;
    c.state = f.state;
    c.direction = f.state.role == kSent ? "outgoing" : "incoming";
    c.progress = true;
    f.older_listed = false;
    submit(f, std::move(c), [this] { folderDone(); });
    return;
  }
  if (now >= slice_end_ms_ || poked_) {
    folderDone(); // the other folders (and new mail) get their turn
    return;
  }
  std::vector<uint32_t> uids;
  uint64_t bytes = 0;
  while (!f.older.empty() && uids.size() < settings_.batch_messages &&
         (uids.empty() || bytes + f.older.back().second <= settings_.batch_bytes)) {
    uids.push_back(f.older.back().first);
    bytes += f.older.back().second;
    f.older.pop_back();
  }
  fetchBatch(f, std::move(uids), true, [this, &f] { backfill(f); });
}

void SyncEngine::scanFlags(Folder& f) {
  if (f.flags_run == run_ || f.exists == 0 || f.state.done == 0) {
    folderDone();
    return;
  }
  f.flags_run = run_;
  std::weak_ptr<bool> alive = alive_;
  const uint64_t run = run_;
  auto got = std::make_shared<std::vector<SyncStore::FlagUpdate>>();
  const auto collect = [got](protocol::FetchData& d) {
    if (d.uid && d.flags) {
      got->emplace_back(*d.uid, persistentFlags(std::move(*d.flags)));
    }
  };
  if (session()->hasCapability("CONDSTORE") && f.state.highest_modseq > 0 && f.modseq_seen > 0) {
    if (f.modseq_seen <= f.state.highest_modseq) {
      folderDone(); // nothing changed since the last scan
      return;
    }
    protocol::SequenceSet all;
    all.add(1, protocol::SequenceSet::kStar);
    session()->uidFetch(
        all, fmt::format("(UID FLAGS) (CHANGEDSINCE {})", f.state.highest_modseq),
        [collect](protocol::FetchData&& d) { collect(d); },
        [this, alive, run, &f, got](Result<void> r) {
          if (alive.expired() || !current(run)) {
            return;
          }
          if (!r) {
            abortCycle(r.error());
            return;
          }
          storeFlags(f, std::move(*got), true);
        });
    return;
  }
  // By sequence number: the newest flag_recent, then the next chunk of the rolling walk.
  protocol::SequenceSet set;
  const uint32_t exists = f.exists;
  const uint32_t recent_from =
      exists > settings_.flag_recent ? exists - settings_.flag_recent + 1 : 1;
  set.add(recent_from, exists);
  if (recent_from > 1) {
    uint32_t top =
        f.flag_cursor == 0 || f.flag_cursor >= recent_from ? recent_from - 1 : f.flag_cursor;
    const uint32_t bottom = top > settings_.flag_chunk ? top - settings_.flag_chunk + 1 : 1;
    set.add(bottom, top);
    f.flag_cursor = bottom > 1 ? bottom - 1 : 0; // 0: the next walk starts at the top again
  }
  session()->run(
      [set](const std::string& tag, protocol::LiteralMode mode) {
        return protocol::CommandBuilder(tag, "FETCH", mode)
            .sequence(set)
            .raw("(UID FLAGS)")
            .build();
      },
      [this, alive, run, &f, got, collect](Result<CommandReply> r) {
        if (alive.expired() || !current(run)) {
          return;
        }
        if (!r) {
          abortCycle(r.error());
          return;
        }
        for (auto& u : r->untagged) {
          if (auto* d = std::get_if<protocol::FetchData>(&u)) {
            collect(*d);
          }
        }
        storeFlags(f, std::move(*got), false);
      });
}

void SyncEngine::storeFlags(Folder& f, std::vector<SyncStore::FlagUpdate> flags, bool condstore) {
  if (condstore) {
    f.state.highest_modseq = f.modseq_seen;
  } else if (flags.empty()) {
    folderDone();
    return;
  }
  std::weak_ptr<bool> alive = alive_;
  const uint64_t run = run_;
  store_.updateFlags(settings_.owner, f.state, std::move(flags),
                     [this, alive, run](Result<uint64_t> r) {
                       if (alive.expired()) {
                         return;
                       }
                       if (!r) {
                         fail(r.error());
                         return;
                       }
                       if (current(run)) {
                         folderDone();
                       }
                     });
}

void SyncEngine::fetchBatch(Folder& f, std::vector<uint32_t> uids, bool older,
                            std::function<void()> then) {
  auto got = std::make_shared<std::vector<FetchedMessage>>();
  got->reserve(uids.size());
  const uint32_t lowest = *std::min_element(uids.begin(), uids.end());
  const uint32_t highest = *std::max_element(uids.begin(), uids.end());
  auto set = protocol::SequenceSet::fromNumbers(std::move(uids));
  std::weak_ptr<bool> alive = alive_;
  const uint64_t run = run_;
  session()->uidFetch(
      std::move(set), std::string(kFetchItems),
      [got](protocol::FetchData&& d) {
        if (d.uid) {
          got->push_back(toMessage(std::move(d)));
        }
      },
      [this, alive, run, &f, got, older, lowest, highest,
       then = std::move(then)](Result<void> r) mutable {
        if (alive.expired() || !current(run)) {
          return;
        }
        if (!r) {
          abortCycle(r.error());
          return;
        }
        // A message expunged meanwhile is simply not there; the range moves past it.
        // Events go out in the walk's order: newest first in the backfill, oldest first above.
        std::sort(got->begin(), got->end(),
                  [older](const FetchedMessage& a, const FetchedMessage& b) {
                    return older ? a.uid > b.uid : a.uid < b.uid;
                  });
        status_.fetched += got->size();
        const int64_t now = wallMs();
        if (older) {
          f.state.low_uid = std::min(f.state.low_uid, lowest);
          f.run_done += got->size();
        } else {
          f.state.top_uid = std::max(f.state.top_uid, highest);
          f.state.total += got->size();
        }
        f.state.done += got->size();
        f.state.total = std::max(f.state.total, f.state.done);
        f.state.updated_ms = now;
        SyncCommit c;
        c.owner = settings_.owner;
        c.direction = f.state.role == kSent ? "outgoing" : "incoming";
        if (older && f.older.empty()) {
          f.state.backfill_done = true;
          f.state.total = f.state.done;
          f.older_listed = false;
          c.progress = true;
        } else if (older && now - f.last_progress_ms >= settings_.progress_interval.count()) {
          c.progress = true;
        }
        if (c.progress) {
          f.last_progress_ms = now;
        }
        const double secs = static_cast<double>(now - f.run_started_ms) / 1000.0;
        c.rate_per_s = secs > 0 ? static_cast<double>(f.run_done) / secs : 0;
        c.state = f.state;
        c.messages = std::move(*got);
        submit(f, std::move(c), std::move(then));
      });
}

void SyncEngine::submit(Folder& /*f*/, SyncCommit commit, std::function<void()> then) {
  ++committing_;
  std::weak_ptr<bool> alive = alive_;
  store_.commit(std::move(commit), [this, alive](Result<uint64_t> r) {
    if (alive.expired()) {
      return;
    }
    --committing_;
    if (!r) {
      fail(r.error());
      return;
    }
    retry_.reset();
    if (when_committed_ && committing_ < settings_.max_committing) {
      auto next = std::move(when_committed_);
      when_committed_ = nullptr;
      next();
    }
  });
  if (committing_ < settings_.max_committing) {
    then();
  } else {
    when_committed_ = std::move(then);
  }
}

void SyncEngine::folderDone() {
  ++folder_index_;
  slice_end_ms_ = 0;
  nextFolder();
}

void SyncEngine::finishCycle() {
  ++run_;
  lease_.reset();
  running_ = false;
  status_.phase = "live";
  status_.last_cycle_ms = wallMs();
  if (poked_) {
    scheduleCycle(settings_.push_delay);
  } else {
    scheduleCycle(settings_.check_interval);
  }
}

void SyncEngine::abortCycle(const Error& error) {
  if (lease_) {
    lease_->discard();
  }
  ++run_;
  lease_.reset();
  lease_request_.reset();
  when_committed_ = nullptr;
  running_ = false;
  status_.phase = "waiting";
  status_.last_error_code = error.code;
  status_.last_error = error.message;
  status_.last_error_at_ms = wallMs();
  for (auto& f : folders_) {
    f.older.clear();
    f.older_listed = false;
    f.run_started_ms = 0;
    f.run_done = 0;
  }
  const auto delay = retry_.next();
  spdlog::warn("sync mailbox={}: {} ({}); next try in {} ms", settings_.owner.mailbox,
               error.message, error.code, delay.count());
  scheduleCycle(delay);
}

void SyncEngine::fail(const Error& error) {
  // A store failure: what is in memory may be ahead of what is stored, so start over from the
  // store.
  abortCycle(error);
  loaded_ = false;
  timer_->stop();
  const auto delay = retry_.next();
  std::weak_ptr<bool> alive = alive_;
  timer_->start(delay, [this, alive] {
    if (!alive.expired() && !stopped_) {
      start();
    }
  });
}

void SyncEngine::statusInto(MailboxSyncStatus& out) const {
  out = status_;
  const bool backfilling = std::any_of(folders_.begin(), folders_.end(), [](const Folder& f) {
    return f.resolved && !f.state.backfill_done;
  });
  if (stopped_) {
    out.phase = "stopped";
  } else if (!loaded_) {
    out.phase = status_.last_error_code.empty() ? "starting" : "waiting";
  } else if (running_ && !lease_) {
    out.phase = "waiting";
  } else if (!running_ && status_.phase == "waiting") {
    out.phase = "waiting"; // after an error, until the next try
  } else {
    out.phase = backfilling || !listed_ ? "backfill" : "live";
  }
  out.folders.clear();
  const int64_t now = wallMs();
  for (const auto& f : folders_) {
    if (!f.resolved && f.state.uidvalidity == 0) {
      continue;
    }
    FolderSyncStatus s;
    s.state = f.state;
    if (!f.state.backfill_done && f.run_started_ms > 0 && now > f.run_started_ms &&
        f.run_done > 0) {
      s.rate_per_s =
          static_cast<double>(f.run_done) * 1000.0 / static_cast<double>(now - f.run_started_ms);
    }
    if (!f.state.backfill_done && s.rate_per_s > 0 && f.state.total >= f.state.done) {
      s.eta_seconds =
          static_cast<int64_t>(static_cast<double>(f.state.total - f.state.done) / s.rate_per_s);
    }
    out.folders.push_back(std::move(s));
  }
}

} // namespace mailgate::imap

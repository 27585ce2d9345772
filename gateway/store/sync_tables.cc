#include "gateway/store/sync_tables.h"

#include "gateway/store/json_writer.h"
#include "gateway/store/queue_tables.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace mailgate::store {
namespace {

constexpr std::string_view kUpsertFolder =
    "INSERT INTO sync_folders (mailbox, folder, tenant, name, uidvalidity, highest_modseq, "
    "top_uid, low_uid, backfill_done, total, done, started_ms, updated_ms) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) "
    "ON CONFLICT (mailbox, folder) DO UPDATE SET tenant = excluded.tenant, name = excluded.name, "
    "uidvalidity = excluded.uidvalidity, highest_modseq = excluded.highest_modseq, "
    "top_uid = excluded.top_uid, low_uid = excluded.low_uid, "
    "backfill_done = excluded.backfill_done, total = excluded.total, done = excluded.done, "
    "started_ms = excluded.started_ms, updated_ms = excluded.updated_ms";

constexpr std::string_view kSelectFolders =
    "SELECT folder, name, uidvalidity, highest_modseq, top_uid, low_uid, backfill_done, total, "
    "done, started_ms, updated_ms FROM sync_folders WHERE mailbox = ?1 ORDER BY folder";

constexpr std::string_view kInsertMessage =
    "INSERT OR IGNORE INTO synced_messages (mailbox, folder, uidvalidity, uid, tenant, "
    "message_id, flags, internal_date, size, synced_ms, raw) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

constexpr std::string_view kSelectFlags =
    "SELECT id, message_id, flags FROM synced_messages "
    "WHERE mailbox = ?1 AND folder = ?2 AND uidvalidity = ?3 AND uid = ?4";

constexpr std::string_view kUpdateFlags = "UPDATE synced_messages SET flags = ?2 WHERE id = ?1";

int64_t wallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<void> upsertFolder(QueueTables& t, const imap::SyncOwner& owner,
                          const imap::FolderSyncState& f) {
  auto st = t.cached(kUpsertFolder);
  if (!st) {
    return std::unexpected(st.error());
  }
  Statement& s = **st;
  StatementScope scope(s);
  s.bind(1, owner.mailbox).bind(2, f.role).bind(3, owner.tenant).bind(4, f.name);
  s.bind(5, int64_t{f.uidvalidity}).bind(6, static_cast<int64_t>(f.highest_modseq));
  s.bind(7, int64_t{f.top_uid}).bind(8, int64_t{f.low_uid});
  s.bind(9, int64_t{f.backfill_done ? 1 : 0}).bind(10, static_cast<int64_t>(f.total));
  s.bind(11, static_cast<int64_t>(f.done)).bind(12, f.started_ms).bind(13, f.updated_ms);
  return s.run();
}

void writeAddressList(JsonWriter& w, const std::vector<imap::SyncedAddress>& list) {
  w.beginArray();
  for (const auto& a : list) {
    w.value(a.email);
  }
  w.endArray();
}

void writeFolder(JsonWriter& w, const imap::FolderSyncState& f) {
  w.key("folder").value(f.name);
  w.key("folder_role").value(f.role);
}

std::string progressData(const imap::FolderSyncState& f, double rate) {
  JsonWriter w(256);
  w.beginObject();
  writeFolder(w, f);
  w.key("done").value(f.done);
  w.key("total").value(f.total);
  const uint64_t percent = f.backfill_done || f.total == 0 ? 100 : f.done * 100 / f.total;
  w.key("percent").value(percent);
  w.key("backfill_done").value(f.backfill_done);
  if (!f.backfill_done && rate > 0 && f.total > f.done) {
    w.key("eta_seconds")
        .value(static_cast<int64_t>(std::ceil(static_cast<double>(f.total - f.done) / rate)));
  } else {
    w.key("eta_seconds").null();
  }
  w.key("messages_per_second").value(static_cast<int64_t>(std::llround(rate)));
  w.endObject();
  return w.str();
}

// Sorted, so that a server listing the same flags in another order changes nothing.
std::string flagsText(std::vector<std::string> flags) {
  std::sort(flags.begin(), flags.end());
  std::string out;
  for (const auto& f : flags) {
    if (!out.empty()) {
      out += ' ';
    }
    out += f;
  }
  return out;
}

} // namespace

std::string receivedEventData(const imap::FolderSyncState& folder, const imap::FetchedMessage& m,
                              std::string_view direction) {
  JsonWriter w(512);
  w.beginObject();
  w.key("message_id").value(m.message_id);
  writeFolder(w, folder);
  w.key("uid").value(m.uid);
  w.key("uidvalidity").value(folder.uidvalidity);
  w.key("direction").value(direction);
  w.key("source").value("sync");
  w.key("from").value(m.from.empty() ? std::string_view() : std::string_view(m.from[0].email));
  w.key("to");
  writeAddressList(w, m.to);
  w.key("cc");
  writeAddressList(w, m.cc);
  w.key("subject").value(m.subject);
  w.key("date").value(m.date);
  w.key("in_reply_to").value(m.in_reply_to);
  w.key("internal_date").value(m.internal_date);
  w.key("size").value(m.size);
  w.key("flags").beginArray();
  for (const auto& f : m.flags) {
    w.value(f);
  }
  w.endArray();
  w.endObject();
  return w.str();
}

void SqliteSyncStore::loadFolders(
    imap::SyncOwner owner, std::function<void(Result<std::vector<imap::FolderSyncState>>)> done) {
  store_.read<std::vector<imap::FolderSyncState>>(
      [owner = std::move(owner)](QueueTables& t) -> Result<std::vector<imap::FolderSyncState>> {
        auto st = t.cached(kSelectFolders);
        if (!st) {
          return std::unexpected(st.error());
        }
        Statement& s = **st;
        StatementScope scope(s);
        s.bind(1, owner.mailbox);
        std::vector<imap::FolderSyncState> out;
        for (;;) {
          auto row = s.step();
          if (!row) {
            return std::unexpected(row.error());
          }
          if (!*row) {
            break;
          }
          imap::FolderSyncState f;
          f.role = s.text(0);
          f.name = s.text(1);
          f.uidvalidity = static_cast<uint32_t>(s.int64(2));
          f.highest_modseq = static_cast<uint64_t>(s.int64(3));
          f.top_uid = static_cast<uint32_t>(s.int64(4));
          f.low_uid = static_cast<uint32_t>(s.int64(5));
          f.backfill_done = s.int64(6) != 0;
          f.total = static_cast<uint64_t>(s.int64(7));
          f.done = static_cast<uint64_t>(s.int64(8));
          f.started_ms = s.int64(9);
          f.updated_ms = s.int64(10);
          out.push_back(std::move(f));
        }
        return out;
      },
      std::move(done));
}

void SqliteSyncStore::commit(imap::SyncCommit commit, std::function<void(Result<uint64_t>)> done) {
  auto shared = std::make_shared<imap::SyncCommit>(std::move(commit));
  store_.write<uint64_t>(
      [c = std::move(shared)](QueueTables& t) -> Result<uint64_t> {
        const imap::SyncCommit& commit = *c;
        if (auto r = upsertFolder(t, commit.owner, commit.state); !r) {
          return std::unexpected(r.error());
        }
        const int64_t now = wallMs();
        uint64_t added = 0;
        for (const auto& m : commit.messages) {
          auto st = t.cached(kInsertMessage);
          if (!st) {
            return std::unexpected(st.error());
          }
          Statement& s = **st;
          StatementScope scope(s);
          const std::string flags = flagsText(m.flags);
          s.bind(1, commit.owner.mailbox).bind(2, commit.state.role);
          s.bind(3, int64_t{commit.state.uidvalidity}).bind(4, int64_t{m.uid});
          s.bind(5, commit.owner.tenant).bind(6, m.message_id).bind(7, flags);
          s.bind(8, m.internal_date).bind(9, static_cast<int64_t>(m.size)).bind(10, now);
          s.bindBlob(11, m.raw);
          if (auto r = s.run(); !r) {
            return std::unexpected(r.error());
          }
          if (t.db().changes() == 0) {
            continue; // stored before (a batch done again): its event went out then
          }
          ++added;
          auto ev = t.addEvent(
              relay::EventRecord{"message.received", commit.owner.tenant, commit.owner.mailbox,
                                 receivedEventData(commit.state, m, commit.direction)},
              now);
          if (!ev) {
            return std::unexpected(ev.error());
          }
        }
        if (commit.progress) {
          auto ev = t.addEvent(relay::EventRecord{"sync.progress", commit.owner.tenant,
                                                  commit.owner.mailbox,
                                                  progressData(commit.state, commit.rate_per_s)},
                               now);
          if (!ev) {
            return std::unexpected(ev.error());
          }
        }
        return added;
      },
      std::move(done));
}

void SqliteSyncStore::updateFlags(imap::SyncOwner owner, imap::FolderSyncState state,
                                  std::vector<FlagUpdate> flags,
                                  std::function<void(Result<uint64_t>)> done) {
  auto shared = std::make_shared<std::vector<FlagUpdate>>(std::move(flags));
  store_.write<uint64_t>(
      [owner = std::move(owner), state = std::move(state),
       shared = std::move(shared)](QueueTables& t) -> Result<uint64_t> {
        if (auto r = upsertFolder(t, owner, state); !r) {
          return std::unexpected(r.error());
        }
        const int64_t now = wallMs();
        uint64_t changed = 0;
        for (const auto& [uid, list] : *shared) {
          const std::string now_flags = flagsText(list);
          int64_t row_id = 0;
          std::string message_id, before;
          {
            auto st = t.cached(kSelectFlags);
            if (!st) {
              return std::unexpected(st.error());
            }
            Statement& s = **st;
            StatementScope scope(s);
            s.bind(1, owner.mailbox).bind(2, state.role).bind(3, int64_t{state.uidvalidity});
            s.bind(4, int64_t{uid});
            auto row = s.step();
            if (!row) {
              return std::unexpected(row.error());
            }
            if (!*row) {
              continue; // not synced (yet): its flags come with it
            }
            row_id = s.int64(0);
            message_id = s.text(1);
            before = s.text(2);
          }
          if (before == now_flags) {
            continue;
          }
          auto st = t.cached(kUpdateFlags);
          if (!st) {
            return std::unexpected(st.error());
          }
          Statement& s = **st;
          StatementScope scope(s);
          s.bind(1, row_id).bind(2, now_flags);
          if (auto r = s.run(); !r) {
            return std::unexpected(r.error());
          }
          JsonWriter w(256);
          w.beginObject();
          w.key("message_id").value(message_id);
          writeFolder(w, state);
          w.key("uid").value(uid);
          w.key("uidvalidity").value(state.uidvalidity);
          w.key("flags").beginArray();
          for (const auto& f : list) {
            w.value(f);
          }
          w.endArray();
          w.key("previous_flags").beginArray();
          for (std::string_view rest = before; !rest.empty();) {
            const auto space = rest.find(' ');
            w.value(rest.substr(0, space));
            rest = space == std::string_view::npos ? std::string_view() : rest.substr(space + 1);
          }
          w.endArray();
          w.endObject();
          auto ev = t.addEvent(
              relay::EventRecord{"message.updated", owner.tenant, owner.mailbox, w.str()}, now);
          if (!ev) {
            return std::unexpected(ev.error());
          }
          ++changed;
        }
        return changed;
      },
      std::move(done));
}

void SqliteSyncStore::reset(imap::SyncOwner owner, imap::FolderSyncState fresh,
                            uint32_t old_uidvalidity, std::function<void(Result<void>)> done) {
  store_.write<void>(
      [owner = std::move(owner), fresh = std::move(fresh),
       old_uidvalidity](QueueTables& t) -> Result<void> {
        if (auto r = upsertFolder(t, owner, fresh); !r) {
          return r;
        }
        JsonWriter w(256);
        w.beginObject();
        writeFolder(w, fresh);
        w.key("old_uidvalidity").value(old_uidvalidity);
        w.key("uidvalidity").value(fresh.uidvalidity);
        w.key("reason").value("the server changed the folder's UIDVALIDITY: every message in it "
                              "is synced again and comes with new UIDs");
        w.endObject();
        return t.addEvent(relay::EventRecord{"mailbox.reset", owner.tenant, owner.mailbox, w.str()},
                          wallMs());
      },
      std::move(done));
}

} // namespace mailgate::store

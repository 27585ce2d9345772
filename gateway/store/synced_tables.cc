#include "gateway/store/synced_tables.h"

#include "gateway/store/json_writer.h"
#include "gateway/store/queue_tables.h"
#include "gateway/store/sqlite_queue_store.h"

#include <utility>

namespace mailgate::store {

namespace {

constexpr std::string_view kNextUid = "SELECT COALESCE(MAX(uid), 0) + 1 FROM synced_messages "
                                      "WHERE mailbox = ?1 AND folder = ?2 AND uidvalidity = ?3";
constexpr std::string_view kInsert =
    "INSERT INTO synced_messages (mailbox, folder, uidvalidity, uid, tenant, message_id, flags, "
    "internal_date, size, synced_ms, raw) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
constexpr std::string_view kUids =
    "SELECT uid FROM synced_messages WHERE mailbox = ?1 AND folder = ?2 ORDER BY uid";

void writeList(JsonWriter& w, const std::vector<std::string>& items) {
  w.beginArray();
  for (const auto& i : items) {
    w.value(i);
  }
  w.endArray();
}

std::string flagsJson(const std::vector<std::string>& flags) {
  JsonWriter w;
  writeList(w, flags);
  return w.take();
}

} // namespace

std::string messageReceivedData(const SyncedMessage& m, int64_t uid) {
  JsonWriter w(256);
  w.beginObject();
  w.key("message_id").value(m.message_id);
  w.key("folder").value(m.folder);
  w.key("uid").value(uid);
  w.key("uidvalidity").value(m.uidvalidity);
  w.key("direction").value(m.direction);
  w.key("source").value(m.source);
  w.key("from").value(m.from);
  w.key("to");
  writeList(w, m.to);
  w.key("cc");
  writeList(w, m.cc);
  w.key("subject").value(m.subject);
  w.key("date").value(m.date);
  w.key("size").value(static_cast<int64_t>(m.raw.size()));
  w.key("flags");
  writeList(w, m.flags);
  w.endObject();
  return w.take();
}

Result<int64_t> insertSyncedMessage(QueueTables& t, const SyncedMessage& m, int64_t now_ms) {
  int64_t uid = 0;
  {
    auto st = t.cached(kNextUid);
    if (!st) {
      return std::unexpected(std::move(st.error()));
    }
    StatementScope scope(**st);
    (*st)->bind(1, m.mailbox).bind(2, m.folder).bind(3, m.uidvalidity);
    auto row = (*st)->step();
    if (!row) {
      return std::unexpected(std::move(row.error()));
    }
    uid = *row ? (*st)->int64(0) : 1;
  }
  {
    auto st = t.cached(kInsert);
    if (!st) {
      return std::unexpected(std::move(st.error()));
    }
    const std::string flags = flagsJson(m.flags);
    const std::string internal_date = formatRfc3339(now_ms);
    StatementScope scope(**st);
    (*st)
        ->bind(1, m.mailbox)
        .bind(2, m.folder)
        .bind(3, m.uidvalidity)
        .bind(4, uid)
        .bind(5, m.tenant)
        .bind(6, m.message_id)
        .bind(7, flags)
        .bind(8, internal_date)
        .bind(9, static_cast<int64_t>(m.raw.size()))
        .bind(10, now_ms)
        .bindBlob(11, m.raw);
    if (auto r = (*st)->run(); !r) {
      return std::unexpected(std::move(r.error()));
    }
  }
  auto ev = t.addEvent(
      relay::EventRecord{"message.received", m.tenant, m.mailbox, messageReceivedData(m, uid)},
      now_ms);
  if (!ev) {
    return std::unexpected(std::move(ev.error()));
  }
  return uid;
}

Result<std::vector<int64_t>> syncedUids(QueueTables& t, const std::string& mailbox,
                                        const std::string& folder) {
  auto st = t.cached(kUids);
  if (!st) {
    return std::unexpected(std::move(st.error()));
  }
  StatementScope scope(**st);
  (*st)->bind(1, mailbox).bind(2, folder);
  std::vector<int64_t> uids;
  for (;;) {
    auto row = (*st)->step();
    if (!row) {
      return std::unexpected(std::move(row.error()));
    }
    if (!*row) {
      return uids;
    }
    uids.push_back((*st)->int64(0));
  }
}

Result<BccOutcome> storeBcc(QueueTables& t, const relay::BccSubmission& s,
                            const SyncedMessage& facts, const std::optional<IdempotencyKey>& key,
                            int64_t ttl_ms) {
  BccOutcome out;
  const relay::NewMessage& msg = s.message;
  if (!msg.recipients.empty()) {
    if (key) {
      auto r = t.enqueueIdempotent(msg, *key, ttl_ms);
      if (!r) {
        return std::unexpected(std::move(r.error()));
      }
      if (r->replayed) {
        out.replayed = true;
        out.receipt.queue_id = r->id;
        out.first = std::move(r->message);
        return out;
      }
      out.receipt.queue_id = std::move(r->id);
    } else {
      auto id = t.enqueue(msg);
      if (!id) {
        return std::unexpected(std::move(id.error()));
      }
      out.receipt.queue_id = std::move(*id);
    }
  }
  for (const auto& copy : s.copies) {
    SyncedMessage m = facts;
    m.tenant = copy.tenant;
    m.mailbox = copy.mailbox;
    m.folder = "bcc";
    m.uidvalidity = 0;
    m.direction = "outgoing";
    m.source = "bcc";
    m.flags.clear();
    m.raw = msg.body;
    auto uid = insertSyncedMessage(t, m, msg.now_ms);
    if (!uid) {
      return std::unexpected(std::move(uid.error()));
    }
    out.receipt.uids.push_back(*uid);
  }
  for (const auto& skip : s.skipped) {
    JsonWriter w(256);
    w.beginObject();
    w.key("address").value(skip.address);
    w.key("tenant").value(skip.tenant);
    w.key("sender").value(msg.mail_from);
    w.key("message_id").value(msg.message_id);
    w.key("queue_id");
    if (out.receipt.queue_id.empty()) {
      w.null();
    } else {
      w.value(out.receipt.queue_id);
    }
    w.endObject();
    auto ev = t.addEvent(
        relay::EventRecord{"message.bcc_skipped", msg.tenant, msg.mailbox, w.take()}, msg.now_ms);
    if (!ev) {
      return std::unexpected(std::move(ev.error()));
    }
  }
  return out;
}

void submitBcc(SqliteQueueStore& store, relay::BccSubmission s, SyncedMessage facts,
               std::optional<IdempotencyKey> key, std::function<void(Result<BccOutcome>)> done) {
  // Held by shared_ptr: the work may run twice (a retried batch) and must not move from them.
  auto sub = std::make_shared<const relay::BccSubmission>(std::move(s));
  auto f = std::make_shared<const SyncedMessage>(std::move(facts));
  store.write<BccOutcome>([sub, f, key = std::move(key), ttl = store.idempotencyTtlMs()](
                              QueueTables& t) { return storeBcc(t, *sub, *f, key, ttl); },
                          std::move(done));
}

} // namespace mailgate::store

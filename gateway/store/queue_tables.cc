#include "gateway/store/queue_tables.h"

#include "gateway/store/json_writer.h"
#include "gateway/store/message_queries.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fmt/format.h>
#include <limits>
#include <unordered_map>
#include <utility>

namespace mailgate::store {

using relay::DeliveryEffects;
using relay::MessageState;
using relay::QueuedMessage;
using relay::RecipientState;
using relay::RecipientStatus;

namespace {

// Propagates the error of a Result<U> out of a function returning Result<T>.
#define MG_TRY(expr)                                                                               \
  do {                                                                                             \
    if (auto mg_try_r = (expr); !mg_try_r) {                                                       \
      return std::unexpected(std::move(mg_try_r.error()));                                         \
    }                                                                                              \
  } while (false)

constexpr std::string_view kMessageColumns =
    "id, state, mail_from, submitter, tenant, mailbox, message_id, route, smtputf8, body_8bit, "
    "size, attempts, created_ms, next_attempt_ms, expires_at_ms, last_reply, priority, "
    "route_pinned, writeback";

// The route every Microsoft 365 attempt names; delivery through any other route (a relay) needs
// the Sent-folder write-back.
constexpr std::string_view kMicrosoft365Route = "microsoft365";

MessageState parseState(std::string_view s) {
  if (s == "sending") {
    return MessageState::kSending;
  }
  if (s == "sent") {
    return MessageState::kSent;
  }
  if (s == "deferred") {
    return MessageState::kDeferred;
  }
  if (s == "failed") {
    return MessageState::kFailed;
  }
  return MessageState::kQueued;
}

RecipientStatus parseStatus(std::string_view s) {
  if (s == "sent") {
    return RecipientStatus::kSent;
  }
  if (s == "failed") {
    return RecipientStatus::kFailed;
  }
  return RecipientStatus::kPending;
}

// Reads the columns listed in kMessageColumns, starting at column 0.
QueuedMessage readMessage(const Statement& s) {
  QueuedMessage m;
  m.id = s.text(0);
  m.state = parseState(s.text(1));
  m.mail_from = s.text(2);
  m.submitter = s.text(3);
  m.tenant = s.text(4);
  m.mailbox = s.text(5);
  m.message_id = s.text(6);
  m.route = s.text(7);
  m.smtputf8 = s.int64(8) != 0;
  m.body_8bit = s.int64(9) != 0;
  m.size = static_cast<size_t>(s.int64(10));
  m.attempts = static_cast<int>(s.int64(11));
  m.created_ms = s.int64(12);
  m.next_attempt_ms = s.int64(13);
  m.expires_at_ms = s.int64(14);
  m.last_reply = s.text(15);
  m.priority = s.text(16);
  m.route_pinned = s.int64(17) != 0;
  m.writeback = s.text(18);
  return m;
}

// Reads address, status and last reply, starting at column `first`.
RecipientState readRecipient(const Statement& s, int first) {
  return RecipientState{s.text(first), parseStatus(s.text(first + 1)), s.text(first + 2)};
}

// Steps `s` to its last row, calling onRow() at each one. The caller binds and scopes `s`.
template <typename OnRow> Result<void> forEachRow(Statement& s, OnRow&& onRow) {
  for (;;) {
    auto row = s.step();
    if (!row) {
      return std::unexpected(std::move(row.error()));
    }
    if (!*row) {
      return {};
    }
    onRow();
  }
}

// Steps `s` to its one row: store.not_found when there is none (no message `id`).
Result<void> stepToMessage(Statement& s, const std::string& id) {
  auto row = s.step();
  if (!row) {
    return std::unexpected(std::move(row.error()));
  }
  if (!*row) {
    return fail("store.not_found", fmt::format("no queued message with id {}", id));
  }
  return {};
}

// Runs `s` with ?1 = `param` and appends column 0 of every row to `out`.
Result<void> collectText(Statement& s, int64_t param, std::vector<std::string>& out) {
  StatementScope scope(s);
  s.bind(1, param);
  return forEachRow(s, [&] { out.push_back(s.text(0)); });
}

int64_t wallClockMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The fields every message event's data starts with.
void beginData(JsonWriter& w, const QueuedMessage& m, std::string_view reason) {
  w.beginObject();
  w.key("queue_id").value(m.id);
  if (!m.message_id.empty()) {
    w.key("message_id").value(m.message_id);
  }
  w.key("state").value(toString(m.state));
  w.key("reason").value(reason);
}

void writeRecipients(JsonWriter& w, const QueuedMessage& m, const std::vector<size_t>& which) {
  w.key("recipients").beginArray();
  for (size_t i : which) {
    const auto& r = m.recipients[i];
    w.beginObject();
    w.key("address").value(r.address);
    w.key("status").value(toString(r.status));
    w.key("reply").value(r.last_reply);
    w.endObject();
  }
  w.endArray();
}

} // namespace

struct QueueTables::Statements {
  Statement begin, begin_read, commit, rollback, savepoint, release, rollback_to;
  Statement insert_body, insert_message, insert_recipient, insert_event;
  Statement mark_sending, select_message, select_recipients, update_recipient, update_message;
  Statement select_body, count_states, count_tenant_states, requeue_sending, select_expired,
      select_active, select_active_recipients, list_events, list_message_events, max_event_seq;
  Statement select_key, upsert_key, purge_keys;
  Statement add_to_bucket, delete_empty_bucket, upsert_route_state, prune_ledger, select_ledger,
      select_route_states;
};

QueueTables::QueueTables(Key, SqliteDb db)
    : db_(std::move(db)), st_(std::make_unique<Statements>()) {}

// Statements go first (the member order does it): a connection closes only when none is left.
QueueTables::~QueueTables() = default;

Result<std::unique_ptr<QueueTables>> QueueTables::create(SqliteDb db) {
  auto t = std::make_unique<QueueTables>(Key{}, std::move(db));
  auto& s = *t->st_;
  const std::pair<Statement*, std::string> sql[] = {
      {&s.begin, "BEGIN IMMEDIATE"},
      {&s.begin_read, "BEGIN DEFERRED"},
      {&s.commit, "COMMIT"},
      {&s.rollback, "ROLLBACK"},
      {&s.savepoint, "SAVEPOINT op"},
      {&s.release, "RELEASE op"},
      {&s.rollback_to, "ROLLBACK TO op"},
      {&s.insert_body, "INSERT INTO bodies (data) VALUES (?)"},
      {&s.insert_message,
       "INSERT INTO messages (id, body_id, state, mail_from, submitter, tenant, mailbox, "
       "message_id, route, smtputf8, body_8bit, size, attempts, created_ms, updated_ms, "
       "next_attempt_ms, expires_at_ms, last_reply, priority) "
       "VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0, ?12, ?12, ?12, ?13, "
       "'', ?14)"},
      {&s.insert_recipient,
       "INSERT INTO recipients (message, idx, address, status, last_reply, updated_ms) "
       "VALUES (?, ?, ?, 'pending', '', ?)"},
      {&s.insert_event, "INSERT INTO events (id, type, time, queue_id, tenant, mailbox, data) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)"},
      {&s.mark_sending,
       "UPDATE messages SET state = 'sending', attempts = attempts + 1, updated_ms = ?2, "
       "route = iif(?3 = '', route, ?3) "
       "WHERE id = ?1 AND state IN ('queued', 'deferred')"},
      {&s.select_message, fmt::format("SELECT {} FROM messages WHERE id = ?", kMessageColumns)},
      {&s.select_recipients,
       "SELECT address, status, last_reply FROM recipients WHERE message = ? ORDER BY idx"},
      {&s.update_recipient, "UPDATE recipients SET status = ?3, last_reply = ?4, updated_ms = ?5 "
                            "WHERE message = ?1 AND idx = ?2"},
      {&s.update_message,
       "UPDATE messages SET state = ?2, next_attempt_ms = ?3, last_reply = ?4, updated_ms = ?5, "
       "route = ?6, route_pinned = ?7, writeback = ?8 WHERE id = ?1"},
      {&s.select_body,
       "SELECT b.data FROM messages m JOIN bodies b ON b.body_id = m.body_id WHERE m.id = ?"},
      {&s.count_states, "SELECT state, sum(n) FROM message_counts GROUP BY state"},
      {&s.count_tenant_states, "SELECT state, n FROM message_counts WHERE tenant = ?"},
      {&s.requeue_sending,
       "UPDATE messages SET state = 'queued', next_attempt_ms = ?1, updated_ms = ?1, "
       "route_pinned = iif(route = '', route_pinned, 1) "
       "WHERE state = 'sending' RETURNING id"},
      {&s.select_expired,
       "SELECT id FROM messages WHERE state IN ('queued', 'deferred') AND expires_at_ms <= ?"},
      {&s.select_active,
       fmt::format("SELECT {} FROM messages WHERE state IN ('queued', 'deferred') "
                   "ORDER BY next_attempt_ms, id",
                   kMessageColumns)},
      {&s.select_active_recipients,
       "SELECT r.message, r.address, r.status, r.last_reply FROM recipients r "
       "JOIN messages m ON m.id = r.message WHERE m.state IN ('queued', 'deferred') "
       "ORDER BY r.message, r.idx"},
      {&s.list_events, "SELECT seq, id, type, time, queue_id, tenant, mailbox, data FROM events "
                       "WHERE seq > ? ORDER BY seq LIMIT ?"},
      {&s.select_key, "SELECT fingerprint, message, created_ms FROM idempotency_keys "
                      "WHERE scope = ?1 AND key = ?2"},
      {&s.upsert_key, "INSERT INTO idempotency_keys (scope, key, fingerprint, message, created_ms) "
                      "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (scope, key) DO UPDATE SET "
                      "fingerprint = excluded.fingerprint, message = excluded.message, "
                      "created_ms = excluded.created_ms"},
      {&s.purge_keys, "DELETE FROM idempotency_keys WHERE (scope, key) IN ("
                      "SELECT scope, key FROM idempotency_keys WHERE created_ms <= ?1 "
                      "ORDER BY created_ms LIMIT ?2)"},
      {&s.max_event_seq, "SELECT coalesce(max(seq), 0) FROM events"},
      {&s.list_message_events,
       "SELECT seq, id, type, time, queue_id, tenant, mailbox, data FROM events "
       "WHERE queue_id = ?1 ORDER BY seq LIMIT ?2"},
      {&s.add_to_bucket,
       "INSERT INTO ledger (key, bucket_ms, count) VALUES (?1, ?2, max(?3, 0)) "
       "ON CONFLICT (key, bucket_ms) DO UPDATE SET count = max(ledger.count + ?3, 0)"},
      {&s.delete_empty_bucket,
       "DELETE FROM ledger WHERE key = ?1 AND bucket_ms = ?2 AND count <= 0"},
      {&s.upsert_route_state,
       "INSERT INTO route_state (key, state, until_ms, reason, hint, updated_ms) "
       "VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
       "ON CONFLICT (key) DO UPDATE SET state = excluded.state, until_ms = excluded.until_ms, "
       "reason = excluded.reason, hint = excluded.hint, updated_ms = excluded.updated_ms"},
      {&s.prune_ledger, "DELETE FROM ledger WHERE bucket_ms < ?1 OR count <= 0"},
      {&s.select_ledger, "SELECT key, bucket_ms, count FROM ledger ORDER BY key, bucket_ms"},
      {&s.select_route_states,
       "SELECT key, state, until_ms, reason, hint, updated_ms FROM route_state ORDER BY key"},
  };
  for (const auto& [stmt, text] : sql) {
    auto prepared = t->db_.prepare(text);
    if (!prepared) {
      return std::unexpected(std::move(prepared.error()));
    }
    *stmt = std::move(*prepared);
  }
  auto lister = MessageLister::create(t->db_);
  if (!lister) {
    return std::unexpected(std::move(lister.error()));
  }
  t->lister_.emplace(std::move(*lister));
  return t;
}

namespace {
Result<void> runReset(Statement& s) {
  StatementScope scope(s);
  return s.run();
}
} // namespace

Result<void> QueueTables::begin() {
  keys_written_ = 0;
  return runReset(st_->begin);
}
Result<void> QueueTables::beginRead() {
  return runReset(st_->begin_read);
}
Result<void> QueueTables::commit() {
  return runReset(st_->commit);
}
void QueueTables::rollback() {
  if (!db_.autocommit()) {
    (void)runReset(st_->rollback);
  }
}
Result<void> QueueTables::savepoint() {
  return runReset(st_->savepoint);
}
Result<void> QueueTables::release() {
  return runReset(st_->release);
}
Result<void> QueueTables::rollbackToSavepoint() {
  return runReset(st_->rollback_to);
}

Result<void> QueueTables::addEvent(std::string_view type, int64_t now_ms, const QueuedMessage& m,
                                   const std::string& data) {
  auto& s = st_->insert_event;
  StatementScope scope(s);
  const std::string id = ids_.next(wallClockMs());
  const std::string time = formatRfc3339(now_ms);
  s.bind(1, id).bind(2, type).bind(3, time).bind(4, m.id).bind(5, m.tenant).bind(6, m.mailbox);
  s.bind(7, data);
  return s.run();
}

Result<std::string> QueueTables::enqueue(const relay::NewMessage& msg) {
  if (msg.recipients.empty()) {
    return fail("store.invalid", "a message needs at least one recipient");
  }
  int64_t body_id = 0;
  {
    auto& s = st_->insert_body;
    StatementScope scope(s);
    s.bindBlob(1, msg.body);
    MG_TRY(s.run());
    body_id = db_.lastInsertRowid();
  }
  QueuedMessage m;
  m.id = ids_.next(wallClockMs());
  m.tenant = msg.tenant;
  m.mailbox = msg.mailbox;
  m.message_id = msg.message_id;
  m.state = MessageState::kQueued;
  {
    auto& s = st_->insert_message;
    StatementScope scope(s);
    s.bind(1, m.id).bind(2, body_id).bind(3, msg.mail_from).bind(4, msg.submitter);
    s.bind(5, msg.tenant).bind(6, msg.mailbox).bind(7, msg.message_id).bind(8, msg.route);
    s.bind(9, int64_t{msg.smtputf8}).bind(10, int64_t{msg.body_8bit});
    s.bind(11, static_cast<int64_t>(msg.body.size())).bind(12, msg.now_ms);
    s.bind(13, msg.expires_at_ms).bind(14, msg.priority);
    MG_TRY(s.run());
  }
  {
    auto& s = st_->insert_recipient;
    for (size_t i = 0; i < msg.recipients.size(); ++i) {
      StatementScope scope(s);
      s.bind(1, m.id).bind(2, static_cast<int64_t>(i)).bind(3, msg.recipients[i]);
      s.bind(4, msg.now_ms);
      MG_TRY(s.run());
    }
  }
  JsonWriter w;
  beginData(w, m, "accepted for delivery");
  w.key("submitter").value(msg.submitter);
  w.key("mail_from").value(msg.mail_from);
  w.key("recipient_count").value(msg.recipients.size());
  w.key("size").value(msg.body.size());
  w.key("route").value(msg.route);
  w.key("priority").value(msg.priority);
  w.endObject();
  MG_TRY(addEvent("message.queued", msg.now_ms, m, w.str()));
  return m.id;
}

Result<EnqueueOutcome> QueueTables::enqueueIdempotent(const relay::NewMessage& msg,
                                                      const IdempotencyKey& key, int64_t ttl_ms) {
  if (key.key.empty() || key.key.size() > kMaxIdempotencyKeyBytes) {
    return fail("store.invalid", fmt::format("an Idempotency-Key must have 1 to {} bytes, not {}",
                                             kMaxIdempotencyKeyBytes, key.key.size()));
  }
  {
    auto& s = st_->select_key;
    StatementScope scope(s);
    s.bind(1, key.scope).bind(2, key.key);
    auto row = s.step();
    if (!row) {
      return std::unexpected(std::move(row.error()));
    }
    // A key first used ttl_ms ago or earlier is forgotten: it is replaced below.
    if (*row && msg.now_ms - s.int64(2) < ttl_ms) {
      const int64_t first_ms = s.int64(2);
      if (s.text(0) != key.fingerprint) {
        return fail("store.idempotency_mismatch",
                    fmt::format("Idempotency-Key \"{}\" was first used at {} for a different "
                                "request; nothing was stored",
                                key.key, formatRfc3339(first_ms)),
                    "use a new Idempotency-Key for every distinct message, and send a key again "
                    "only to retry the same request");
      }
      const std::string id = s.text(1);
      s.reset();
      auto m = get(id);
      if (!m) {
        return std::unexpected(std::move(m.error()));
      }
      return EnqueueOutcome{id, true, std::move(*m)};
    }
  }
  auto id = enqueue(msg);
  if (!id) {
    return std::unexpected(std::move(id.error()));
  }
  auto& s = st_->upsert_key;
  StatementScope scope(s);
  s.bind(1, key.scope).bind(2, key.key).bind(3, key.fingerprint).bind(4, *id).bind(5, msg.now_ms);
  MG_TRY(s.run());
  ++keys_written_;
  return EnqueueOutcome{std::move(*id), false, {}};
}

Result<size_t> QueueTables::purgeIdempotencyKeys(int64_t cutoff_ms, size_t max) {
  auto& s = st_->purge_keys;
  StatementScope scope(s);
  s.bind(1, cutoff_ms).bind(2, static_cast<int64_t>(max));
  MG_TRY(s.run());
  return static_cast<size_t>(db_.changes());
}

Result<QueuedMessage> QueueTables::get(const std::string& id) {
  QueuedMessage m;
  {
    auto& s = st_->select_message;
    StatementScope scope(s);
    s.bind(1, id);
    MG_TRY(stepToMessage(s, id));
    m = readMessage(s);
  }
  auto& s = st_->select_recipients;
  StatementScope scope(s);
  s.bind(1, id);
  MG_TRY(forEachRow(s, [&] { m.recipients.push_back(readRecipient(s, 0)); }));
  return m;
}

Result<void> QueueTables::markSending(const std::string& id, int64_t now_ms,
                                      const relay::AttemptStart& start) {
  {
    auto& s = st_->mark_sending;
    StatementScope scope(s);
    s.bind(1, id).bind(2, now_ms).bind(3, start.route);
    MG_TRY(s.run());
  }
  const bool started = db_.changes() != 0;
  auto m = get(id);
  if (!m) {
    return std::unexpected(std::move(m.error()));
  }
  if (!started) {
    return fail("store.state",
                fmt::format("message {} is {}; only queued or deferred messages can be sent", id,
                            toString(m->state)));
  }
  JsonWriter w;
  beginData(w, *m, fmt::format("delivery attempt {}", m->attempts));
  w.key("attempt").value(m->attempts);
  w.key("route").value(m->route);
  w.endObject();
  MG_TRY(applyCharges(start.charges));
  return addEvent("message.sending", now_ms, *m, w.str());
}

Result<void> QueueTables::applyCharges(const std::vector<relay::LedgerCharge>& charges) {
  for (const auto& c : charges) {
    if (c.count == 0) {
      continue;
    }
    {
      auto& s = st_->add_to_bucket;
      StatementScope scope(s);
      s.bind(1, c.key).bind(2, c.bucket_ms).bind(3, c.count);
      MG_TRY(s.run());
    }
    if (c.count < 0) {
      auto& s = st_->delete_empty_bucket;
      StatementScope scope(s);
      s.bind(1, c.key).bind(2, c.bucket_ms);
      MG_TRY(s.run());
    }
  }
  return {};
}

Result<void> QueueTables::persistDelivery(const QueuedMessage& m, const DeliveryEffects& fx,
                                          int64_t now_ms) {
  for (size_t i : fx.touched) {
    auto& s = st_->update_recipient;
    StatementScope scope(s);
    const auto& r = m.recipients[i];
    s.bind(1, m.id).bind(2, static_cast<int64_t>(i)).bind(3, toString(r.status));
    s.bind(4, r.last_reply).bind(5, now_ms);
    MG_TRY(s.run());
  }
  auto& s = st_->update_message;
  StatementScope scope(s);
  s.bind(1, m.id).bind(2, toString(m.state)).bind(3, m.next_attempt_ms).bind(4, m.last_reply);
  s.bind(5, now_ms).bind(6, m.route).bind(7, int64_t{m.route_pinned}).bind(8, m.writeback);
  return s.run();
}

Result<void> QueueTables::reportDelivery(const QueuedMessage& m, const DeliveryEffects& fx,
                                         int64_t now_ms, bool by_expiry, std::string_view route,
                                         std::string_view actor) {
  const auto bounce = [&](const std::vector<size_t>& which, std::string_view reason) {
    JsonWriter w;
    beginData(w, m, reason);
    w.key("reply").value(m.recipients[which.front()].last_reply);
    w.key("attempts").value(m.attempts);
    w.key("route").value(route);
    writeRecipients(w, m, which);
    w.endObject();
    return addEvent("message.bounced", now_ms, m, w.str());
  };
  if (!fx.rejected.empty()) {
    MG_TRY(bounce(fx.rejected, "rejected permanently by the upstream server"));
  }
  if (!fx.expired.empty()) {
    MG_TRY(bounce(fx.expired, "message lifetime ended before delivery"));
  }
  const std::string cancelled_by = fmt::format("cancelled by {}", actor);
  if (!fx.cancelled.empty()) {
    MG_TRY(bounce(fx.cancelled, cancelled_by));
  }

  size_t sent = 0;
  size_t failed = 0;
  for (const auto& r : m.recipients) {
    sent += r.status == RecipientStatus::kSent ? 1 : 0;
    failed += r.status == RecipientStatus::kFailed ? 1 : 0;
  }
  std::string type;
  std::string reason;
  switch (m.state) {
  case MessageState::kDeferred:
    type = "message.deferred";
    reason = fmt::format("temporary failure; {} of {} recipients will be retried",
                         m.pendingRecipients(), m.recipients.size());
    break;
  case MessageState::kSent:
    type = "message.sent";
    if (failed == 0) {
      reason = "delivered to every recipient";
    } else if (!fx.cancelled.empty()) {
      reason = fmt::format("delivered to {} of {} recipients; the rest were {}", sent,
                           m.recipients.size(), cancelled_by);
    } else {
      reason = fmt::format("delivered to {} of {} recipients; the rest bounced", sent,
                           m.recipients.size());
    }
    break;
  default:
    type = "message.failed";
    if (!fx.cancelled.empty()) {
      reason = cancelled_by;
    } else if (by_expiry || !fx.expired.empty()) {
      reason = "message lifetime ended before delivery";
    } else {
      reason = "every recipient was rejected permanently";
    }
    break;
  }
  JsonWriter w;
  beginData(w, m, reason);
  w.key("reply").value(m.last_reply);
  w.key("attempts").value(m.attempts);
  w.key("route").value(route);
  if (m.state == MessageState::kDeferred) {
    w.key("next_attempt").value(formatRfc3339(m.next_attempt_ms));
  }
  if (!fx.cancelled.empty()) {
    w.key("cancelled").value(true);
    w.key("actor").value(actor);
  }
  writeRecipients(w, m, fx.touched);
  w.endObject();
  return addEvent(type, now_ms, m, w.str());
}

Result<QueuedMessage> QueueTables::recordAttempt(const relay::AttemptOutcome& outcome) {
  auto m = get(outcome.id);
  if (!m) {
    return m;
  }
  if (m->state != MessageState::kSending) {
    return fail("store.state", fmt::format("message {} is {}, not sending; call markSending first",
                                           m->id, toString(m->state)));
  }
  MG_TRY(applyCharges(outcome.refunds));
  const DeliveryEffects fx = relay::applyAttempt(*m, outcome);
  const std::string route = outcome.route.empty() ? m->route : outcome.route;
  // One route per message (docs/routing.md): once a recipient has it, or the upstream may have
  // it, another route would send it a second time.
  if (outcome.uncertain || !fx.sent.empty()) {
    m->route_pinned = true;
    m->route = route;
  }
  if (!fx.sent.empty() && route != kMicrosoft365Route && !m->mailbox.empty() &&
      m->writeback.empty()) {
    m->writeback = "pending"; // Microsoft 365 files its own copy in Sent Items; a relay does not
  }
  MG_TRY(persistDelivery(*m, fx, outcome.now_ms));
  if (outcome.uncertain) {
    JsonWriter w;
    beginData(w, *m,
              "the connection was lost after the message was sent; the upstream may have it, so "
              "the message stays on this route (a retry may deliver a duplicate)");
    w.key("route").value(route);
    w.key("reply").value(outcome.reply);
    w.key("attempts").value(m->attempts);
    w.endObject();
    MG_TRY(addEvent("message.uncertain", outcome.now_ms, *m, w.str()));
  }
  MG_TRY(reportDelivery(*m, fx, outcome.now_ms, false, route));
  return m;
}

Result<QueuedMessage> QueueTables::expireLoaded(QueuedMessage m, int64_t now_ms) {
  if (m.state != MessageState::kQueued && m.state != MessageState::kDeferred) {
    return fail("store.state", fmt::format("message {} is {}; only queued or deferred messages "
                                           "can expire",
                                           m.id, toString(m.state)));
  }
  const DeliveryEffects fx = relay::applyExpiry(m, now_ms);
  MG_TRY(persistDelivery(m, fx, now_ms));
  MG_TRY(reportDelivery(m, fx, now_ms, true, m.route));
  return m;
}

Result<QueuedMessage> QueueTables::expire(const std::string& id, int64_t now_ms) {
  auto m = get(id);
  if (!m) {
    return m;
  }
  return expireLoaded(std::move(*m), now_ms);
}

namespace {
Result<void> requireWaiting(const QueuedMessage& m, std::string_view action) {
  if (m.state == MessageState::kQueued || m.state == MessageState::kDeferred) {
    return {};
  }
  return fail("store.state",
              fmt::format("message {} is {}; only a queued or deferred message can be {}", m.id,
                          toString(m.state), action));
}
} // namespace

Result<QueuedMessage> QueueTables::retryNow(const std::string& id, int64_t now_ms,
                                            const std::string& actor) {
  auto m = get(id);
  if (!m) {
    return m;
  }
  MG_TRY(requireWaiting(*m, "retried"));
  m->state = MessageState::kQueued;
  m->next_attempt_ms = now_ms;
  MG_TRY(persistDelivery(*m, DeliveryEffects{}, now_ms));
  JsonWriter w;
  beginData(w, *m, fmt::format("retry requested by {}", actor));
  w.key("actor").value(actor);
  w.key("attempts").value(m->attempts);
  w.key("route").value(m->route);
  w.endObject();
  MG_TRY(addEvent("message.retry", now_ms, *m, w.str()));
  return m;
}

Result<QueuedMessage> QueueTables::cancel(const std::string& id, int64_t now_ms,
                                          const std::string& actor) {
  auto m = get(id);
  if (!m) {
    return m;
  }
  MG_TRY(requireWaiting(*m, "cancelled"));
  const DeliveryEffects fx = relay::applyCancel(*m, now_ms, fmt::format("cancelled by {}", actor));
  MG_TRY(persistDelivery(*m, fx, now_ms));
  MG_TRY(reportDelivery(*m, fx, now_ms, false, m->route, actor));
  return m;
}

Result<std::string> QueueTables::loadBody(const std::string& id) {
  auto& s = st_->select_body;
  StatementScope scope(s);
  s.bind(1, id);
  MG_TRY(stepToMessage(s, id));
  return s.blob(0);
}

namespace {
// Adds the (state, count) rows of `s` to `c`.
Result<void> addCounts(Statement& s, relay::QueueCounts& c) {
  return forEachRow(s, [&] {
    const auto n = static_cast<uint64_t>(std::max<int64_t>(s.int64(1), 0));
    switch (parseState(s.text(0))) {
    case MessageState::kQueued:
      c.queued += n;
      break;
    case MessageState::kSending:
      c.sending += n;
      break;
    case MessageState::kSent:
      c.sent += n;
      break;
    case MessageState::kDeferred:
      c.deferred += n;
      break;
    case MessageState::kFailed:
      c.failed += n;
      break;
    }
  });
}
} // namespace

Result<relay::QueueCounts> QueueTables::counts() {
  relay::QueueCounts c;
  auto& s = st_->count_states;
  StatementScope scope(s);
  MG_TRY(addCounts(s, c));
  return c;
}

Result<relay::QueueCounts> QueueTables::countsFor(const std::vector<std::string>& scope) {
  const auto tenants = scopedTenants(scope);
  if (!tenants) {
    return counts();
  }
  relay::QueueCounts c;
  auto& s = st_->count_tenant_states;
  for (const auto& tenant : *tenants) {
    StatementScope reset(s);
    s.bind(1, tenant);
    MG_TRY(addCounts(s, c));
  }
  return c;
}

Result<std::vector<QueuedMessage>> QueueTables::recover(int64_t now_ms) {
  // 1. Attempts a crash interrupted: we cannot know whether the upstream took the message, so
  //    it goes out again (at-least-once) and the event says so.
  std::vector<std::string> interrupted;
  MG_TRY(collectText(st_->requeue_sending, now_ms, interrupted));
  for (const auto& id : interrupted) {
    auto m = get(id);
    if (!m) {
      return std::unexpected(std::move(m.error()));
    }
    JsonWriter w;
    beginData(w, *m,
              "mailgated stopped during a delivery attempt; its outcome is unknown, so the "
              "message will be sent again (at-least-once, recipients may get a duplicate)");
    w.key("recovered").value(true);
    w.key("attempts").value(m->attempts);
    w.key("route").value(m->route);
    // The interrupted attempt may have reached its upstream: the message keeps its route.
    w.key("route_pinned").value(m->route_pinned);
    w.endObject();
    MG_TRY(addEvent("message.queued", now_ms, *m, w.str()));
  }

  // 2. Lifetimes that ended while the daemon was down.
  std::vector<std::string> expired;
  MG_TRY(collectText(st_->select_expired, now_ms, expired));
  for (const auto& id : expired) {
    MG_TRY(expire(id, now_ms));
  }

  // 3. Everything still to deliver, with recipients joined in one pass.
  std::vector<QueuedMessage> out;
  std::unordered_map<std::string, size_t> index;
  {
    auto& s = st_->select_active;
    StatementScope scope(s);
    MG_TRY(forEachRow(s, [&] {
      out.push_back(readMessage(s));
      index.emplace(out.back().id, out.size() - 1);
    }));
  }
  auto& s = st_->select_active_recipients;
  StatementScope scope(s);
  MG_TRY(forEachRow(s, [&] {
    if (auto it = index.find(s.text(0)); it != index.end()) {
      out[it->second].recipients.push_back(readRecipient(s, 1));
    }
  }));
  return out;
}

namespace {
StoredEvent readEvent(const Statement& s) {
  return StoredEvent{s.int64(0), s.text(1), s.text(2), s.text(3),
                     s.text(4),  s.text(5), s.text(6), s.text(7)};
}
} // namespace

Result<std::vector<StoredEvent>> QueueTables::listEvents(int64_t after_seq, size_t limit) {
  std::vector<StoredEvent> out;
  auto& s = st_->list_events;
  StatementScope scope(s);
  s.bind(1, after_seq).bind(2, static_cast<int64_t>(limit));
  MG_TRY(forEachRow(s, [&] { out.push_back(readEvent(s)); }));
  return out;
}

Result<int64_t> QueueTables::maxEventSeq() {
  auto& s = st_->max_event_seq;
  StatementScope scope(s);
  auto row = s.step();
  if (!row) {
    return std::unexpected(std::move(row.error()));
  }
  return *row ? s.int64(0) : 0;
}

Result<std::vector<StoredEvent>> QueueTables::listMessageEvents(const std::string& queue_id,
                                                                size_t limit) {
  std::vector<StoredEvent> out;
  if (queue_id.empty()) {
    return out; // route events have no queue id; they belong to no message
  }
  auto& s = st_->list_message_events;
  StatementScope scope(s);
  s.bind(1, queue_id)
      .bind(2, static_cast<int64_t>(std::clamp<size_t>(limit, 1, kMaxMessageEvents)));
  MG_TRY(forEachRow(s, [&] { out.push_back(readEvent(s)); }));
  return out;
}

Result<MessagePage> QueueTables::listMessages(const MessageQuery& q) {
  auto ids = lister_->page(q);
  if (!ids) {
    return std::unexpected(std::move(ids.error()));
  }
  MessagePage page;
  page.messages.reserve(ids->ids.size());
  for (const auto& id : ids->ids) {
    auto m = get(id);
    if (!m) {
      return std::unexpected(std::move(m.error()));
    }
    page.messages.push_back(std::move(*m));
  }
  if (ids->more) {
    page.next = page.messages.back().id;
  }
  return page;
}

Result<void> QueueTables::addRouteEvent(const relay::EventRecord& event, int64_t now_ms) {
  auto& s = st_->insert_event;
  StatementScope scope(s);
  const std::string id = ids_.next(wallClockMs());
  const std::string time = formatRfc3339(now_ms);
  // Our own code builds data_json (relay/route), so it is stored as given, not re-validated.
  const std::string_view data =
      event.data_json.empty() ? std::string_view("{}") : std::string_view(event.data_json);
  s.bind(1, id).bind(2, event.type).bind(3, time).bind(4, std::string_view());
  s.bind(5, event.tenant).bind(6, event.mailbox).bind(7, data);
  return s.run();
}

Result<void> QueueTables::saveRouteState(const relay::RouteStateRecord& state,
                                         const std::optional<relay::EventRecord>& event) {
  {
    auto& s = st_->upsert_route_state;
    StatementScope scope(s);
    s.bind(1, state.key).bind(2, state.state).bind(3, state.until_ms).bind(4, state.reason);
    s.bind(5, state.hint).bind(6, state.updated_ms);
    MG_TRY(s.run());
  }
  if (event) {
    // The event happened when the state changed.
    return addRouteEvent(*event, state.updated_ms);
  }
  return {};
}

Result<Statement*> QueueTables::cached(std::string_view sql) {
  if (auto it = cached_.find(sql); it != cached_.end()) {
    return &it->second;
  }
  auto st = db_.prepare(sql);
  if (!st) {
    return std::unexpected(std::move(st.error()));
  }
  auto [it, inserted] = cached_.emplace(std::string(sql), std::move(*st));
  return &it->second;
}

Result<void> QueueTables::addEvent(const relay::EventRecord& event, int64_t now_ms) {
  return addRouteEvent(event, now_ms);
}

Result<void> QueueTables::recordEvent(const relay::EventRecord& event) {
  return addRouteEvent(event, wallClockMs());
}

Result<relay::RoutingSnapshot> QueueTables::loadRouting(int64_t now_ms, int64_t max_window_ms) {
  // A bucket is freed once its whole width has left the window (relay/route/ledger.h:
  // bucketWidth = max(1 s, window / 240)); rounding the width up keeps a bucket a little longer
  // rather than dropping one that still counts.
  const int64_t window = std::max<int64_t>(max_window_ms, 0);
  const int64_t width = std::max<int64_t>((window + 239) / 240, 1000);
  int64_t cutoff = 0;
  if (__builtin_sub_overflow(now_ms, window, &cutoff) ||
      __builtin_sub_overflow(cutoff, width, &cutoff)) {
    cutoff = std::numeric_limits<int64_t>::min(); // nothing is old enough
  }
  {
    auto& s = st_->prune_ledger;
    StatementScope scope(s);
    s.bind(1, cutoff);
    MG_TRY(s.run());
  }
  relay::RoutingSnapshot out;
  {
    auto& s = st_->select_ledger;
    StatementScope scope(s);
    MG_TRY(forEachRow(s, [&] {
      out.buckets.push_back(relay::LedgerBucket{s.text(0), s.int64(1), s.int64(2)});
    }));
  }
  auto& s = st_->select_route_states;
  StatementScope scope(s);
  MG_TRY(forEachRow(s, [&] {
    out.states.push_back(relay::RouteStateRecord{s.text(0), s.text(1), s.int64(2), s.text(3),
                                                 s.text(4), s.int64(5)});
  }));
  return out;
}

Result<void> QueueTables::setMaxDbBytes(uint64_t bytes) {
  auto page = db_.queryText("PRAGMA page_size");
  if (!page) {
    return std::unexpected(std::move(page.error()));
  }
  const uint64_t page_size = std::max<uint64_t>(std::strtoull(page->c_str(), nullptr, 10), 512);
  // SQLite clamps the value to its own maximum; 0 would mean "ask", so "no cap" is a huge value.
  const uint64_t pages =
      bytes == 0 ? uint64_t{0xfffffffe} : std::max<uint64_t>(bytes / page_size, 1);
  auto r = db_.queryText(fmt::format("PRAGMA max_page_count = {}", pages));
  if (!r) {
    return std::unexpected(std::move(r.error()));
  }
  return {};
}

} // namespace mailgate::store

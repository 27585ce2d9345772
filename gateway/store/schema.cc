#include "gateway/store/schema.h"

#include "gateway/store/json_writer.h"

#include <array>
#include <cstdlib>
#include <fmt/format.h>
#include <string_view>

namespace mailgate::store {
namespace {

struct Migration {
  int version;
  std::string_view description;
  std::string_view sql;
};

// Append only: never edit a migration that has shipped; add the next one.
constexpr std::array kMigrations{
    Migration{1, "queue, recipients, bodies, events", R"sql(
-- Bodies live apart from the message rows so that scanning the queue never reads mail text.
CREATE TABLE bodies (
  body_id INTEGER PRIMARY KEY,
  data    BLOB NOT NULL
);

CREATE TABLE messages (
  id              TEXT PRIMARY KEY,
  body_id         INTEGER NOT NULL,
  state           TEXT NOT NULL
                  CHECK (state IN ('queued', 'sending', 'sent', 'deferred', 'failed')),
  mail_from       TEXT NOT NULL,
  submitter       TEXT NOT NULL,
  tenant          TEXT NOT NULL,
  mailbox         TEXT NOT NULL,
  message_id      TEXT NOT NULL,
  route           TEXT NOT NULL,
  smtputf8        INTEGER NOT NULL,
  body_8bit       INTEGER NOT NULL,
  size            INTEGER NOT NULL,
  attempts        INTEGER NOT NULL,
  created_ms      INTEGER NOT NULL,
  updated_ms      INTEGER NOT NULL,
  next_attempt_ms INTEGER NOT NULL,
  expires_at_ms   INTEGER NOT NULL,
  last_reply      TEXT NOT NULL
) WITHOUT ROWID;

CREATE INDEX messages_by_state ON messages (state, next_attempt_ms);

CREATE TABLE recipients (
  message    TEXT NOT NULL,
  idx        INTEGER NOT NULL,
  address    TEXT NOT NULL,
  status     TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
  last_reply TEXT NOT NULL,
  updated_ms INTEGER NOT NULL,
  PRIMARY KEY (message, idx)
) WITHOUT ROWID;

-- The transactional outbox: written in the same transaction as the state change it reports.
-- seq never repeats (AUTOINCREMENT), so a reader can keep "delivered up to seq N" as a cursor.
CREATE TABLE events (
  seq      INTEGER PRIMARY KEY AUTOINCREMENT,
  id       TEXT NOT NULL,
  type     TEXT NOT NULL,
  time     TEXT NOT NULL,
  queue_id TEXT NOT NULL,
  tenant   TEXT NOT NULL,
  mailbox  TEXT NOT NULL,
  data     TEXT NOT NULL
);

CREATE INDEX events_by_queue_id ON events (queue_id, seq);
)sql"},
    Migration{2, "routing: priority, route pin, write-back, ledgers, route states", R"sql(
-- Rows written by version 1 take the defaults: bulk mail, free to change route, no write-back.
ALTER TABLE messages ADD COLUMN priority TEXT NOT NULL DEFAULT 'bulk';
ALTER TABLE messages ADD COLUMN route_pinned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN writeback TEXT NOT NULL DEFAULT '';

-- Recipients counted per route ledger (relay/route/ledger.h) and bucket. A row exists only
-- while its count is above zero; loadRouting deletes buckets that left every window.
CREATE TABLE ledger (
  key       TEXT NOT NULL,
  bucket_ms INTEGER NOT NULL,
  count     INTEGER NOT NULL,
  PRIMARY KEY (key, bucket_ms)
) WITHOUT ROWID;

-- The last known state of each route, so an exhausted or disconnected route stays so across a
-- restart.
CREATE TABLE route_state (
  key        TEXT PRIMARY KEY,
  state      TEXT NOT NULL,
  until_ms   INTEGER NOT NULL,
  reason     TEXT NOT NULL,
  hint       TEXT NOT NULL,
  updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
)sql"},
    Migration{3, "control API: idempotency keys, listing indexes, counts per tenant", R"sql(
-- POST /v1/messages with an Idempotency-Key: the key is written in the transaction that stores
-- the message, so a retry finds it even after a crash. `scope` is the API token's name, so keys
-- of different tokens never meet; rows older than the retention period are purged a few per
-- write batch (idempotency_keys_by_age finds them).
CREATE TABLE idempotency_keys (
  scope       TEXT NOT NULL,
  key         TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  message     TEXT NOT NULL,
  created_ms  INTEGER NOT NULL,
  PRIMARY KEY (scope, key)
) WITHOUT ROWID;

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_ms);

-- GET /v1/queue pages through messages in id order (ids sort by creation time). Every filter is
-- an equality on a prefix of one of these indexes, with id last (a WITHOUT ROWID index ends in
-- the primary key), so one page reads one index range per combination of the prefix's values;
-- the store enumerates the few values of an unfiltered prefix column (docs/queue.md, "Listing").
CREATE INDEX messages_by_route ON messages (route, state, id);
CREATE INDEX messages_by_tenant ON messages (tenant, route, state, id);
CREATE INDEX messages_by_mailbox ON messages (mailbox COLLATE NOCASE, tenant, route, state, id);

-- Messages per tenant and state, kept by the triggers below in the transaction of every change,
-- so counting a queue of millions reads a few rows. Rows that fall to 0 stay.
CREATE TABLE message_counts (
  tenant TEXT NOT NULL,
  state  TEXT NOT NULL,
  n      INTEGER NOT NULL,
  PRIMARY KEY (tenant, state)
) WITHOUT ROWID;

INSERT INTO message_counts (tenant, state, n)
  SELECT tenant, state, count(*) FROM messages GROUP BY tenant, state;

CREATE TRIGGER messages_counted_on_insert AFTER INSERT ON messages
BEGIN
  INSERT INTO message_counts (tenant, state, n) VALUES (new.tenant, new.state, 1)
    ON CONFLICT (tenant, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER messages_counted_on_update AFTER UPDATE OF state, tenant ON messages
WHEN old.state <> new.state OR old.tenant <> new.tenant
BEGIN
  UPDATE message_counts SET n = n - 1 WHERE tenant = old.tenant AND state = old.state;
  INSERT INTO message_counts (tenant, state, n) VALUES (new.tenant, new.state, 1)
    ON CONFLICT (tenant, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER messages_counted_on_delete AFTER DELETE ON messages
BEGIN
  UPDATE message_counts SET n = n - 1 WHERE tenant = old.tenant AND state = old.state;
END;
)sql"},
    Migration{4, "webhook cursors, sync state, synced messages, write-back index", R"sql(
-- Webhook delivery (gateway/webhooks): how far each configured endpoint has the outbox. Every
-- event with seq <= seq was delivered to it, or is one it does not want.
CREATE TABLE webhook_cursors (
  webhook    TEXT PRIMARY KEY,
  seq        INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- Sync state per mailbox and folder (imap/sync). `folder` is the role ("inbox", "sent", or a
-- configured folder's name), `name` the server's name last selected. UIDs in
-- [low_uid, top_uid] of this uidvalidity are synced; backfill walks low_uid down to 1, new mail
-- is above top_uid. uidvalidity 0: never selected.
CREATE TABLE sync_folders (
  mailbox        TEXT NOT NULL COLLATE NOCASE,
  folder         TEXT NOT NULL,
  tenant         TEXT NOT NULL,
  name           TEXT NOT NULL,
  uidvalidity    INTEGER NOT NULL,
  highest_modseq INTEGER NOT NULL,
  top_uid        INTEGER NOT NULL,
  low_uid        INTEGER NOT NULL,
  backfill_done  INTEGER NOT NULL,
  total          INTEGER NOT NULL,
  done           INTEGER NOT NULL,
  started_ms     INTEGER NOT NULL,
  updated_ms     INTEGER NOT NULL,
  PRIMARY KEY (mailbox, folder)
) WITHOUT ROWID;

-- Every message synced from a mailbox (and BCC-ingested mail): what the CRM was told about,
-- kept when the mailbox is disconnected. The raw text is last so index scans never read it.
CREATE TABLE synced_messages (
  id            INTEGER PRIMARY KEY,
  mailbox       TEXT NOT NULL COLLATE NOCASE,
  folder        TEXT NOT NULL,
  uidvalidity   INTEGER NOT NULL,
  uid           INTEGER NOT NULL,
  tenant        TEXT NOT NULL,
  message_id    TEXT NOT NULL,
  flags         TEXT NOT NULL,
  internal_date TEXT NOT NULL,
  size          INTEGER NOT NULL,
  synced_ms     INTEGER NOT NULL,
  raw           BLOB NOT NULL
);
CREATE UNIQUE INDEX synced_by_uid ON synced_messages (mailbox, folder, uidvalidity, uid);
CREATE INDEX synced_by_message_id ON synced_messages (mailbox, message_id);

-- Sent-folder write-back (imap/sent_writer) reads the messages still to append, per mailbox.
CREATE INDEX messages_writeback_pending ON messages (mailbox COLLATE NOCASE, id)
  WHERE writeback = 'pending';
)sql"},
    Migration{5, "mailbox connections made through the API", R"sql(
-- POST /v1/mailboxes/{address}/connect and .../disconnect: what the API said last about a
-- mailbox, laid over the configuration file's mailboxes[] at start and on every reload
-- (docs/api.md, "Connecting a mailbox"). `secret` is the App Password or refresh token given to
-- connect (the database file is 0600: it holds mail too); empty once disconnected.
CREATE TABLE mailbox_connections (
  mailbox    TEXT PRIMARY KEY COLLATE NOCASE,
  tenant     TEXT NOT NULL,
  state      TEXT NOT NULL CHECK (state IN ('connected', 'disconnected')),
  method     TEXT NOT NULL,
  secret     TEXT NOT NULL,
  actor      TEXT NOT NULL,
  updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
)sql"},
};

Result<int> currentVersion(SqliteDb& db) {
  auto made =
      db.exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
              " version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL, description TEXT NOT NULL)");
  if (!made) {
    return std::unexpected(std::move(made.error()));
  }
  auto v = db.queryText("SELECT coalesce(max(version), 0) FROM schema_migrations");
  if (!v) {
    return std::unexpected(std::move(v.error()));
  }
  return std::atoi(v->c_str());
}

} // namespace

int schemaVersion() {
  return kMigrations.back().version;
}

Result<void> migrateSchema(SqliteDb& db, int64_t now_ms) {
  return migrateSchema(db, now_ms, schemaVersion());
}

Result<void> migrateSchema(SqliteDb& db, int64_t now_ms, int up_to_version) {
  auto current = currentVersion(db);
  if (!current) {
    return std::unexpected(std::move(current.error()));
  }
  if (*current > schemaVersion()) {
    return fail("store.schema",
                fmt::format("the database has schema version {}, this mailgated knows up to {}",
                            *current, schemaVersion()),
                "run the mailgated version that wrote node.data_dir, or a newer one");
  }
  for (const auto& m : kMigrations) {
    if (m.version <= *current || m.version > up_to_version) {
      continue;
    }
    auto step = [&]() -> Result<void> {
      if (auto r = db.exec(m.sql); !r) {
        return r;
      }
      auto record = db.prepare(
          "INSERT INTO schema_migrations (version, applied_at, description) VALUES (?, ?, ?)");
      if (!record) {
        return std::unexpected(std::move(record.error()));
      }
      const std::string when = formatRfc3339(now_ms);
      record->bind(1, int64_t{m.version}).bind(2, when).bind(3, m.description);
      return record->run();
    };
    if (auto r = db.exec("BEGIN IMMEDIATE"); !r) {
      return r;
    }
    if (auto r = step(); !r) {
      (void)db.exec("ROLLBACK");
      return r;
    }
    if (auto r = db.exec("COMMIT"); !r) {
      (void)db.exec("ROLLBACK");
      return r;
    }
  }
  return {};
}

} // namespace mailgate::store

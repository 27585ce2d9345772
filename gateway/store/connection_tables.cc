#include "gateway/store/connection_tables.h"

#include "gateway/store/json_writer.h"
#include "gateway/store/queue_tables.h"

namespace mailgate::store {
namespace {

constexpr std::string_view kSelect =
    "SELECT mailbox, tenant, state, method, secret, actor, updated_ms FROM mailbox_connections "
    "ORDER BY mailbox";
constexpr std::string_view kUpsert =
    "INSERT INTO mailbox_connections (mailbox, tenant, state, method, secret, actor, updated_ms) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (mailbox) DO UPDATE SET "
    "tenant = excluded.tenant, state = excluded.state, method = excluded.method, "
    "secret = excluded.secret, actor = excluded.actor, updated_ms = excluded.updated_ms";
constexpr std::string_view kDeleteMessages = "DELETE FROM synced_messages WHERE mailbox = ?1";
constexpr std::string_view kDeleteFolders = "DELETE FROM sync_folders WHERE mailbox = ?1";

Result<void> runOne(QueueTables& t, std::string_view sql, std::string_view mailbox) {
  auto st = t.cached(sql);
  if (!st) {
    return std::unexpected(st.error());
  }
  StatementScope scope(**st);
  (*st)->bind(1, mailbox);
  return (*st)->run();
}

} // namespace

Result<std::vector<MailboxConnection>> loadConnections(SqliteQueueStore& store) {
  return store.readNow<std::vector<MailboxConnection>>(
      [](QueueTables& t) -> Result<std::vector<MailboxConnection>> {
        auto st = t.cached(kSelect);
        if (!st) {
          return std::unexpected(st.error());
        }
        Statement& s = **st;
        StatementScope scope(s);
        std::vector<MailboxConnection> out;
        for (;;) {
          auto row = s.step();
          if (!row) {
            return std::unexpected(row.error());
          }
          if (!*row) {
            return out;
          }
          MailboxConnection c;
          c.mailbox = s.text(0);
          c.tenant = s.text(1);
          c.connected = s.text(2) == "connected";
          c.method = s.text(3);
          c.secret = s.text(4);
          c.actor = s.text(5);
          c.updated_ms = s.int64(6);
          out.push_back(std::move(c));
        }
      });
}

void saveConnection(SqliteQueueStore& store, MailboxConnection c, bool keep_synced,
                    std::function<void(Result<uint64_t>)> done) {
  store.write<uint64_t>(
      [c = std::move(c), keep_synced](QueueTables& t) -> Result<uint64_t> {
        {
          auto st = t.cached(kUpsert);
          if (!st) {
            return std::unexpected(st.error());
          }
          Statement& s = **st;
          StatementScope scope(s);
          const std::string_view state = c.connected ? "connected" : "disconnected";
          const std::string_view method = c.connected ? std::string_view(c.method) : "";
          const std::string_view secret = c.connected ? std::string_view(c.secret) : "";
          s.bind(1, c.mailbox).bind(2, c.tenant).bind(3, state).bind(4, method).bind(5, secret);
          s.bind(6, c.actor).bind(7, c.updated_ms);
          if (auto r = s.run(); !r) {
            return std::unexpected(r.error());
          }
        }
        uint64_t deleted = 0;
        if (!c.connected && !keep_synced) {
          if (auto r = runOne(t, kDeleteMessages, c.mailbox); !r) {
            return std::unexpected(r.error());
          }
          deleted = static_cast<uint64_t>(t.db().changes());
          if (auto r = runOne(t, kDeleteFolders, c.mailbox); !r) {
            return std::unexpected(r.error());
          }
        }
        JsonWriter w(256);
        w.beginObject();
        w.key("actor").value(c.actor);
        if (c.connected) {
          w.key("method").value(c.method);
        } else {
          w.key("reason").value("disconnected through the API");
          w.key("hint").value("POST /v1/mailboxes/{address}/connect connects it again; its "
                              "queued mail waits until then");
          w.key("keep_synced").value(keep_synced);
          w.key("synced_messages_deleted").value(deleted);
        }
        w.endObject();
        auto ev = t.addEvent(
            relay::EventRecord{c.connected ? "mailbox.connected" : "mailbox.disconnected", c.tenant,
                               c.mailbox, w.str()},
            c.updated_ms);
        if (!ev) {
          return std::unexpected(ev.error());
        }
        return deleted;
      },
      std::move(done));
}

} // namespace mailgate::store

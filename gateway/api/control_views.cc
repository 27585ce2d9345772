// JSON renderings of the gateway's objects for the API's answers (docs/api.md has the shapes).
#include "gateway/api/control_state.h"
#include "gateway/store/json_writer.h"

namespace mailgate::api {

nlohmann::json timeJson(int64_t ms) {
  if (ms <= 0) {
    return nullptr;
  }
  return store::formatRfc3339(ms);
}

namespace {
nlohmann::json orNull(const std::string& s) {
  return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s);
}
} // namespace

nlohmann::json messageJson(const relay::QueuedMessage& m) {
  nlohmann::json recipients = nlohmann::json::array();
  for (const auto& r : m.recipients) {
    recipients.push_back({{"address", r.address},
                          {"status", relay::toString(r.status)},
                          {"last_reply", orNull(r.last_reply)}});
  }
  const bool waiting =
      m.state == relay::MessageState::kQueued || m.state == relay::MessageState::kDeferred;
  return {
      {"id", m.id},
      {"message_id", orNull(m.message_id)},
      {"state", relay::toString(m.state)},
      {"tenant", orNull(m.tenant)},
      {"mailbox", orNull(m.mailbox)},
      {"from", m.mail_from},
      {"priority", m.priority},
      {"route", orNull(m.route)},
      {"route_pinned", m.route_pinned},
      {"attempts", m.attempts},
      {"size", m.size},
      {"created", timeJson(m.created_ms)},
      {"next_attempt", waiting ? timeJson(m.next_attempt_ms) : nlohmann::json(nullptr)},
      {"expires", timeJson(m.expires_at_ms)},
      {"last_reply", orNull(m.last_reply)},
      {"writeback", orNull(m.writeback)},
      {"recipients", std::move(recipients)},
  };
}

nlohmann::json eventJson(const store::StoredEvent& e) {
  nlohmann::json data =
      nlohmann::json::parse(e.data.empty() ? std::string_view("{}") : e.data, nullptr, false);
  if (data.is_discarded()) {
    data = nlohmann::json::object();
  }
  return {{"id", e.id},         {"seq", e.seq},         {"type", e.type},         {"time", e.time},
          {"tenant", e.tenant}, {"mailbox", e.mailbox}, {"data", std::move(data)}};
}

nlohmann::json countsJson(const relay::QueueCounts& c) {
  return {{"queued", c.queued},
          {"sending", c.sending},
          {"deferred", c.deferred},
          {"sent", c.sent},
          {"failed", c.failed}};
}

nlohmann::json tenantJson(const config::Tenant& t) {
  const auto& l = t.limits;
  return {
      {"id", t.id},
      {"mailboxes", t.mailboxes.size()},
      {"fallback", t.fallback},
      {"on_disconnect", config::toString(t.on_disconnect)},
      {"priority_reserve_percent", t.priority_reserve_percent},
      {"bcc_address", orNull(t.bcc_address)},
      {"oauth", t.oauth.has_value()},
      {"imap",
       {{"max_sessions",
         t.imap_max_sessions ? nlohmann::json(*t.imap_max_sessions) : nlohmann::json(nullptr)}}},
      {"limits",
       {{"recipients_per_day", l.recipients_per_day},
        {"messages_per_minute", l.messages_per_minute},
        {"recipients_per_message", l.recipients_per_message},
        {"max_connections", l.max_connections},
        {"window_seconds", l.window.count()}}},
  };
}

} // namespace mailgate::api

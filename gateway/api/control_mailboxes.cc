// /v1/mailboxes: what is connected, what is spent, where mail goes and why; manual failover and
// failback. Everything is read from the delivery engine's memory: no store round trip.
#include "config/values.h"
#include "gateway/api/control_state.h"
#include "relay/delivery_engine.h"

#include <fmt/format.h>

namespace mailgate::api {

namespace {

nlohmann::json optionalNumber(const std::optional<uint64_t>& n) {
  return n ? nlohmann::json(*n) : nlohmann::json(nullptr);
}

const config::Mailbox* findConfigured(const config::Config& c, std::string_view address,
                                      const config::Tenant** tenant) {
  const std::string want = config::lowerAscii(address);
  for (const auto& t : c.tenants) {
    for (const auto& m : t.mailboxes) {
      if (config::lowerAscii(m.address) == want) {
        *tenant = &t;
        return &m;
      }
    }
  }
  return nullptr;
}

} // namespace

nlohmann::json ControlApi::State::mailboxJson(const Call& call,
                                              const relay::MailboxStatus& s) const {
  const auto& v = s.route;
  const config::Tenant* tenant = nullptr;
  const config::Mailbox* mb = findConfigured(*call.config, v.address, &tenant);
  nlohmann::json manual = nullptr;
  if (v.manual_failover) {
    manual = {{"actor", v.manual_actor}, {"since", timeJson(v.manual_since_ms)}};
  }
  nlohmann::json last_error = nullptr;
  if (s.last_error) {
    last_error = {{"kind", s.last_error->kind},
                  {"message", s.last_error->message},
                  {"hint", s.last_error->hint},
                  {"time", timeJson(s.last_error->at_ms)}};
  }
  nlohmann::json ledger{
      {"recipients",
       {{"used", v.usage.used},
        {"limit", optionalNumber(v.usage.limit)},
        {"remaining", optionalNumber(v.usage.remaining)},
        {"frees_at", v.usage.frees_at_ms ? timeJson(*v.usage.frees_at_ms) : nullptr},
        {"window_seconds", tenant != nullptr ? tenant->limits.window.count() : 0}}},
      {"exhausted_until",
       v.usage.exhausted_until_ms ? timeJson(*v.usage.exhausted_until_ms) : nullptr},
  };
  if (tenant != nullptr) {
    ledger["reserve_percent"] = tenant->priority_reserve_percent;
    ledger["messages_per_minute"] = tenant->limits.messages_per_minute;
    ledger["recipients_per_message"] = tenant->limits.recipients_per_message;
  }
  nlohmann::json out{
      {"address", mb != nullptr ? mb->address : v.address},
      {"tenant", v.tenant},
      {"configured", s.configured},
      {"route",
       {{"state", relay::toString(v.state)},
        {"until", timeJson(v.until_ms)},
        {"reason", v.reason.empty() ? nlohmann::json(nullptr) : nlohmann::json(v.reason)},
        {"hint", v.hint.empty() ? nlohmann::json(nullptr) : nlohmann::json(v.hint)},
        {"failed_over", v.failed_over},
        {"manual", std::move(manual)}}},
      {"ledger", std::move(ledger)},
      {"smtp",
       {{"connections", s.connections_open},
        {"busy", s.connections_busy},
        {"max_connections", v.max_connections},
        {"waiting", s.waiting},
        {"in_flight", s.in_flight}}},
      {"last_error", std::move(last_error)},
  };
  if (mb != nullptr) {
    out["aliases"] = mb->aliases;
    out["access"] = config::toString(mb->access);
    out["auth"] =
        mb->auth ? nlohmann::json(config::toString(mb->auth->method)) : nlohmann::json(nullptr);
    out["sync"] = config::toString(mb->sync);
  }
  return out;
}

bool ControlApi::State::mailboxVisible(const CallPtr& call, const std::string& address,
                                       relay::MailboxStatus* status) {
  auto s = deps.delivery->mailboxStatus(address);
  if (!s || !canSee(*call, s->route.tenant)) {
    // Unknown and out of scope look the same.
    replyError(call, 404, "mailbox.not_found", fmt::format("no mailbox {}", address),
               "GET /v1/mailboxes lists the mailboxes this token may see; use the primary "
               "address, not an alias");
    return false;
  }
  *status = std::move(*s);
  return true;
}

void ControlApi::State::getMailboxes(const CallPtr& call) {
  const auto limit = intParam(call, "limit", 100, 1, 1000);
  if (!limit) {
    return;
  }
  std::string tenant;
  if (const auto* t = call->q("tenant"); t != nullptr && !t->empty()) {
    if (!canSee(*call, *t) || call->config->findTenant(*t) == nullptr) {
      replyError(call, 404, "tenant.not_found", fmt::format("no tenant {}", *t),
                 "GET /v1/tenants lists the tenants this token may see");
      return;
    }
    tenant = *t;
  }
  const std::string after =
      call->q("after") != nullptr ? config::lowerAscii(*call->q("after")) : "";
  nlohmann::json list = nlohmann::json::array();
  std::string last;
  bool more = false;
  deps.delivery->forEachMailbox(
      [&](const relay::MailboxStatus& s) {
        if (more || !canSee(*call, s.route.tenant)) {
          return;
        }
        const std::string key = config::lowerAscii(s.route.address);
        if (!after.empty() && key <= after) {
          return;
        }
        if (list.size() == static_cast<std::size_t>(*limit)) {
          more = true;
          return;
        }
        list.push_back(mailboxJson(*call, s));
        last = key;
      },
      tenant);
  replyJson(call, 200,
            {{"mailboxes", std::move(list)},
             {"next", more ? nlohmann::json(last) : nlohmann::json(nullptr)}});
}

void ControlApi::State::getMailbox(const CallPtr& call) {
  relay::MailboxStatus s;
  if (mailboxVisible(call, call->param("address"), &s)) {
    replyJson(call, 200, mailboxJson(*call, s));
  }
}

void ControlApi::State::postFailover(const CallPtr& call) {
  relay::MailboxStatus s;
  if (!mailboxVisible(call, call->param("address"), &s)) {
    return;
  }
  // An optional {"reason": "..."} goes to the log line, for whoever looks at it later.
  std::string reason;
  if (!call->req().body.empty()) {
    const auto body = nlohmann::json::parse(call->req().body, nullptr, false);
    if (!body.is_object() || (body.contains("reason") && !body["reason"].is_string())) {
      replyError(call, 400, "request.invalid_json", "the body must be {\"reason\": \"text\"}",
                 "send no body, or a JSON object with a string reason");
      return;
    }
    reason = body.value("reason", std::string());
    if (reason.size() > 200 ||
        reason.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
      replyError(call, 400, "request.bad_parameter",
                 "reason must be one line of at most 200 characters", "shorten the reason");
      return;
    }
  }
  auto r = deps.delivery->failover(s.route.address, call->actor());
  if (!r) {
    replyFailure(call, r.error());
    return;
  }
  log->info("{} failed over mailbox {}{}", call->actor(), s.route.address,
            reason.empty() ? std::string() : ": " + reason);
  replyJson(call, 200, mailboxJson(*call, *r));
}

void ControlApi::State::postFailback(const CallPtr& call) {
  relay::MailboxStatus s;
  if (!mailboxVisible(call, call->param("address"), &s)) {
    return;
  }
  auto r = deps.delivery->failback(s.route.address, call->actor());
  if (!r) {
    replyFailure(call, r.error());
    return;
  }
  log->info("{} failed back mailbox {}", call->actor(), s.route.address);
  replyJson(call, 200, mailboxJson(*call, *r));
}

} // namespace mailgate::api

// /v1/mailboxes: what is connected, what is spent, where mail goes and why; manual failover and
// failback. Everything is read from memory (the delivery engine's, and the IMAP pools' through
// ControlApiDeps::imap_status): no store round trip.
#include "config/values.h"
#include "gateway/api/control_state.h"
#include "gateway/store/json_writer.h"
#include "imap/mailbox_status.h"
#include "relay/delivery_engine.h"

#include <fmt/format.h>

namespace mailgate::api {

namespace {

void optionalNumber(store::JsonWriter& w, std::string_view key, const std::optional<uint64_t>& n) {
  w.key(key);
  if (n) {
    w.value(*n);
  } else {
    w.null();
  }
}

void time(store::JsonWriter& w, std::string_view key, int64_t ms) {
  w.key(key);
  if (ms > 0) {
    w.value(store::formatRfc3339(ms));
  } else {
    w.null();
  }
}

void optionalText(store::JsonWriter& w, std::string_view key, const std::string& text) {
  w.key(key);
  if (text.empty()) {
    w.null();
  } else {
    w.value(text);
  }
}

// The "imap" object: always the same keys, so a client reads one shape whether or not the
// mailbox has an IMAP side (without one it is the default status: "off", zeros and nulls).
void writeImap(store::JsonWriter& w, const imap::MailboxImapStatus& s) {
  w.key("imap").beginObject();
  w.key("state").value(imap::poolStateName(s.state));
  w.key("max_sessions").value(s.max_sessions);
  w.key("sessions").beginObject();
  w.key("open").value(s.sessions_open);
  w.key("idle").value(s.sessions_idle);
  w.key("busy").value(s.sessions_busy);
  w.key("connecting").value(s.sessions_connecting);
  w.endObject();
  w.key("jobs_waiting").value(s.jobs_waiting);
  optionalText(w, "sent_folder", s.sent_folder);
  w.key("last_error");
  if (!s.last_error_code.empty() || !s.last_error.empty()) {
    w.beginObject();
    w.key("code").value(s.last_error_code);
    w.key("message").value(s.last_error);
    optionalText(w, "hint", s.hint);
    time(w, "at", s.last_error_at_ms);
    w.endObject();
  } else {
    w.null();
  }
  time(w, "next_retry_at", s.next_retry_at_ms);
  time(w, "connected_since", s.connected_since_ms);
  w.key("logins").value(s.logins);
  w.key("failures").value(s.failures);
  w.endObject();
}

// "sync_progress": null for a mailbox without sync, else the engine's phase and each folder's
// progress (docs/sync.md).
void writeSync(store::JsonWriter& w, const std::optional<imap::MailboxSyncStatus>& sync) {
  w.key("sync_progress");
  if (!sync) {
    w.null();
    return;
  }
  w.beginObject();
  w.key("phase").value(sync->phase);
  w.key("fetched").value(sync->fetched);
  w.key("folders").beginArray();
  for (const auto& f : sync->folders) {
    const auto& st = f.state;
    w.beginObject();
    w.key("folder").value(st.name);
    w.key("role").value(st.role);
    w.key("uidvalidity").value(st.uidvalidity);
    w.key("done").value(st.done);
    w.key("total").value(st.total);
    w.key("percent").value(st.backfill_done || st.total == 0 ? uint64_t{100}
                                                             : st.done * 100 / st.total);
    w.key("backfill_done").value(st.backfill_done);
    w.key("messages_per_second").value(static_cast<uint64_t>(f.rate_per_s + 0.5));
    w.key("eta_seconds");
    if (f.eta_seconds >= 0) {
      w.value(f.eta_seconds);
    } else {
      w.null();
    }
    time(w, "started_at", st.started_ms);
    time(w, "updated_at", st.updated_ms);
    w.endObject();
  }
  w.endArray();
  time(w, "last_cycle_at", sync->last_cycle_ms);
  w.key("last_error");
  if (!sync->last_error_code.empty()) {
    w.beginObject();
    w.key("code").value(sync->last_error_code);
    w.key("message").value(sync->last_error);
    time(w, "at", sync->last_error_at_ms);
    w.endObject();
  } else {
    w.null();
  }
  w.endObject();
}

} // namespace

bool ControlApi::State::fetchImap(std::string_view address) {
  scratch_sync.reset();
  if (deps.sync_status) {
    imap::MailboxSyncStatus sync;
    if (deps.sync_status(address, sync)) {
      scratch_sync = std::move(sync);
    }
  }
  if (!deps.imap_status) {
    return false; // nothing ever writes scratch_imap then: it is still the default
  }
  static const imap::MailboxImapStatus kNoImap;
  // Copy-assigning the default clears every field of the reused object and keeps its strings'
  // storage, so a provider that assigns into them allocates only when a text outgrows it.
  scratch_imap = kNoImap;
  if (deps.imap_status(address, scratch_imap)) {
    return true;
  }
  scratch_imap = kNoImap; // a provider that said no may have written into it
  return false;
}

// Written with the streaming writer, not a JSON tree: this is the answer a CRM polls for every
// mailbox, and building the tree cost more than everything else in the request together.
void ControlApi::State::writeMailbox(store::JsonWriter& w, const Directory& dir,
                                     const relay::MailboxStatus& s,
                                     const imap::MailboxImapStatus& imap,
                                     const std::optional<imap::MailboxSyncStatus>& sync) {
  const auto& v = s.route;
  const relay::policy::MailboxRef* ref = dir.senders->find(v.address);
  const config::Tenant* tenant = ref != nullptr ? ref->tenant : nullptr;
  const config::Mailbox* mb = ref != nullptr && !ref->via_alias ? ref->mailbox : nullptr;
  w.beginObject();
  w.key("address").value(mb != nullptr ? std::string_view(mb->address)
                                       : std::string_view(v.address));
  w.key("tenant").value(v.tenant);
  w.key("configured").value(s.configured);
  if (mb != nullptr) {
    w.key("aliases").beginArray();
    for (const auto& a : mb->aliases) {
      w.value(a);
    }
    w.endArray();
    w.key("access").value(config::toString(mb->access));
    w.key("auth");
    if (mb->auth) {
      w.value(config::toString(mb->auth->method));
    } else {
      w.null();
    }
    w.key("sync").value(config::toString(mb->sync));
  }
  w.key("route").beginObject();
  w.key("state").value(relay::toString(v.state));
  time(w, "until", v.until_ms);
  optionalText(w, "reason", v.reason);
  optionalText(w, "hint", v.hint);
  w.key("failed_over").value(v.failed_over);
  w.key("manual");
  if (v.manual_failover) {
    w.beginObject();
    w.key("actor").value(v.manual_actor);
    time(w, "since", v.manual_since_ms);
    w.endObject();
  } else {
    w.null();
  }
  w.endObject();
  w.key("ledger").beginObject();
  w.key("recipients").beginObject();
  w.key("used").value(v.usage.used);
  optionalNumber(w, "limit", v.usage.limit);
  optionalNumber(w, "remaining", v.usage.remaining);
  time(w, "frees_at", v.usage.frees_at_ms.value_or(0));
  w.key("window_seconds").value(tenant != nullptr ? tenant->limits.window.count() : 0);
  w.endObject();
  time(w, "exhausted_until", v.usage.exhausted_until_ms.value_or(0));
  if (tenant != nullptr) {
    w.key("reserve_percent").value(tenant->priority_reserve_percent);
    w.key("messages_per_minute").value(tenant->limits.messages_per_minute);
    w.key("recipients_per_message").value(tenant->limits.recipients_per_message);
  }
  w.endObject();
  w.key("smtp").beginObject();
  w.key("connections").value(s.connections_open);
  w.key("busy").value(s.connections_busy);
  w.key("max_connections").value(v.max_connections);
  w.key("waiting").value(s.waiting);
  w.key("in_flight").value(s.in_flight);
  w.endObject();
  writeImap(w, imap);
  writeSync(w, sync);
  w.key("last_error");
  if (s.last_error) {
    w.beginObject();
    w.key("kind").value(s.last_error->kind);
    w.key("message").value(s.last_error->message);
    w.key("hint").value(s.last_error->hint);
    time(w, "time", s.last_error->at_ms);
    w.endObject();
  } else {
    w.null();
  }
  w.endObject();
}

namespace {

// Whether two statuses render the same JSON (every field writeMailbox reads).
bool sameRendering(const relay::MailboxStatus& a, const relay::MailboxStatus& b) {
  const auto& x = a.route;
  const auto& y = b.route;
  const auto sameError = [](const std::optional<relay::MailboxError>& e,
                            const std::optional<relay::MailboxError>& f) {
    return e.has_value() == f.has_value() &&
           (!e || (e->kind == f->kind && e->message == f->message && e->hint == f->hint &&
                   e->at_ms == f->at_ms));
  };
  return x.address == y.address && x.tenant == y.tenant && x.state == y.state &&
         x.until_ms == y.until_ms && x.reason == y.reason && x.hint == y.hint &&
         x.failed_over == y.failed_over && x.manual_failover == y.manual_failover &&
         x.manual_actor == y.manual_actor && x.manual_since_ms == y.manual_since_ms &&
         x.usage.used == y.usage.used && x.usage.limit == y.usage.limit &&
         x.usage.remaining == y.usage.remaining && x.usage.frees_at_ms == y.usage.frees_at_ms &&
         x.usage.exhausted_until_ms == y.usage.exhausted_until_ms &&
         x.max_connections == y.max_connections && a.configured == b.configured &&
         a.connections_open == b.connections_open && a.connections_busy == b.connections_busy &&
         a.waiting == b.waiting && a.in_flight == b.in_flight &&
         sameError(a.last_error, b.last_error);
}

} // namespace

void ControlApi::State::replyMailbox(const CallPtr& call, const relay::MailboxStatus& s) {
  // A CRM polls the same mailboxes over and over, and between two polls their status rarely
  // changes: the last rendering of each is kept and reused while the status (and the
  // configuration it was rendered under) is the same.
  if (mailbox_cache_dir != call->directory.get() || mailbox_cache.size() >= kMailboxCacheMax) {
    mailbox_cache.clear();
    mailbox_cache_dir = call->directory.get();
  }
  fetchImap(s.route.address);
  const imap::MailboxImapStatus& imap = scratch_imap;
  auto it = mailbox_cache.find(s.route.address);
  if (it == mailbox_cache.end() || !sameRendering(it->second.status, s) ||
      it->second.imap != imap || it->second.sync != scratch_sync) {
    store::JsonWriter w(1536);
    writeMailbox(w, *call->directory, s, imap, scratch_sync);
    it = mailbox_cache
             .insert_or_assign(s.route.address,
                               RenderedMailbox{s, imap, scratch_sync,
                                               std::make_shared<const std::string>(w.take())})
             .first;
  }
  replyJsonShared(call, 200, it->second.json);
}

bool ControlApi::State::mailboxVisible(const CallPtr& call, const std::string& address,
                                       relay::MailboxStatus* status) {
  if (!deps.delivery->mailboxStatusInto(address, *status) || !canSee(*call, status->route.tenant)) {
    // Unknown and out of scope look the same.
    replyError(call, 404, "mailbox.not_found", fmt::format("no mailbox {}", address),
               "GET /v1/mailboxes lists the mailboxes this token may see; use the primary "
               "address, not an alias");
    return false;
  }
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
      call->q("after") != nullptr ? config::lowerAscii(*call->q("after")) : std::string();
  store::JsonWriter w;
  w.beginObject();
  w.key("mailboxes").beginArray();
  std::size_t count = 0;
  std::string last;
  bool more = false;
  deps.delivery->forEachMailbox(
      [&](const relay::MailboxStatus& s) {
        if (more || !canSee(*call, s.route.tenant)) {
          return;
        }
        std::string key = config::lowerAscii(s.route.address);
        if (!after.empty() && key <= after) {
          return;
        }
        if (count == static_cast<std::size_t>(*limit)) {
          more = true;
          return;
        }
        fetchImap(s.route.address);
        writeMailbox(w, *call->directory, s, scratch_imap, scratch_sync);
        ++count;
        last = std::move(key);
      },
      tenant);
  w.endArray();
  w.key("next");
  if (more) {
    w.value(last);
  } else {
    w.null();
  }
  w.endObject();
  replyJsonText(call, 200, w.take());
}

void ControlApi::State::getMailbox(const CallPtr& call) {
  // One status object for every such request: filling it again reuses its storage.
  if (mailboxVisible(call, call->param("address"), &scratch_status)) {
    replyMailbox(call, scratch_status);
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
  replyMailbox(call, *r);
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
  replyMailbox(call, *r);
}

} // namespace mailgate::api

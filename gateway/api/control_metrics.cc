// GET /metrics: Prometheus text. Every figure is read from memory except the queue counts, one
// store read per scrape.
#include "gateway/api/control_state.h"
#include "gateway/api/prometheus.h"
#include "imap/mailbox_status.h"
#include "relay/delivery_engine.h"

#include <array>
#include <string>

namespace mailgate::api {

void ControlApi::State::getMetrics(const CallPtr& call) {
  if (!call->token->allTenants()) {
    replyError(call, 403, "auth.forbidden",
               "metrics cover every tenant; this token is scoped to some",
               "scrape with a token whose tenants are [\"*\"] (a reader is enough)");
    return;
  }
  deps.store->counts(then<relay::QueueCounts>(call, [call](State& st, relay::QueueCounts counts) {
    State* self = &st;
    PrometheusWriter w;
    w.family("mailgate_queue_messages", "gauge", "Messages in the durable queue, by state.");
    const std::pair<std::string_view, uint64_t> states[] = {{"queued", counts.queued},
                                                            {"sending", counts.sending},
                                                            {"deferred", counts.deferred},
                                                            {"sent", counts.sent},
                                                            {"failed", counts.failed}};
    for (const auto& [state, n] : states) {
      w.sample("mailgate_queue_messages", {{"state", state}}, static_cast<double>(n));
    }
    self->writeDeliveryMetrics(w);
    self->writeImapMetrics(w);

    const GatewayFigures f = self->deps.figures ? self->deps.figures() : GatewayFigures{};
    w.family("mailgate_connections", "gauge", "Open client connections, by listener.");
    w.sample("mailgate_connections", {{"listener", "smtp"}}, static_cast<double>(f.smtp_sessions));
    w.sample("mailgate_connections", {{"listener", "api"}}, static_cast<double>(f.api.open));
    w.family("mailgate_api_connections_refused_total", "counter",
             "API connections closed at once because max_connections were open.");
    w.sample("mailgate_api_connections_refused_total", static_cast<double>(f.api.refused));
    w.family("mailgate_store_commits_total", "counter",
             "Durable (fsync'd) commits of the embedded store.");
    w.sample("mailgate_store_commits_total", static_cast<double>(f.store.commits));
    w.family("mailgate_store_failed_batches_total", "counter",
             "Store batches lost to a transaction or commit error (disk full, I/O error).");
    w.sample("mailgate_store_failed_batches_total", static_cast<double>(f.store.failed_batches));

    // This scrape's own answer counts as a 200 once it is written below.
    self->countStatus(200);
    w.family("mailgate_api_requests_total", "counter", "API requests answered, by HTTP status.");
    for (const auto& [status, n] : self->by_status) {
      const std::string code = std::to_string(status);
      w.sample("mailgate_api_requests_total", {{"status", code}}, static_cast<double>(n));
    }
    w.family("mailgate_webhook_delivered_total", "counter",
             "Events a webhook acknowledged (2xx) since start, by webhook url.");
    for (const auto& h : f.webhooks) {
      w.sample("mailgate_webhook_delivered_total", {{"url", h.url}},
               static_cast<double>(h.delivered));
    }
    w.family("mailgate_webhook_failed_attempts_total", "counter",
             "Webhook requests that failed (non-2xx or transport error; each is retried).");
    for (const auto& h : f.webhooks) {
      w.sample("mailgate_webhook_failed_attempts_total", {{"url", h.url}},
               static_cast<double>(h.failed_attempts));
    }
    w.family("mailgate_webhook_backlog", "gauge",
             "Outbox events after a webhook's cursor (not yet known delivered or skipped).");
    for (const auto& h : f.webhooks) {
      w.sample("mailgate_webhook_backlog", {{"url", h.url}}, static_cast<double>(h.backlog));
    }
    w.family("mailgate_up", "gauge", "1 while mailgated serves; 0 while it drains.");
    w.sample("mailgate_up", self->draining ? 0.0 : 1.0);
    HttpResponse r;
    r.content_type = PrometheusWriter::kContentType;
    r.body = w.take();
    call->ex->respond(std::move(r)); // counted above
  }));
}

void ControlApi::State::writeDeliveryMetrics(PrometheusWriter& w) const {
  if (deps.delivery == nullptr) {
    return;
  }
  const relay::DeliveryMetrics m = deps.delivery->metrics();
  w.family("mailgate_messages_total", "counter",
           "Delivery outcomes by route (microsoft365, a relay, none) and outcome (sent, deferred, "
           "failed), one per recorded attempt, expiry or cancel.");
  for (const auto& [key, n] : m.messages) {
    w.sample("mailgate_messages_total", {{"route", key.first}, {"outcome", key.second}},
             static_cast<double>(n));
  }
  w.family("mailgate_upstream_replies_total", "counter",
           "Upstream replies by class: the Microsoft 365 reply-table rule, else 2xx/4xx/5xx, or "
           "connection for a failure without a reply.");
  for (const auto& [cls, n] : m.replies) {
    w.sample("mailgate_upstream_replies_total", {{"class", cls}}, static_cast<double>(n));
  }
  w.family("mailgate_failovers_total", "counter",
           "Failovers to the fallback relays: automatic episodes and manual ones.");
  w.sample("mailgate_failovers_total", {{"kind", "automatic"}},
           static_cast<double>(m.failovers_automatic));
  w.sample("mailgate_failovers_total", {{"kind", "manual"}},
           static_cast<double>(m.failovers_manual));
  w.family("mailgate_failed_over_messages_total", "counter",
           "Attempts through a relay for a mailbox that has its own Microsoft 365 route.");
  w.sample("mailgate_failed_over_messages_total", static_cast<double>(m.failed_over_messages));
  w.family("mailgate_upstream_connections", "gauge", "Open connections to upstream SMTP servers.");
  w.sample("mailgate_upstream_connections", static_cast<double>(m.connections_open));
  w.family("mailgate_upstream_connects_total", "counter",
           "Upstream connections that became ready, and those that failed before.");
  w.sample("mailgate_upstream_connects_total", {{"result", "ready"}},
           static_cast<double>(m.connections_ready));
  w.sample("mailgate_upstream_connects_total", {{"result", "failed"}},
           static_cast<double>(m.connections_failed));
  w.family("mailgate_delivery_messages", "gauge",
           "Messages the delivery engine holds: waiting (not due, held, ready) and in flight.");
  w.sample("mailgate_delivery_messages", {{"state", "waiting"}},
           static_cast<double>(m.messages_waiting));
  w.sample("mailgate_delivery_messages", {{"state", "in_flight"}},
           static_cast<double>(m.messages_in_flight));

  // Per mailbox: one pass over the engine's mailboxes, three families written side by side.
  PrometheusWriter used;
  PrometheusWriter remaining;
  PrometheusWriter state;
  used.family("mailgate_ledger_recipients_used", "gauge",
              "Recipients counted in the mailbox's rolling Microsoft 365 window.");
  remaining.family("mailgate_ledger_recipients_remaining", "gauge",
                   "Recipients the mailbox's Microsoft 365 window still allows.");
  state.family("mailgate_route_state", "gauge",
               "1 for the state the mailbox's Microsoft 365 route is in (active, exhausted, "
               "paused, disconnected, unconfigured); failed_over=1 while its mail goes to the "
               "relays.");
  deps.delivery->forEachMailbox([&](const relay::MailboxStatus& s) {
    const auto& v = s.route;
    used.sample("mailgate_ledger_recipients_used", {{"tenant", v.tenant}, {"mailbox", v.address}},
                static_cast<double>(v.usage.used));
    if (v.usage.remaining) {
      remaining.sample("mailgate_ledger_recipients_remaining",
                       {{"tenant", v.tenant}, {"mailbox", v.address}},
                       static_cast<double>(*v.usage.remaining));
    }
    state.sample("mailgate_route_state",
                 {{"tenant", v.tenant},
                  {"mailbox", v.address},
                  {"state", relay::toString(v.state)},
                  {"failed_over", v.failed_over ? "1" : "0"}},
                 1.0);
  });
  w.append(used.take());
  w.append(remaining.take());
  w.append(state.take());
}

namespace {

// Every pool state, for the state set below (one sample per state, whatever the current one).
constexpr std::array kPoolStates{imap::PoolState::kOff,       imap::PoolState::kConnecting,
                                 imap::PoolState::kConnected, imap::PoolState::kThrottled,
                                 imap::PoolState::kBackoff,   imap::PoolState::kDisconnected};

} // namespace

void ControlApi::State::writeImapMetrics(PrometheusWriter& w) {
  // No IMAP in this build or run: no IMAP families at all, rather than a zero for every mailbox.
  if (deps.delivery == nullptr || !deps.imap_status) {
    return;
  }
  PrometheusWriter sessions;
  PrometheusWriter state;
  PrometheusWriter logins;
  PrometheusWriter failures;
  sessions.family("mailgate_imap_sessions", "gauge",
                  "IMAP sessions of the mailbox's pool: open (logged in, every kind), of those "
                  "idle (IDLE on INBOX) and busy (leased to a job), and connecting (connecting or "
                  "logging in). open includes idle and busy: do not sum over state.");
  state.family("mailgate_imap_pool_state", "gauge",
               "State set of the mailbox's IMAP pool: 1 for the state it is in (off, connecting, "
               "connected, throttled, backoff, disconnected), 0 for the others.");
  logins.family("mailgate_imap_logins_total", "counter",
                "Successful IMAP logins of the mailbox since start.");
  failures.family("mailgate_imap_failures_total", "counter",
                  "Failed IMAP session attempts (connect, TLS, login) of the mailbox since start.");
  // One pass over the engine's mailboxes, like the delivery figures; a mailbox the provider says
  // has no IMAP side (access: graph, for instance) has no IMAP series.
  deps.delivery->forEachMailbox([&](const relay::MailboxStatus& m) {
    const auto& v = m.route;
    if (!fetchImap(v.address)) {
      return;
    }
    const imap::MailboxImapStatus& s = scratch_imap;
    const std::pair<std::string_view, uint32_t> counts[] = {{"open", s.sessions_open},
                                                            {"idle", s.sessions_idle},
                                                            {"busy", s.sessions_busy},
                                                            {"connecting", s.sessions_connecting}};
    for (const auto& [kind, n] : counts) {
      sessions.sample("mailgate_imap_sessions",
                      {{"tenant", v.tenant}, {"mailbox", v.address}, {"state", kind}},
                      static_cast<double>(n));
    }
    for (const imap::PoolState ps : kPoolStates) {
      state.sample(
          "mailgate_imap_pool_state",
          {{"tenant", v.tenant}, {"mailbox", v.address}, {"state", imap::poolStateName(ps)}},
          ps == s.state ? 1.0 : 0.0);
    }
    logins.sample("mailgate_imap_logins_total", {{"tenant", v.tenant}, {"mailbox", v.address}},
                  static_cast<double>(s.logins));
    failures.sample("mailgate_imap_failures_total", {{"tenant", v.tenant}, {"mailbox", v.address}},
                    static_cast<double>(s.failures));
  });
  w.append(sessions.take());
  w.append(state.take());
  w.append(logins.take());
  w.append(failures.take());
}

} // namespace mailgate::api

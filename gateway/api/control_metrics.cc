// GET /metrics: Prometheus text. Every figure is read from memory except the queue counts, one
// store read per scrape.
#include "gateway/api/control_state.h"
#include "gateway/api/prometheus.h"
#include "relay/delivery_engine.h"

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

} // namespace mailgate::api

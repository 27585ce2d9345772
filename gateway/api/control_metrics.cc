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
  std::weak_ptr<State> weak = weak_from_this();
  deps.store->counts([weak, call](Result<relay::QueueCounts> counts) {
    auto self = weak.lock();
    if (!self) {
      return;
    }
    if (!counts) {
      self->replyFailure(call, counts.error());
      return;
    }
    PrometheusWriter w;
    w.family("mailgate_queue_messages", "gauge", "Messages in the durable queue, by state.");
    const std::pair<std::string_view, uint64_t> states[] = {{"queued", counts->queued},
                                                            {"sending", counts->sending},
                                                            {"deferred", counts->deferred},
                                                            {"sent", counts->sent},
                                                            {"failed", counts->failed}};
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
    r.headers.emplace_back("content-type", std::string(PrometheusWriter::kContentType));
    r.body = w.take();
    call->ex->respond(std::move(r)); // counted above
  });
}

void ControlApi::State::writeDeliveryMetrics(PrometheusWriter& w) const {
  if (deps.delivery == nullptr) {
    return;
  }
  const relay::DeliveryStats s = deps.delivery->stats();
  w.family("mailgate_upstream_connections", "gauge", "Open connections to upstream SMTP servers.");
  w.sample("mailgate_upstream_connections", static_cast<double>(s.open_connections));
  w.family("mailgate_upstream_connects_total", "counter",
           "Upstream connections opened, and those that failed before they were ready.");
  w.sample("mailgate_upstream_connects_total", {{"result", "ready"}},
           static_cast<double>(s.connections_ready));
  w.sample("mailgate_upstream_connects_total", {{"result", "failed"}},
           static_cast<double>(s.connect_failures));
  w.family("mailgate_delivery_attempts_total", "counter", "Delivery attempts started.");
  w.sample("mailgate_delivery_attempts_total", static_cast<double>(s.attempts));
  w.family("mailgate_delivery_waiting", "gauge",
           "Messages the delivery engine holds that are not being sent right now.");
  w.sample("mailgate_delivery_waiting", static_cast<double>(s.waiting));
}

} // namespace mailgate::api

// The control API's endpoints (docs/api.md): authentication and roles, then one handler per
// route, each a function of the request and the gateway's live state. Handlers never block: they
// answer at once from memory (mailboxes, metrics, tenants) or after a store completion (messages,
// queue) through HttpExchange.
//
// Threading: the loop thread only, like the components it reads. Lifetime: outlives the
// ApiServer that calls it (the daemon destroys the server first); store completions hold the
// API's state weakly, so an answer that arrives after destruction does nothing.
#pragma once

#include "base/error.h"
#include "base/secret.h"
#include "config/config.h"
#include "gateway/api/api_server.h"
#include "gateway/api/http_exchange.h"
#include "gateway/store/sqlite_queue_store.h"
#include "imap/mailbox_status.h"
#include "imap/sync_status.h"
#include "relay/queue_store.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mailgate::net {
class Loop;
}
namespace mailgate::relay {
class DeliveryEngine;
}

namespace mailgate::api {

// What a reload did (POST /v1/config/reload, SIGHUP).
struct ReloadReport {
  std::string file;
  std::vector<std::string> applied;          // sentences: "tenant acme: 1 mailbox added", ...
  std::vector<std::string> restart_required; // keys that changed but only apply at a restart
};

// POST /v1/mailboxes/{address}/connect and .../disconnect, as the daemon carries them out.
struct ConnectRequest {
  std::string address; // the primary address as configured
  std::string tenant;
  bool connect = true;
  std::string method;      // "app_password" or "oauth2" (connect only)
  Secret secret;           // the App Password or refresh token (connect only)
  bool keep_synced = true; // disconnect only
  std::string actor;
};
struct ConnectOutcome {
  uint64_t synced_messages_deleted = 0; // disconnect with keep_synced=false
};

// Live figures of the other components, for /v1/status and /metrics.
// One configured webhook's delivery counters (gateway/webhooks), for /metrics.
struct WebhookFigures {
  std::string url; // as logged: without userinfo, query or fragment
  uint64_t delivered = 0;
  uint64_t failed_attempts = 0;
  int64_t backlog = 0; // events after its cursor
};

struct GatewayFigures {
  std::size_t smtp_sessions = 0;
  std::vector<WebhookFigures> webhooks;
  ApiServerStats api;
  store::StoreStats store;
  bool draining = false;
  int64_t started_ms = 0;
};

struct ControlApiDeps {
  net::Loop* loop = nullptr;
  store::SqliteQueueStore* store = nullptr;
  relay::DeliveryEngine* delivery = nullptr;
  // Hands a message the API just committed to delivery (the path SMTP submissions take).
  std::function<void(relay::QueuedMessage)> accepted;
  // Re-reads the configuration file and applies it. An error leaves the running configuration
  // untouched; its message holds every `FILE:LINE:COL: key: reason` line.
  std::function<Result<ReloadReport>()> reload;
  std::function<GatewayFigures()> figures;
  // The IMAP side of a mailbox (its primary address as configured), for GET /v1/mailboxes and
  // /metrics: true after filling `out`, false when the mailbox has no IMAP side. Null: no IMAP in
  // this build or run, every mailbox shows "imap": {"state": "off", ...}. Called on the loop
  // thread, once per mailbox rendered, so it must be cheap and must not allocate when it can
  // help it: `out` is a reused object, reset to a default status before each call, and
  // assigning into its strings keeps their storage.
  std::function<bool(std::string_view address, imap::MailboxImapStatus& out)> imap_status;
  // The sync side of a mailbox (sync: two_way with an IMAP pool), the same way: true after
  // filling `out`; null or false: "sync_progress" is null.
  std::function<bool(std::string_view address, imap::MailboxSyncStatus& out)> sync_status;
  // Stores the connection durably, then applies it (sessions open or close, held mail waits or
  // goes); `done` runs on the loop thread once stored. Null: the endpoints answer 503.
  std::function<void(ConnectRequest, std::function<void(Result<ConnectOutcome>)>)> connect;
  std::string version;
};

class ControlApi {
public:
  ControlApi(ControlApiDeps deps, std::shared_ptr<const config::Config> config);
  ~ControlApi();
  ControlApi(const ControlApi&) = delete;
  ControlApi& operator=(const ControlApi&) = delete;

  // The handler to give the ApiServer.
  [[nodiscard]] AsyncHttpHandler handler();

  // The request body limit for HttpServerOptions::body_limit: a whole message for POST
  // /v1/messages from a token that may submit (listeners.smtp.max_message_bytes, in JSON with
  // base64 attachments, plus room for the rest), kSmallBodyBytes for everything else, so that a
  // client without a valid token can never make the gateway hold a large body.
  [[nodiscard]] std::function<std::size_t(const HttpRequest& head)> bodyLimit() const;
  static constexpr std::size_t kSmallBodyBytes = 1024 * 1024;

  // A reloaded configuration: tokens, tenants and limits of later requests.
  void reconfigure(std::shared_ptr<const config::Config> config);

  // SIGTERM: event streams end, submissions are refused with 503 (api.draining), reads go on.
  void drain();

  // Every (method, path pattern) the API serves, for the OpenAPI test and docs.
  [[nodiscard]] std::vector<std::pair<std::string, std::string>> routeList() const;

  // Requests answered, by HTTP status, since start.
  [[nodiscard]] std::vector<std::pair<int, uint64_t>> requestsByStatus() const;

  struct State; // control_api.cc

private:
  std::shared_ptr<State> state_;
};

} // namespace mailgate::api

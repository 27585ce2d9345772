#include "gateway/daemon.h"

#include "base/log.h"
#include "config/loader.h"
#include "config/values.h"
#include "gateway/api/api_server.h"
#include "gateway/api/bcc_ingest.h"
#include "gateway/api/control_api.h"
#include "gateway/store/connection_tables.h"
#include "gateway/store/sqlite_queue_store.h"
#include "gateway/store/sync_tables.h"
#include "gateway/webhooks/dispatcher.h"
#include "imap/imap_service.h"
#include "imap/sync_service.h"
#include "net/http_client.h"
#include "net/loop.h"
#include "net/timer.h"
#include "relay/delivery_engine.h"
#include "relay/submission_server.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <fmt/format.h>
#include <fmt/ranges.h>

#ifndef MAILGATE_VERSION
#define MAILGATE_VERSION "0.0.0"
#endif

namespace mailgate::gateway {

namespace {

// How long SIGTERM waits for SMTP sessions, API answers and delivery attempts in flight. Past
// it, whatever is still sending is left `sending` in the store and goes out again after the next
// start (at-least-once; docs/queue.md).
constexpr std::chrono::seconds kDrainDeadline{60};
// How long SIGTERM lets webhooks catch up with the events of the drain; a failing endpoint is
// not waited for (its cursor is written and it resumes after the next start).
constexpr std::chrono::seconds kWebhookDrainGrace{10};

int64_t wallClockMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool sameTls(const std::optional<config::TlsFiles>& a, const std::optional<config::TlsFiles>& b) {
  if (a.has_value() != b.has_value()) {
    return false;
  }
  return !a || (a->cert == b->cert && a->key == b->key);
}

bool sameTokens(const std::vector<config::ApiToken>& a, const std::vector<config::ApiToken>& b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].secret != b[i].secret || a[i].roles != b[i].roles ||
        a[i].tenants != b[i].tenants) {
      return false;
    }
  }
  return true;
}

// Keys that a running process cannot change: they only apply at the next start.
std::vector<std::string> restartOnly(const config::Config& before, const config::Config& after) {
  std::vector<std::string> out;
  if (before.node.data_dir != after.node.data_dir) {
    out.emplace_back("node.data_dir");
  }
  if (before.storage.backend != after.storage.backend ||
      before.storage.redis_url != after.storage.redis_url) {
    out.emplace_back("storage");
  }
  if (!(before.listeners.smtp.address == after.listeners.smtp.address)) {
    out.emplace_back("listeners.smtp.address");
  }
  if (!sameTls(before.listeners.smtp.tls, after.listeners.smtp.tls)) {
    out.emplace_back("listeners.smtp.tls");
  }
  if (!(before.listeners.api.address == after.listeners.api.address)) {
    out.emplace_back("listeners.api.address");
  }
  if (!sameTls(before.listeners.api.tls, after.listeners.api.tls)) {
    out.emplace_back("listeners.api.tls");
  }
  return out;
}

using Connections = std::map<std::string, store::MailboxConnection, std::less<>>; // lower address

// The configuration file with the connections made through the API laid over its mailboxes: a
// connected mailbox takes the stored credentials, a disconnected one has none and holds its mail.
// Connections of mailboxes the file no longer has are ignored (kept, in case it comes back).
std::shared_ptr<const config::Config> withConnections(const config::Config& file,
                                                      const Connections& connections) {
  auto out = std::make_shared<config::Config>(file);
  for (auto& tenant : out->tenants) {
    for (auto& mb : tenant.mailboxes) {
      auto it = connections.find(config::lowerAscii(mb.address));
      if (it == connections.end() || it->second.tenant != tenant.id) {
        continue;
      }
      const auto& c = it->second;
      if (!c.connected) {
        mb.auth.reset();
        mb.held = true;
        continue;
      }
      config::MailboxAuth auth;
      if (c.method == "oauth2") {
        auth.method = config::AuthMethod::kOauth2;
        auth.refresh_token = Secret(c.secret);
      } else {
        auth.method = config::AuthMethod::kAppPassword;
        auth.password = Secret(c.secret);
      }
      mb.auth = std::move(auth);
      mb.held = false;
    }
  }
  return out;
}

} // namespace

struct Daemon::Impl {
  std::shared_ptr<const config::Config> config; // the file's, with `connections` laid over it
  std::shared_ptr<const config::Config> file_config;
  Connections connections;
  // The configuration the components were built with: they keep references into it until the
  // first reload gives each its own shared copy.
  std::shared_ptr<const config::Config> first_config;
  std::string config_path;
  std::shared_ptr<spdlog::logger> log = logger("main");
  net::LoopPtr loop;
  std::unique_ptr<store::SqliteQueueStore> store;
  // BCC ingestion for the SMTP side (the API calls the store itself); uses `store`.
  std::unique_ptr<api::BccIngestor> bcc;
  std::unique_ptr<relay::DeliveryEngine> delivery;
  std::unique_ptr<imap::ImapService> imap;
  std::unique_ptr<store::SqliteSyncStore> sync_store;
  std::unique_ptr<imap::SyncService> sync;
  std::unique_ptr<relay::SubmissionServer> smtp;
  std::unique_ptr<api::ControlApi> control;
  std::unique_ptr<api::ApiServer> api;
  net::HttpClientPtr http;          // outbound HTTP on the loop (webhooks)
  webhooks::DispatcherPtr webhooks; // uses `http` and `store`
  net::TimerPtr drain_deadline;
  bool draining = false;
  int64_t started_ms = 0;

  void onTerminate();
  Result<api::ReloadReport> reload();
  // Applies `next` (the file's configuration with the connections laid over it) everywhere.
  Result<api::ReloadReport> apply(std::shared_ptr<const config::Config> next, std::string_view why);
  void connect(api::ConnectRequest request, std::function<void(Result<api::ConnectOutcome>)> done);
  api::GatewayFigures figures() const;
  void finish();
};

Daemon::Daemon(PrivateTag, std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Daemon::~Daemon() = default;

Result<std::unique_ptr<Daemon>> Daemon::create(config::Config config, std::string config_path) {
  auto impl = std::make_unique<Impl>();
  impl->file_config = std::make_shared<const config::Config>(std::move(config));
  impl->config_path = std::move(config_path);
  impl->started_ms = wallClockMs();
  const config::Config& file = *impl->file_config;

  auto loop = net::Loop::create();
  if (!loop) {
    return std::unexpected(loop.error());
  }
  impl->loop = std::move(*loop);
  net::Loop* loop_ptr = impl->loop.get();

  store::SqliteStoreOptions store_options;
  store_options.data_dir = file.node.data_dir;
  store_options.batch_max = file.queue.commit_batch_max;
  store_options.post = [loop_ptr](std::function<void()> fn) { loop_ptr->post(std::move(fn)); };
  auto store = store::openSqliteQueueStore(std::move(store_options));
  if (!store) {
    return std::unexpected(store.error());
  }
  impl->store = std::move(*store);

  auto connections = store::loadConnections(*impl->store);
  if (!connections) {
    return std::unexpected(connections.error());
  }
  for (auto& c : *connections) {
    std::string key = config::lowerAscii(c.mailbox);
    impl->connections.emplace(std::move(key), std::move(c));
  }
  impl->config = withConnections(file, impl->connections);
  impl->first_config = impl->config;
  const config::Config& cfg = *impl->first_config;

  auto recovered = impl->store->recover(wallClockMs());
  if (!recovered) {
    return std::unexpected(recovered.error());
  }

  auto delivery = relay::DeliveryEngine::create(*impl->loop, cfg, *impl->store);
  if (!delivery) {
    return std::unexpected(delivery.error());
  }
  impl->delivery = std::move(*delivery);

  relay::DeliveryEngine* engine = impl->delivery.get();
  auto accepted = [engine](relay::QueuedMessage msg) { engine->schedule(std::move(msg)); };
  impl->bcc = std::make_unique<api::BccIngestor>(*impl->store);
  auto smtp =
      relay::SubmissionServer::create(*impl->loop, cfg, *impl->store, accepted, impl->bcc.get());
  if (!smtp) {
    return std::unexpected(smtp.error());
  }
  impl->smtp = std::move(*smtp);

  imap::ImapServiceOptions imap_options;
  imap_options.version = MAILGATE_VERSION;
  // OAuth2 mailboxes get their tokens from the token manager of the OAuth2 issue; until then
  // their IMAP side shows disconnected with "imap.no_token_source".
  impl->imap = std::make_unique<imap::ImapService>(*impl->loop, std::move(imap_options));
  impl->imap->apply(cfg);
  impl->sync_store = std::make_unique<store::SqliteSyncStore>(*impl->store);
  impl->sync = std::make_unique<imap::SyncService>(*impl->loop, *impl->imap, *impl->sync_store);
  impl->sync->apply(cfg);

  auto http = net::HttpClient::create(*impl->loop);
  if (!http) {
    return std::unexpected(http.error());
  }
  impl->http = std::move(*http);
  webhooks::DispatcherOptions webhook_options;
  webhook_options.version = MAILGATE_VERSION;
  auto hooks =
      webhooks::Dispatcher::create(*impl->loop, *impl->http, *impl->store, webhook_options);
  if (!hooks) {
    return std::unexpected(hooks.error());
  }
  impl->webhooks = std::move(*hooks);
  impl->webhooks->apply(cfg.webhooks);

  Impl* raw = impl.get();
  api::ControlApiDeps deps;
  deps.loop = impl->loop.get();
  deps.store = impl->store.get();
  deps.delivery = engine;
  deps.accepted = accepted;
  deps.reload = [raw] { return raw->reload(); };
  deps.figures = [raw] { return raw->figures(); };
  deps.imap_status = [raw](std::string_view address, imap::MailboxImapStatus& out) {
    return raw->imap && raw->imap->status(address, out);
  };
  deps.connect = [raw](api::ConnectRequest request,
                       std::function<void(Result<api::ConnectOutcome>)> done) {
    raw->connect(std::move(request), std::move(done));
  };
  deps.sync_status = [raw](std::string_view address, imap::MailboxSyncStatus& out) {
    return raw->sync && raw->sync->status(address, out);
  };
  deps.version = MAILGATE_VERSION;
  impl->control = std::make_unique<api::ControlApi>(std::move(deps), impl->config);

  api::ApiServerOptions api_options;
  api_options.address =
      net::Endpoint{cfg.listeners.api.address.host, cfg.listeners.api.address.port};
  if (cfg.listeners.api.tls) {
    api_options.tls_cert = cfg.listeners.api.tls->cert;
    api_options.tls_key = cfg.listeners.api.tls->key;
  }
  api_options.http.max_body_bytes = api::ControlApi::kSmallBodyBytes;
  api_options.http.body_limit = impl->control->bodyLimit();
  auto api = api::ApiServer::create(*impl->loop, std::move(api_options), impl->control->handler());
  if (!api) {
    return std::unexpected(api.error());
  }
  impl->api = std::move(*api);

  impl->log->info("{} unsent message(s) recovered from {}", recovered->size(), impl->store->path());
  for (auto& msg : *recovered) {
    impl->delivery->schedule(std::move(msg));
  }

  for (int sig : {SIGTERM, SIGINT}) {
    if (auto r = impl->loop->onSignal(sig, [raw] { raw->onTerminate(); }); !r) {
      return std::unexpected(r.error());
    }
  }
  if (auto r = impl->loop->onSignal(SIGHUP, [raw] { (void)raw->reload(); }); !r) {
    return std::unexpected(r.error());
  }
  impl->log->info("SMTP submission on {}, control API on {}:{}, relay default at {}",
                  cfg.listeners.smtp.address.str(), cfg.listeners.api.address.host,
                  impl->api->port(), [&] {
                    const auto* relay = cfg.findRelay("default");
                    return relay ? relay->server.host + ":" + std::to_string(relay->server.port)
                                 : std::string("(none)");
                  }());
  return std::make_unique<Daemon>(PrivateTag{}, std::move(impl));
}

api::GatewayFigures Daemon::Impl::figures() const {
  api::GatewayFigures f;
  f.smtp_sessions = smtp ? smtp->sessionCount() : 0;
  if (api) {
    f.api = api->stats();
  }
  if (store) {
    f.store = store->stats();
  }
  f.draining = draining;
  f.started_ms = started_ms;
  for (const auto& h : webhooks ? webhooks->status() : std::vector<webhooks::WebhookStatus>{}) {
    f.webhooks.push_back({h.url, h.delivered, h.failed, h.backlog});
  }
  return f;
}

void Daemon::Impl::onTerminate() {
  if (draining) {
    return;
  }
  draining = true;
  log->info("draining: no new connections; finishing sessions, API answers and deliveries in "
            "flight");
  drain_deadline = net::Timer::create(*loop);
  drain_deadline->start(kDrainDeadline, [this] {
    log->warn("drain deadline of {} s passed; stopping with work in flight (it is recovered at "
              "the next start)",
              kDrainDeadline.count());
    finish();
  });
  // Both listeners drain side by side; delivery goes on until neither can add work.
  auto listeners_left = std::make_shared<int>(2);
  auto listener_done = [this, listeners_left] {
    if (--*listeners_left > 0) {
      return;
    }
    log->info("submission sessions and API connections finished");
    delivery->drain([this] {
      log->info("deliveries in flight finished");
      sync->stop();
      imap->stop([this] {
        log->info("IMAP sessions logged out");
        webhooks->drain(kWebhookDrainGrace, [this] { finish(); });
      });
    });
  };
  control->drain();
  api->drain(listener_done);
  smtp->drain(listener_done);
}

Result<api::ReloadReport> Daemon::Impl::reload() {
  auto fresh = config::loadFile(config_path);
  if (!fresh) {
    log->error("reload: {} is invalid; the running configuration stays:\n{}", config_path,
               fresh.error().message);
    return std::unexpected(Error(fresh.error().code, fresh.error().message,
                                 "fix the file and reload again; nothing was changed"));
  }
  auto next_file = std::make_shared<const config::Config>(std::move(*fresh));
  auto report = apply(withConnections(*next_file, connections), config_path);
  if (report) {
    file_config = std::move(next_file);
  }
  return report;
}

void Daemon::Impl::connect(api::ConnectRequest request,
                           std::function<void(Result<api::ConnectOutcome>)> done) {
  if (draining) {
    done(std::unexpected(
        Error("api.draining", "the gateway is shutting down", "connect again once it is back")));
    return;
  }
  store::MailboxConnection c;
  c.mailbox = request.address;
  c.tenant = request.tenant;
  c.connected = request.connect;
  c.method = request.method;
  c.secret = request.secret.reveal();
  c.actor = request.actor;
  c.updated_ms = wallClockMs();
  std::string key = config::lowerAscii(c.mailbox);
  store::saveConnection(
      *store, c, request.keep_synced,
      [this, key = std::move(key), c, done = std::move(done)](Result<uint64_t> r) mutable {
        if (!r) {
          done(std::unexpected(r.error()));
          return;
        }
        // Stored: from now on every start and reload lays it over the file.
        connections.insert_or_assign(key, std::move(c));
        if (auto applied = apply(withConnections(*file_config, connections), "connection");
            !applied) {
          log->error("a mailbox connection was stored but could not be applied: {}",
                     applied.error().describe());
        }
        done(api::ConnectOutcome{*r});
      });
}

Result<api::ReloadReport> Daemon::Impl::apply(std::shared_ptr<const config::Config> next,
                                              std::string_view why) {
  api::ReloadReport report;
  report.file = std::string(why);
  report.restart_required = restartOnly(*config, *next);
  const auto take = [&report](const relay::ReloadReport& part) {
    report.applied.insert(report.applied.end(), part.applied.begin(), part.applied.end());
    for (const auto& key : part.restart_required) {
      if (std::find(report.restart_required.begin(), report.restart_required.end(), key) ==
          report.restart_required.end()) {
        report.restart_required.push_back(key);
      }
    }
  };
  // Delivery first: it is the part that can refuse (a relay's TLS settings that do not load),
  // and then nothing has changed anywhere.
  auto delivered = delivery->reconfigure(next);
  if (!delivered) {
    log->error("reload: {} not applied: {}", why, delivered.error().describe());
    return std::unexpected(Error(delivered.error().code, delivered.error().message,
                                 delivered.error().hint.empty()
                                     ? std::string("fix the file and reload again; nothing was "
                                                   "changed")
                                     : delivered.error().hint));
  }
  take(*delivered);
  auto submission = smtp->reconfigure(next);
  if (submission) {
    take(*submission);
  } else {
    log->error("reload: SMTP submission kept its configuration: {}", submission.error().describe());
  }
  if (next->log.level != config->log.level || next->log.format != config->log.format) {
    setupLogging(next->log.level, next->log.format);
    report.applied.push_back(fmt::format("log: level {}, format {}", toString(next->log.level),
                                         toString(next->log.format)));
  }
  if (!sameTokens(config->listeners.api.tokens, next->listeners.api.tokens)) {
    report.applied.push_back(
        fmt::format("listeners.api.tokens: {} token(s)", next->listeners.api.tokens.size()));
  }
  imap->apply(*next);
  sync->apply(*next);
  report.applied.push_back(
      fmt::format("imap: {} mailbox pool(s), {} syncing", imap->poolCount(), sync->engineCount()));
  webhooks->apply(next->webhooks);
  report.applied.push_back(fmt::format("webhooks: {}", next->webhooks.size()));
  control->reconfigure(next);
  config = next;
  // Every component now holds the configuration it uses itself.
  first_config.reset();
  log->info("reload: {} applied ({}){}", why, fmt::join(report.applied, "; "),
            report.restart_required.empty()
                ? std::string()
                : fmt::format("; needs a restart: {}", fmt::join(report.restart_required, ", ")));
  return report;
}

void Daemon::Impl::finish() {
  drain_deadline.reset();
  api.reset();
  control.reset();
  smtp.reset();
  delivery.reset();
  sync.reset();
  imap.reset();
  sync_store.reset();
  // Queues the write of the webhook cursors; the store commits it before it closes.
  webhooks.reset();
  http.reset();
  // Completes every store operation still queued; their completions run in one more loop turn.
  store.reset();
  loop->stop();
}

int Daemon::run() {
  impl_->loop->run();
  impl_->log->info("stopped");
  return 0;
}

} // namespace mailgate::gateway

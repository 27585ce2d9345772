// Internal to gateway/api: the state behind ControlApi and what its handler files share. One
// handler per route, split over control_*.cc by subject.
#pragma once

#include "base/log.h"
#include "gateway/api/api_routes.h"
#include "gateway/api/background_worker.h"
#include "gateway/api/control_api.h"
#include "gateway/api/event_feed.h"
#include "gateway/api/prometheus.h"
#include "gateway/message/submission.h"
#include "gateway/store/json_writer.h"
#include "gateway/store/message_queries.h"
#include "relay/bcc_ingest.h"
#include "relay/delivery_engine.h"
#include "relay/policy/sender_directory.h"

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace mailgate::api {

// A configuration and the address index built from it (mailboxes and aliases to tenants), shared
// by every request that started under it.
struct Directory {
  std::shared_ptr<const config::Config> config;
  std::unique_ptr<relay::policy::SenderDirectory> senders;
};

// One request on its way through the API: the configuration it started under (a reload meanwhile
// does not change the rules half-way), the token it authenticated with, its parameters.
struct Call {
  HttpExchangePtr ex;
  std::shared_ptr<const config::Config> config;
  std::shared_ptr<const Directory> directory; // built from `config`
  const config::ApiToken* token = nullptr;    // null on public routes; points into `config`
  PathParams params;
  std::vector<std::pair<std::string, std::string>> query;
  int64_t now_ms = 0; // wall clock when the request arrived

  [[nodiscard]] const HttpRequest& req() const { return ex->request(); }
  // The path parameter `name` ("" when absent).
  [[nodiscard]] const std::string& param(std::string_view name) const;
  // First query value named `name`, or nullptr.
  [[nodiscard]] const std::string* q(std::string_view name) const;
  // The token's name for events and logs ("API token <name>").
  [[nodiscard]] std::string actor() const;
};
using CallPtr = std::shared_ptr<Call>;

struct ControlApi::State : std::enable_shared_from_this<ControlApi::State> {
  using Handler = void (State::*)(const CallPtr&);

  State(ControlApiDeps d, std::shared_ptr<const config::Config> c);

  ControlApiDeps deps;
  std::shared_ptr<const config::Config> config;
  RouteTable<Handler> routes;
  std::map<int, uint64_t> by_status;
  bool draining = false;
  std::unique_ptr<EventFeed> feed;
  std::shared_ptr<spdlog::logger> log = logger("api");

  void addRoutes();
  void handle(const HttpExchangePtr& ex);

  // Every answer goes through reply(): it counts the status.
  void reply(const CallPtr& call, HttpResponse response);
  void replyJson(const CallPtr& call, int status, const nlohmann::json& body,
                 HttpHeaders extra = {});
  void replyError(const CallPtr& call, int status, std::string_view code, std::string_view message,
                  std::string_view hint);
  // store.* and route/message errors of the components, with the right status.
  void replyFailure(const CallPtr& call, const Error& error);
  void countStatus(int status) { ++by_status[status]; }

  // A store or engine completion for `call`: does nothing once the API is gone, answers a failed
  // result's error (replyFailure), and otherwise calls fn(*this, value).
  template <typename T, typename Fn> auto then(const CallPtr& call, Fn fn) {
    return [weak = weak_from_this(), call, fn = std::move(fn)](Result<T> r) mutable {
      auto self = weak.lock();
      if (!self) {
        return;
      }
      if (!r) {
        self->replyFailure(call, r.error());
        return;
      }
      fn(*self, std::move(*r));
    };
  }
  // Adds the queue counts of the call's tenants to `body` under `key` and answers 200.
  void replyWithCounts(const CallPtr& call, nlohmann::json body, std::string key);

  // Whether the call's token may see `tenant` (a message without a tenant: only "*" tokens).
  [[nodiscard]] bool canSee(const Call& call, std::string_view tenant) const;
  // Query helpers: an integer in [min, max] or the default; nullopt (and a 400 sent) when bad.
  std::optional<int64_t> intParam(const CallPtr& call, std::string_view name, int64_t def,
                                  int64_t min, int64_t max);

  // Handlers (control_api.cc unless noted).
  void getHealth(const CallPtr& call);
  void getReady(const CallPtr& call);
  void getOpenApi(const CallPtr& call);
  void getStatus(const CallPtr& call);
  void getTenants(const CallPtr& call);
  void postReload(const CallPtr& call);
  void getMetrics(const CallPtr& call); // control_metrics.cc
  void writeDeliveryMetrics(PrometheusWriter& w) const;
  void writeImapMetrics(PrometheusWriter& w);
  void getEvents(const CallPtr& call);  // control_events.cc
  void getMessage(const CallPtr& call); // control_messages.cc
  void getQueue(const CallPtr& call);
  void postRetry(const CallPtr& call);
  void deleteMessage(const CallPtr& call);
  void actOnMessage(const CallPtr& call, bool cancel);
  // Reads the call's {id} message and runs `then` with it, or answers 404 when it does not exist
  // or is of a tenant the token may not see (the same answer), or the store error.
  void withMessage(const CallPtr& call, std::function<void(State&, relay::QueuedMessage)> then);
  void replyNoMessage(const CallPtr& call, const std::string& id);
  void getMailboxes(const CallPtr& call); // control_mailboxes.cc
  void getMailbox(const CallPtr& call);
  void postFailover(const CallPtr& call);
  void postFailback(const CallPtr& call);
  void postConnect(const CallPtr& call);    // control_connect.cc
  void postDisconnect(const CallPtr& call); // control_connect.cc
  void runConnect(const CallPtr& call, ConnectRequest request);
  // 404 (and false) unless `address` is a mailbox the call may see; fills `status`.
  bool mailboxVisible(const CallPtr& call, const std::string& address,
                      relay::MailboxStatus* status);
  void replyMailbox(const CallPtr& call, const relay::MailboxStatus& s);
  // The last JSON of each mailbox asked for, while the directory it was rendered under is
  // current (replyMailbox). At most kMailboxCacheMax entries (~1.5 KiB each); then it starts
  // over.
  struct RenderedMailbox {
    relay::MailboxStatus status;
    imap::MailboxImapStatus imap;
    std::optional<imap::MailboxSyncStatus> sync;
    std::shared_ptr<const std::string> json; // shared with answers still being sent
  };
  static constexpr std::size_t kMailboxCacheMax = 4096;
  std::unordered_map<std::string, RenderedMailbox> mailbox_cache;
  const Directory* mailbox_cache_dir = nullptr;
  relay::MailboxStatus scratch_status; // getMailbox's, refilled per request
  // Fills scratch_imap with the IMAP side of `address` (deps.imap_status) and says whether there
  // is one; without one scratch_imap holds the default status ("off", zeros, empty texts).
  bool fetchImap(std::string_view address);
  imap::MailboxImapStatus scratch_imap; // refilled by every fetchImap(), storage reused
  // Refilled by fetchImap() too: the sync side (deps.sync_status), unset when there is none.
  std::optional<imap::MailboxSyncStatus> scratch_sync;
  // An answer whose JSON text is already written.
  void replyJsonText(const CallPtr& call, int status, std::string json, HttpHeaders extra = {});
  void replyJsonShared(const CallPtr& call, int status, std::shared_ptr<const std::string> json);

  // POST /v1/messages (control_submit.cc).
  void postMessage(const CallPtr& call);
  void submitComposed(const CallPtr& call, std::optional<store::IdempotencyKey> key,
                      Result<message::SubmittedMessage> composed);
  // A submission with a bcc_address among its recipients (docs/bcc.md): queued and ingested in
  // one commit, answered 202 after it.
  void submitBcc(const CallPtr& call, std::optional<store::IdempotencyKey> key,
                 relay::BccSubmission submission);
  // Who may send as whom, for the current configuration (rebuilt on reconfigure).
  std::shared_ptr<const Directory> directory;
  static void writeMailbox(store::JsonWriter& w, const Directory& dir,
                           const relay::MailboxStatus& s, const imap::MailboxImapStatus& imap,
                           const std::optional<imap::MailboxSyncStatus>& sync);
  void rebuildDirectory();
  // Large submissions being composed on the worker, by job id (their calls wait here, on the
  // loop thread).
  struct Composition {
    CallPtr call;
    std::optional<store::IdempotencyKey> key;
  };
  std::map<uint64_t, Composition> composing;
  uint64_t next_composition = 0;
  BackgroundWorker worker; // last: its thread stops first
};

// JSON views shared by the handlers (control_views.cc).
nlohmann::json messageJson(const relay::QueuedMessage& m);
nlohmann::json eventJson(const store::StoredEvent& e);
nlohmann::json tenantJson(const config::Tenant& t);
nlohmann::json countsJson(const relay::QueueCounts& c);
// RFC 3339 UTC with milliseconds, or null for 0.
nlohmann::json timeJson(int64_t ms);

} // namespace mailgate::api

// The outbound delivery driver: takes queued messages, waits until each is due, and sends it to
// its relay over pooled SMTP connections, recording every attempt in the QueueStore. The design,
// the states and every constant are described in docs/queue.md.
//
//  - One pool per upstream identity (host, port, TLS mode, credentials), capped at the relay's
//    limits.max_connections. Connections open only when messages are ready and none is idle;
//    each carries up to queue.messages_per_connection messages (RSET between them), then QUITs.
//    Idle connections QUIT after DeliveryOptions::idle_timeout.
//  - A connection that cannot be set up (refused, timeout, TLS, greeting or AUTH rejected) costs
//    no message an attempt: the pool backs off and the messages wait. A message is marked
//    `sending` only once a connection is Ready for it.
//  - 4xx defers (queue.retry_initial doubling up to queue.retry_max), 5xx fails the recipient,
//    the lifetime (queue.lifetime) ends in failure. A connection lost after the final "." is
//    recorded as a temporary failure: the message goes again and may arrive twice.
//
// Threading: loop thread only (the loop given to create()). Lifetime: store completions and net
// callbacks that arrive after the engine was destroyed do nothing, so the store may outlive it.
#pragma once

#include "base/error.h"
#include "base/token_source.h"
#include "config/config.h"
#include "net/backoff.h"
#include "relay/queue_store.h"
#include "relay/reload_report.h"
#include "relay/router.h"
#include "relay/smtp/protocol/client_session.h"
#include "relay/upstream_connection.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace mailgate::net {
class Loop;
}

namespace mailgate::relay {

// Knobs that the configuration file does not (yet) carry. Defaults are the production values;
// tests shorten the timers.
struct DeliveryOptions {
  // An idle upstream connection is closed (QUIT) after this long without a message. Servers
  // commonly drop idle clients after 60-300 s; 30 s keeps a connection warm across a burst
  // without holding the upstream's slots for nothing.
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(30)};
  UpstreamTimeouts timeouts;
  // Delay between connection attempts while a relay cannot be reached or refuses us.
  net::BackoffOptions connect_backoff{std::chrono::seconds(1), std::chrono::minutes(5), 2.0, 0.2,
                                      std::nullopt};
  // How long to wait before retrying a store write that failed for want of space or a lock.
  std::chrono::milliseconds store_retry{std::chrono::seconds(5)};
  // Spread of retry times (RetryOptions::jitter_fraction): messages deferred together do not all
  // come back in the same second.
  double retry_jitter = 0.1;

  // Per relay name: the SASL mechanism when relays.NAME.auth is set (default PLAIN; the
  // configuration has no key for it yet).
  std::map<std::string, smtp::ClientAuth> auth_mechanism;
  // Per relay name: where XOAUTH2 access tokens come from (the username is auth.username).
  // Setting one makes that relay use XOAUTH2.
  std::map<std::string, std::shared_ptr<TokenSource>> token_sources;

  // Timers and backoffs of the routing policy (relay/router.h).
  RouterOptions router;
};

// Counters since creation, for metrics and tests.
struct DeliveryStats {
  uint64_t connections_opened = 0; // connect attempts started
  uint64_t connections_ready = 0;  // connections that completed greeting, TLS and AUTH
  uint64_t connect_failures = 0;   // connections that failed before becoming ready
  uint64_t attempts = 0;           // messages handed to an upstream (markSending succeeded)
  uint64_t delivered = 0;          // messages that ended `sent`
  uint64_t failed = 0;             // messages that ended `failed` (5xx, expired, no route)
  uint64_t deferred = 0;           // attempts that left the message deferred
  uint64_t unknown_outcomes = 0;   // connection lost after the final "." (possible duplicate)
  uint64_t failovers = 0;          // attempts through a relay for a mailbox with its own route
  uint64_t waits = 0;              // times a due message had to wait (pacing, budget, held)
  size_t open_connections = 0;     // now
  size_t waiting = 0;              // messages known to the engine and not in flight now
};

// The last error seen for a mailbox's Microsoft 365 route.
struct MailboxError {
  std::string kind;    // "login" (refused), "connection" (failed before it was ready), "reply"
                       // (a Microsoft 365 reply the reply table classified)
  std::string message; // the reply or error, as logged (never a secret)
  std::string hint;    // what an operator can do; may be empty
  int64_t at_ms = 0;   // wall clock
};

// What the control API shows per mailbox: what is connected, what is spent, where its mail goes
// and why.
struct MailboxStatus {
  // The router's view: tenant, address, state, until, reason, hint, ledger usage, connection cap,
  // failed_over, and the manual failover in force (manual_failover, manual_actor,
  // manual_since_ms).
  MailboxRouteView route;
  // False for a mailbox that is no longer in the configuration but still has mail the engine
  // holds (route.state is kUnconfigured, route.reason "mailbox no longer configured").
  bool configured = true;
  uint32_t connections_open = 0; // sockets of the mailbox's Microsoft 365 pool (opening included)
  uint32_t connections_busy = 0; // of those, carrying a message now
  uint32_t waiting = 0;          // messages the engine holds: not due yet, held, or ready
  uint32_t in_flight = 0;        // messages between being picked and their recorded outcome
  std::optional<MailboxError> last_error;
};

// Counters since start, for Prometheus (GET /metrics). Small maps keyed by short strings.
struct DeliveryMetrics {
  // By (route, outcome): route "microsoft365", a relay name, or "none" (no route was chosen);
  // outcome "sent", "deferred" or "failed": one per recorded attempt, expiry or cancel.
  std::map<std::pair<std::string, std::string>, uint64_t> messages;
  // Upstream replies by class: the reply-table rule's name for Microsoft 365 replies
  // ("quota_exceeded", "connection_limit", "smtp_auth_disabled", ...; route::replyRules()),
  // otherwise "2xx", "4xx" or "5xx"; "connection" for a failure without a reply. One per
  // attempt (the reply that decided it) and one per connection that failed before it was ready.
  std::map<std::string, uint64_t> replies;
  uint64_t failovers_automatic = 0;  // route.failover episodes the router started
  uint64_t failovers_manual = 0;     // failover() calls that put a manual failover in force
  uint64_t failbacks_manual = 0;     // failback() calls
  uint64_t failed_over_messages = 0; // attempts through a relay for a mailbox with its own route
  uint64_t connections_opened = 0;
  uint64_t connections_ready = 0;
  uint64_t connections_failed = 0; // failed before they were ready
  size_t connections_open = 0;     // now
  size_t messages_waiting = 0;     // now
  size_t messages_in_flight = 0;   // now
};

class DeliveryEngine {
public:
  // Builds client TLS contexts for every relay in config.relays and loads the routing state
  // (ledgers, route states) from the store. `config` must stay alive until the engine is
  // destroyed or reconfigure() has replaced it. Errors: "tls.config" naming the relay
  // (unreadable ca_file, malformed pin), store errors.
  static Result<std::unique_ptr<DeliveryEngine>>
  create(net::Loop& loop, const config::Config& config, QueueStore& store);
  static Result<std::unique_ptr<DeliveryEngine>>
  create(net::Loop& loop, const config::Config& config, QueueStore& store, DeliveryOptions options);

  // Abandons everything in flight at once: connections are aborted, messages being sent stay
  // `sending` in the store and are recovered (and sent again) at the next start. Safe at any
  // time, including from inside the drain callback.
  ~DeliveryEngine();
  DeliveryEngine(const DeliveryEngine&) = delete;
  DeliveryEngine& operator=(const DeliveryEngine&) = delete;

  // A message that is queued or deferred (from QueueStore::recover() at start, or just accepted
  // by the submission server). It is sent once next_attempt_ms has come (wall clock), or expired
  // if its lifetime is over. A message already known to the engine (same id) is ignored, as are
  // messages in any other state. During and after drain() messages are kept but not started; they
  // stay queued in the store.
  void schedule(QueuedMessage msg);

  // SIGTERM: starts no new attempt and opens no connection; attempts in flight finish and their
  // outcomes are recorded; idle connections QUIT. `done` runs on the loop, in a later turn, once
  // no connection and no store operation of ours is left. A second call adds another callback.
  void drain(std::function<void()> done);

  [[nodiscard]] DeliveryStats stats() const;
  [[nodiscard]] DeliveryMetrics metrics() const;

  // Live reload (SIGHUP, POST /v1/config/reload) with a configuration that passed validation.
  // Once it returns the engine refers to nothing of the previous configuration (create()'s or
  // the previous reconfigure()'s), so the caller may drop it; it keeps `next` itself.
  //  - Ledgers, route states and manual failovers carry over by key; new limits apply to what
  //    was already counted (a lowered budget can be spent already).
  //  - A pool whose upstream identity changed (host, port, TLS mode and trust, credentials,
  //    egress.bind_address, node.id) is replaced: busy connections finish their message and
  //    QUIT, idle ones QUIT now, new connections use the new settings; its waiting messages are
  //    routed again. Relay caps (limits.max_connections) apply to unchanged pools at once.
  //  - A mailbox (or tenant) no longer configured keeps its mail queued: it waits ("mailbox no
  //    longer configured") until the mailbox is configured again or its lifetime ends.
  //  - Messages waiting for the router on a mailbox or relay that changed are routed again now.
  //  - queue.retry_*, messages_per_connection and microsoft365.login_retry_* apply from the next
  //    use; queue.lifetime applies to messages accepted from now on (the submission side sets
  //    it); queue.commit_batch_max is the store's (listed in restart_required).
  // Errors ("config.retry", "tls.config" naming the relay): nothing changed; keep the old
  // configuration alive then.
  Result<ReloadReport> reconfigure(std::shared_ptr<const config::Config> next);

  // --- the control API (gateway/api); loop thread only ------------------------------------------

  // The status of the mailbox whose primary address is `address` (any case); nullopt when no
  // configured mailbox has it and the engine holds no mail of it.
  std::optional<MailboxStatus> mailboxStatus(std::string_view address);
  // The same written into `out`, reusing its strings' storage, for a caller that asks many times
  // (GET /v1/mailboxes/{address}); false, `out` unspecified, when there is no such mailbox.
  bool mailboxStatusInto(std::string_view address, MailboxStatus& out);
  // Every configured mailbox (address order), then every unconfigured one the engine still holds
  // mail of; only those of `tenant` when it is not empty. O(mailboxes) with no scan of messages,
  // for listings and metrics. `fn` must not call the engine.
  void forEachMailbox(const std::function<void(const MailboxStatus&)>& fn,
                      std::string_view tenant = {});

  // Manual failover: the mailbox's new mail goes through its tenant's fallback chain until
  // failback(), also after a restart (persisted with the route states); records route.failover
  // with data {"manual": true, "actor": actor}. Its mail waiting for its Microsoft 365 connections
  // or held is routed again now. Messages pinned to Microsoft 365 keep their route. Calling it
  // again while in force changes nothing. Errors: "route.unknown_mailbox", "route.no_fallback"
  // (the tenant has no fallback relay: every message would only be held).
  Result<MailboxStatus> failover(std::string_view address, std::string_view actor);
  // Failback: clears a manual failover and an exhausted or paused state (the ledger's own budget
  // still applies), tries a disconnected login now, records route.failback with data
  // {"manual": true, "actor": actor}, and routes the mailbox's waiting mail again now. Errors:
  // "route.unknown_mailbox".
  Result<MailboxStatus> failback(std::string_view address, std::string_view actor);

  // POST /v1/messages/{id}/retry and DELETE /v1/messages/{id}, over QueueStore::retryNow and
  // QueueStore::cancel. Refused with "message.in_flight" (nothing changes) while an attempt of
  // the message is between being picked and its recorded outcome, while its expiry is being
  // recorded, or while another of these actions on it is in progress. Otherwise the store
  // records it and then the engine's copy moves: retried, it is due now (scheduled if the engine
  // did not hold it); cancelled, it leaves every waiting structure and router charges taken for
  // it are given back. Store errors ("store.not_found", "store.state", ...) leave the engine as it
  // was. `done` runs on the loop in a later turn, and not at all once the engine is destroyed.
  void retryNow(std::string id, std::string actor, std::function<void(Result<QueuedMessage>)> done);
  void cancel(std::string id, std::string actor, std::function<void(Result<QueuedMessage>)> done);

  struct State; // delivery_engine.cc
  struct PrivateTag {
    explicit PrivateTag() = default;
  };
  // For create() only.
  DeliveryEngine(PrivateTag, std::shared_ptr<State> state);

private:
  std::shared_ptr<State> state_;
};

} // namespace mailgate::relay

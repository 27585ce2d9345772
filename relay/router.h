// Routing policy: which route the next attempt of a message takes (the mailbox's Microsoft 365
// submission, or the first relay of its tenant's fallback chain that can take it), the ledgers
// behind that decision, and the state of every mailbox's Microsoft 365 route (active, exhausted,
// paused, disconnected). docs/routing.md describes the behaviour for operators.
//
// No I/O: the DeliveryEngine asks, passes the time, persists what takeChanges() returns, and
// reports what the upstream said. Loop thread only. Memory per configured mailbox is a few
// hundred bytes while it sends nothing (ledgers keep at most 241 buckets).
#pragma once

#include "base/error.h"
#include "config/config.h"
#include "net/backoff.h"
#include "relay/queue_store.h"
#include "relay/route/ledger.h"
#include "relay/route/reply_class.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::relay {

// The route name of a mailbox's own Microsoft 365 SMTP submission (QueuedMessage::route).
inline constexpr std::string_view kMicrosoft365Route = "microsoft365";

enum class RouteState {
  kActive,       // mail goes through Microsoft 365 while the ledger allows it
  kExhausted,    // Microsoft 365 said its quota is spent: fallback chain until until_ms
  kPaused,       // sender throttled: fallback chain until until_ms
  kDisconnected, // the login fails: held or through the fallback chain (tenant on_disconnect)
  kUnconfigured, // no credentials (or no SMTP: access graph): as disconnected, never probed
};

[[nodiscard]] std::string_view toString(RouteState s);

struct RouterOptions {
  // After an upstream quota reply with nothing recorded in the ledger: how long until the route
  // is tried again (otherwise: until the oldest recorded send leaves the window).
  std::chrono::milliseconds exhausted_min_wait{std::chrono::minutes(30)};
  // How long a "sender throttled" reply pauses the route.
  std::chrono::milliseconds pause{std::chrono::hours(1)};
  // Login probes of a disconnected route (the DeliveryEngine sets both from
  // microsoft365.login_retry_initial/_max): settings and policy problems...
  net::BackoffOptions login_backoff{std::chrono::minutes(1), std::chrono::hours(1), 2.0, 0.2,
                                    std::nullopt};
  // ...and bad credentials, which may be a new App Password that starts working hours later.
  net::BackoffOptions slow_login_backoff{std::chrono::minutes(5), std::chrono::hours(2), 2.0, 0.2,
                                         std::nullopt};
  // A concurrency reply lowers the mailbox's connection cap by one for this long.
  std::chrono::milliseconds fewer_connections_for{std::chrono::minutes(10)};
  // When a message is retried after a concurrency or rate reply.
  std::chrono::milliseconds retry_soon{std::chrono::seconds(5)};
  std::chrono::milliseconds retry_paced{std::chrono::seconds(60)};
  // A held message (route disconnected, on_disconnect: hold) is looked at again this often.
  std::chrono::milliseconds hold_recheck{std::chrono::minutes(5)};
};

struct RouteDecision {
  enum class Kind { kSend, kWait, kFail };
  Kind kind = Kind::kWait;
  std::string route;                 // kSend: kMicrosoft365Route or a relay name
  std::string mailbox;               // kSend through Microsoft 365: the mailbox (lower case)
  std::vector<LedgerCharge> charges; // kSend: counted in memory; persist with markSending
  int64_t until_ms = 0;              // kWait: look again then
  std::string reason;                // why; for kFail the reply recorded for every recipient
  bool failover = false;             // kSend through a relay for a mailbox with its own route
  // kWait because of pacing (messages per minute): the ledger and its spacing, so the caller can
  // give each waiting message its own later slot instead of waking them all at until_ms.
  std::string pace_key;
  int64_t pace_interval_us = 0;
};

// What an attempt's upstream reply means for the message (the route's state is already updated).
struct ReplyEffect {
  route::ReplyAction action = route::ReplyAction::kReject;
  std::string reply;       // the reply with the rule's hint appended, to record for the message
  int64_t retry_at_ms = 0; // the message goes again (through whatever route is right then)
  bool close_connection = false;
};

// A mailbox's route as the API shows it.
struct MailboxRouteView {
  std::string tenant;
  std::string address;
  RouteState state = RouteState::kActive;
  int64_t until_ms = 0;
  std::string reason;
  std::string hint;
  route::LedgerUsage usage;
  uint32_t max_connections = 0;
  // Some of this mailbox's mail goes through the fallback chain now: an episode of automatic
  // failover (the route cannot take it) or a manual failover.
  bool failed_over = false;
  // An operator's failover (Router::failover) is in force: the mailbox's new mail goes through
  // the fallback chain until failback, whatever the route's own state.
  bool manual_failover = false;
  std::string manual_actor; // who asked (the API token's name)
  int64_t manual_since_ms = 0;
};

// The key under which a mailbox's manual failover is persisted (QueueStore::saveRouteState), apart
// from its route's own state ("m365:<address>"), so that each survives a restart by itself.
[[nodiscard]] std::string manualFailoverKey(std::string_view address);

// What Router::reconfigure() changed.
struct RouterReload {
  std::vector<std::string> changes; // one sentence each, for logs and the API's answer
  // Lower-case addresses of mailboxes added, removed, or whose routing inputs changed (their
  // tenant's limits, fallback chain, reserve or on_disconnect, their credentials or server, a
  // relay of their chain): their waiting mail should be routed again.
  std::set<std::string, std::less<>> mailboxes;
  // Relays added, removed, or whose server, auth or limits changed.
  std::set<std::string, std::less<>> relays;
};

class Router {
public:
  Router(const config::Config& config, RouterOptions options);
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // Ledgers and route states from the store, at start-up. Disconnected routes are probed at once.
  // Those of mailboxes that are not configured are kept aside, so that they count again should
  // the mailbox be configured by a reload.
  void restore(const RoutingSnapshot& snapshot, int64_t now_ms);

  // A reload: from now on the router refers to `next` only (the previous configuration may be
  // dropped once this returns; it must still be alive during the call). Ledgers, route states
  // and manual failovers carry over by key, with the new limits applied to what was already
  // counted. A mailbox no longer in `next` is kept aside (its ledger still counts, its mail waits
  // as "no longer configured") and comes back as it was when it is configured again. A mailbox
  // that is now without credentials is kUnconfigured; one that got them is active; a disconnected
  // one whose credentials or server changed is due for a login probe now.
  RouterReload reconfigure(const config::Config& next, RouterOptions options, int64_t now_ms);

  // The longest window of any ledger (QueueStore::loadRouting's max_window_ms).
  [[nodiscard]] int64_t maxWindowMs() const;

  // The route of `msg`'s next attempt. kSend has already charged the ledgers in memory:
  // persist decision.charges with markSending, or give them back with cancel(). `relay_usable`
  // says whether a relay can be reached right now (a relay that cannot is skipped while a later
  // one in the chain can).
  [[nodiscard]] RouteDecision decide(const QueuedMessage& msg, int64_t now_ms,
                                     const std::function<bool(std::string_view)>& relay_usable);
  // A kSend decision that did not become an attempt: its charges come back (memory only).
  void cancel(const std::vector<LedgerCharge>& charges, int64_t now_ms);
  // After an attempt that reached only `kept` of the charged recipients: the rest come back.
  // Returns the refunds to persist with recordAttempt (empty when nothing comes back).
  [[nodiscard]] std::vector<LedgerCharge> refund(const std::vector<LedgerCharge>& charges,
                                                 uint32_t kept, int64_t now_ms);

  // An attempt through `mailbox`'s Microsoft 365 route got `reply` (code and full text), which
  // `rule` classified. When the upstream took nothing, give the attempt's charges back (refund)
  // first: a quota reply exhausts the route until the oldest send that really counts frees.
  [[nodiscard]] ReplyEffect onReply(std::string_view mailbox, const route::ReplyRule& rule,
                                    int code, std::string_view reply, int64_t now_ms);
  // The login of `mailbox` failed with a reply classified as kDisconnect (or a connection-level
  // failure when `rule` is null, which keeps the current state and only schedules the next
  // probe). Returns when to probe next.
  int64_t onLoginFailed(std::string_view mailbox, const route::ReplyRule* rule,
                        std::string_view reason, int64_t now_ms);
  // A connection of `mailbox` logged in: a disconnected route is active again. Returns true when
  // it was disconnected.
  bool onLoginOk(std::string_view mailbox, int64_t now_ms);

  // Connections `mailbox`'s pool may have now (limits.max_connections, lowered after
  // concurrency replies).
  [[nodiscard]] uint32_t maxConnections(std::string_view mailbox, int64_t now_ms) const;
  // Disconnected routes and when each is due for a login probe.
  [[nodiscard]] std::vector<std::pair<std::string, int64_t>> probesDue() const;

  // The configured mailbox for a (lower-case) address, or nullptr.
  [[nodiscard]] const config::Mailbox* mailbox(std::string_view address) const;
  // The mailbox's route, `address` in any case; nullopt for an address that is not a configured
  // mailbox's primary address.
  [[nodiscard]] std::optional<MailboxRouteView> view(std::string_view address, int64_t now_ms);
  // The same view written into `out`, reusing its strings' storage (a caller that asks often
  // allocates nothing); false, and `out` untouched, for an address that is not a mailbox.
  bool viewInto(std::string_view address, int64_t now_ms, MailboxRouteView& out);
  // Every configured mailbox's view in address order (lower case), only those of `tenant` when it
  // is not empty. `fn` must not call the router.
  void forEachView(std::string_view tenant, int64_t now_ms,
                   const std::function<void(const MailboxRouteView&)>& fn);

  // --- operator actions (the control API) ----------------------------------------------------

  // Manual failover of `address` (lower case): its new mail goes through the tenant's fallback
  // chain until failback(), whatever the route's state; messages pinned to Microsoft 365 keep
  // their route. Persisted under manualFailoverKey() with a route.failover event whose data
  // carries "manual": true and "actor". Returns true when it was not in force already (then
  // nothing is recorded again). Errors: "route.unknown_mailbox"; "route.no_fallback" when the
  // tenant has no fallback relay (every message would only be held).
  Result<bool> failover(std::string_view address, std::string_view actor, int64_t now_ms);
  // Operator failback of `address` (lower case): clears a manual failover and an exhausted or
  // paused state (the ledger's own budget still applies), and makes a disconnected route due for
  // a login probe now (probesDue()). Records route.failback with "manual": true and "actor".
  // Errors: "route.unknown_mailbox".
  Result<void> failback(std::string_view address, std::string_view actor, int64_t now_ms);

  // State changes to persist (QueueStore::saveRouteState) and events to record, oldest first.
  struct Change {
    RouteStateRecord state;
    std::optional<EventRecord> event;
    bool manual = false; // an operator's action (failover, failback), not the router's own
  };
  [[nodiscard]] std::vector<Change> takeChanges();

  struct MailboxRoute; // router.cc
  struct RelayRoute;   // router.cc

private:
  MailboxRoute* find(std::string_view address);
  [[nodiscard]] const MailboxRoute* find(std::string_view address) const;
  // Configured or kept aside (retired_).
  MailboxRoute* findAny(std::string_view address);
  MailboxRoute& routeForRestore(std::string_view address);
  route::Ledger* ledgerFor(std::string_view key);
  // The tenant's fallback chain for a message of `mb`. `episode`: Microsoft 365 cannot take
  // mail now (record route.failover once), as opposed to this one message never fitting it.
  // `m365_until_ms`: when the mailbox's route may take mail again (0: unknown), so a message
  // waiting for the relays waits no longer than that.
  RouteDecision viaRelays(const QueuedMessage& msg, MailboxRoute& mb, bool episode,
                          int64_t m365_until_ms, int64_t now_ms,
                          const std::function<bool(std::string_view)>& relay_usable,
                          std::string why);
  RouteDecision viaRelay(const QueuedMessage& msg, std::string_view relay, int64_t now_ms);
  void refresh(MailboxRoute& mb, int64_t now_ms);
  void fillView(MailboxRoute& mb, int64_t now_ms, MailboxRouteView& v);
  void setState(MailboxRoute& mb, RouteState state, int64_t until_ms, std::string reason,
                std::string hint, std::string event_type, bool alert, int64_t now_ms);
  void event(const MailboxRoute& mb, std::string type, std::string data_json);

  const config::Config* config_; // the current configuration (reconfigure() replaces it)
  RouterOptions options_;
  std::map<std::string, std::unique_ptr<MailboxRoute>, std::less<>> mailboxes_;
  // Mailboxes that are not configured now but whose ledgers still count sends (removed by a
  // reload, or found in the store at start-up): tenant and mailbox are null.
  std::map<std::string, std::unique_ptr<MailboxRoute>, std::less<>> retired_;
  std::map<std::string, std::unique_ptr<RelayRoute>, std::less<>> relays_;
  std::vector<Change> changes_;
};

} // namespace mailgate::relay

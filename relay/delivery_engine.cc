#include "relay/delivery_engine.h"

#include "base/log.h"
#include "net/loop.h"
#include "net/timer.h"
#include "net/tls_context.h"
#include "relay/queue/retry_policy.h"
#include "relay/router.h"
#include "relay/smtp/protocol/address.h"

#include <algorithm>
#include <array>
#include <deque>
#include <limits>
#include <map>
#include <set>
#include <tuple>
#include <unistd.h>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace mailgate::relay {
namespace {

using std::chrono::milliseconds;

// The scheduler's timer never sleeps longer than this, so a wall clock that was stepped (NTP,
// suspend) delays a due message by at most this much.
constexpr milliseconds kMaxTimerSleep{std::chrono::seconds(60)};

// A mailbox's pool opens one more connection per this many messages waiting or in flight (up to
// its max_connections); relays open one per waiting message.
constexpr size_t kMessagesPerMailboxConnection = 4;

// When a message could not be handed to its connection because the connection went away while the
// message was being read from the store.
constexpr milliseconds kRequeueDelay{std::chrono::seconds(1)};

// Lets unordered maps keyed by std::string be searched with a string_view (no allocation).
struct TransparentHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

int64_t wallClockMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string hostName() {
  std::array<char, 256> buf{};
  if (gethostname(buf.data(), buf.size() - 1) != 0 || buf[0] == '\0') {
    return "localhost";
  }
  return std::string(buf.data());
}

DeliveryResult toDeliveryResult(smtp::RecipientStatus status) {
  switch (status) {
  case smtp::RecipientStatus::kDelivered:
    return DeliveryResult::kSent;
  case smtp::RecipientStatus::kTempFailed:
    return DeliveryResult::kTempFail;
  case smtp::RecipientStatus::kPermFailed:
    return DeliveryResult::kPermFail;
  }
  return DeliveryResult::kTempFail;
}

bool isOk(const std::optional<smtp::Reply>& reply) {
  return reply && reply->code >= 200 && reply->code < 300;
}

// Store errors that go away by themselves (space freed, lock released): worth retrying.
bool isTransientStoreError(const Error& e) {
  return e.code == "store.full" || e.code == "store.io" || e.code == "store.busy";
}

bool isConfigurationError(const Error& e) {
  return e.code.starts_with("tls.") || e.code == "smtp.auth_failed" ||
         e.code == "smtp.auth_unavailable" || e.code == "smtp.starttls_unavailable" ||
         e.code.starts_with("oauth.");
}

// "2xx", "4xx", "5xx" for metrics.
std::string codeClass(int code) {
  return code >= 100 && code < 600 ? std::to_string(code / 100) + "xx" : std::string("other");
}

// The route label of an outcome for metrics: the message's route, "none" before it had one.
std::string routeLabel(std::string_view route) {
  return route.empty() ? std::string("none") : std::string(route);
}

Error inFlight(std::string_view id, std::string_view what) {
  return Error("message.in_flight", fmt::format("message {} {}; nothing was changed", id, what),
               "try again once the attempt is recorded (GET /v1/messages/{id} shows its state)");
}

RetryOptions retryOptions(const config::Config& config, double jitter) {
  RetryOptions ro;
  ro.initial_delay_ms = config.queue.retry_initial.count();
  ro.max_delay_ms = config.queue.retry_max.count();
  ro.lifetime_ms = config.queue.lifetime.count();
  ro.jitter_fraction = jitter;
  return ro;
}

// Login retries of disconnected routes come from the configuration (microsoft365.login_retry_*).
void setLoginBackoff(RouterOptions& o, const config::Config& config) {
  o.login_backoff.initial = config.microsoft365.login_retry_initial;
  o.login_backoff.max = config.microsoft365.login_retry_max;
  o.slow_login_backoff.initial = config.microsoft365.login_retry_initial * 5;
  o.slow_login_backoff.max = config.microsoft365.login_retry_max * 2;
}

std::string ehloName(const config::Config& config) {
  return config.node.id.empty() ? hostName() : config.node.id;
}

// What makes connections of one pool interchangeable: relays that agree on all of it share a
// pool, and a reload that changes any of it replaces the pool. Holds the password: compared,
// never logged.
struct PoolIdentity {
  std::string host;
  uint16_t port = 0;
  int tls = 0;
  std::string username;
  std::string password;
  int auth = 0;
  const TokenSource* tokens = nullptr;
  std::string ca_file;
  bool allow_self_signed = false;
  std::vector<std::string> pins;
  std::string bind_address;
  std::string ehlo;

  auto operator<=>(const PoolIdentity&) const = default;
};

PoolIdentity identityOf(const config::Upstream& up, const smtp::ClientOptions& client,
                        const TokenSource* tokens, const config::Config& config) {
  return PoolIdentity{up.host,
                      up.port,
                      static_cast<int>(up.tls),
                      client.username,
                      client.password,
                      static_cast<int>(client.auth),
                      tokens,
                      up.ca_file,
                      up.allow_self_signed,
                      up.pins,
                      config.egress.bind_address,
                      client.ehlo_name};
}

smtp::ClientTls toClientTls(config::TlsMode mode);

// The session options of a mailbox's Microsoft 365 connections: AUTH LOGIN (Microsoft 365 offers
// LOGIN and XOAUTH2, no PLAIN) with the address as the user name.
smtp::ClientOptions mailboxClient(const config::Mailbox& mb, const std::string& ehlo) {
  smtp::ClientOptions client;
  client.ehlo_name = ehlo;
  client.tls = toClientTls(mb.smtp.tls);
  client.auth = smtp::ClientAuth::kLogin;
  client.username = mb.address;
  client.password = mb.auth && mb.auth->password ? mb.auth->password->reveal() : std::string();
  return client;
}

smtp::ClientTls toClientTls(config::TlsMode mode) {
  switch (mode) {
  case config::TlsMode::kImplicit:
    return smtp::ClientTls::kImplicit;
  case config::TlsMode::kStarttls:
    return smtp::ClientTls::kStartTls;
  case config::TlsMode::kNone:
    return smtp::ClientTls::kNone;
  }
  return smtp::ClientTls::kStartTls;
}

} // namespace

// ----------------------------------------------------------------------------------------------
// Internal state. Everything below runs on the loop thread. Store completions hold the State
// weakly; timers and connections are owned by it, so their callbacks may use `this`.

struct DeliveryEngine::State final : UpstreamConnection::Observer,
                                     std::enable_shared_from_this<DeliveryEngine::State> {
  struct Pool;
  struct Slot;

  // A message the router sent to a pool, waiting for one of its connections.
  struct Ready {
    QueuedMessage msg;
    std::string route;                 // kMicrosoft365Route or a relay name
    std::vector<LedgerCharge> charges; // counted in memory; persisted by markSending
  };

  // One message on its way through markSending (which hands back the body) → send → recordAttempt.
  struct Attempt {
    QueuedMessage msg;
    std::string route;
    std::vector<LedgerCharge> charges;
    Pool* pool = nullptr;
    Slot* slot = nullptr; // null once the connection is gone (or the attempt let go of it)
    uint64_t conn_id = 0;
    std::vector<RecipientOutcome> local; // recipients refused here (bad address syntax)
  };
  using AttemptPtr = std::shared_ptr<Attempt>;

  // One connection of a pool and what it is doing.
  struct Slot {
    std::unique_ptr<UpstreamConnection> conn;
    net::TimerPtr idle_timer;
    AttemptPtr attempt; // set from markSending until the outcome is known
    uint32_t messages = 0;
    bool quitting = false;
    bool counted_ready = false;
    bool close_after = false; // QUIT instead of taking the next message (upstream asked for fewer)

    [[nodiscard]] bool idle() const { return conn->ready() && !attempt && !quitting; }
  };

  // Connections to one upstream identity and the messages waiting for them.
  struct Pool {
    std::string label;   // "default (127.0.0.1:2526)" for log lines
    std::string mailbox; // set: this mailbox's Microsoft 365 route (lower case); empty: a relay
    UpstreamSettings base;
    uint32_t max_connections = 1;
    std::deque<Ready> ready; // due, FIFO, waiting for a connection
    std::vector<std::unique_ptr<Slot>> slots;
    std::unique_ptr<net::Backoff> backoff;
    net::TimerPtr backoff_timer;
    bool backing_off = false;
    PoolIdentity identity;
    // Replaced by a reload: takes no message; busy connections finish theirs and QUIT; deleted
    // once its last connection closed.
    bool retired = false;
  };

  State(net::Loop& l, QueueStore& s, const config::Config& c, DeliveryOptions o, RetryPolicy r,
        uint32_t per_connection)
      : loop(l), store(s), config(&c), options(std::move(o)), retry(r),
        messages_per_connection(std::max<uint32_t>(per_connection, 1)), log(logger("delivery")),
        timer(net::Timer::create(l)), router(c, options.router) {}

  net::Loop& loop;
  QueueStore& store;
  // The configuration in force: create()'s (the caller keeps it alive) until the first
  // reconfigure(), then one that config_owner keeps alive.
  const config::Config* config;
  std::shared_ptr<const config::Config> config_owner;
  DeliveryOptions options;
  RetryPolicy retry;
  uint32_t messages_per_connection;
  std::shared_ptr<spdlog::logger> log;

  std::vector<std::unique_ptr<Pool>> pools;
  // Every open connection's pool and slot: connection events find theirs without a scan over
  // thousands of mailbox pools.
  std::unordered_map<const UpstreamConnection*, std::pair<Pool*, Slot*>> slot_by_conn;
  std::map<std::string, Pool*, std::less<>> pool_by_relay;
  std::map<std::string, Pool*, std::less<>> pool_by_mailbox; // created at a mailbox's first use
  std::string ehlo_name;
  std::map<std::tuple<std::string, bool, std::vector<std::string>>, net::TlsContextPtr>
      tls_cache; // see TlsCache

  // Messages not yet due, by next_attempt_ms (FIFO among equal times); one timer for the first.
  using Future = std::multimap<int64_t, QueuedMessage>;
  Future future;
  net::TimerPtr timer;

  // Where a message the engine is responsible for is now.
  enum class Where : uint8_t {
    kDue,     // being routed (within one call)
    kFuture,  // in `future`
    kReady,   // in a pool's ready queue, charged, waiting for a connection
    kParked,  // set aside while an operator action on it is in progress
    kAttempt, // picked for an attempt: from startAttempt until recordAttempt's completion
    kStoreOp, // its expiry, or its failure for want of a route, is being recorded
  };
  static bool waitingPlace(Where w) { return w != Where::kAttempt && w != Where::kStoreOp; }
  struct Tracked {
    std::string mailbox; // lower case; empty: none
    Where where = Where::kDue;
    bool routing_wait = false; // kFuture because the router said wait (not a retry delay)
    bool operator_op = false;  // retryNow/cancel in progress
    Future::iterator it;       // kFuture
    Pool* pool = nullptr;      // kReady
    std::unique_ptr<QueuedMessage> parked;
  };
  // Every message the engine is responsible for, by id; schedule() ignores repeats.
  std::unordered_map<std::string, Tracked> tracked;
  // Per mailbox (lower case) with mail held: counts for mailboxStatus() without a scan.
  struct MailboxCounts {
    uint32_t waiting = 0;
    uint32_t in_flight = 0;
    std::string tenant;  // as the messages carry them, for a mailbox no longer configured
    std::string address; // as written
  };
  std::unordered_map<std::string, MailboxCounts, TransparentHash, std::equal_to<>> mailbox_counts;
  size_t waiting_total = 0;
  size_t in_flight_total = 0;
  // The last error per mailbox (lower case), for mailboxStatus().
  std::unordered_map<std::string, MailboxError, TransparentHash, std::equal_to<>> last_errors;
  DeliveryMetrics metrics;
  size_t in_flight = 0; // attempts between markSending and recordAttempt's completion
  size_t store_ops = 0; // store calls whose completion has not arrived (retries included)
  uint64_t next_conn_id = 0;
  uint64_t next_later_id = 0;
  std::map<uint64_t, std::pair<net::TimerPtr, std::function<void()>>> later_timers;

  bool draining = false;
  bool drain_reported = false;
  std::vector<std::function<void()>> drain_done;
  bool shut_down = false;
  DeliveryStats stats;
  Router router;
  // Per ledger key: the next pacing slot (µs since the epoch) to hand to a waiting message.
  std::map<std::string, int64_t, std::less<>> pace_next_us;
  // Login probes of disconnected Microsoft 365 routes, by mailbox.
  std::map<std::string, net::TimerPtr, std::less<>> probes;

  // --- where each message is ----------------------------------------------------------------

  Tracked* findTracked(const std::string& id) {
    auto it = tracked.find(id);
    return it == tracked.end() ? nullptr : &it->second;
  }

  void count(const Tracked& t, bool waiting, int delta) {
    (waiting ? waiting_total : in_flight_total) += static_cast<size_t>(delta);
    if (t.mailbox.empty()) {
      return;
    }
    auto it = mailbox_counts.find(t.mailbox);
    if (it == mailbox_counts.end()) {
      return;
    }
    (waiting ? it->second.waiting : it->second.in_flight) += static_cast<uint32_t>(delta);
    if (it->second.waiting == 0 && it->second.in_flight == 0) {
      mailbox_counts.erase(it);
    }
  }

  void setWhere(Tracked& t, Where w) {
    const bool was = waitingPlace(t.where);
    const bool is = waitingPlace(w);
    t.where = w;
    if (w != Where::kReady) {
      t.pool = nullptr;
    }
    if (was != is) {
      count(t, is, +1); // first, so the mailbox's entry is not dropped in between
      count(t, was, -1);
    }
  }

  // The message is the engine's from now on (kDue); false when it already was.
  bool track(const QueuedMessage& msg) {
    auto [it, inserted] = tracked.try_emplace(msg.id);
    if (!inserted) {
      return false;
    }
    Tracked& t = it->second;
    t.mailbox = config::lowerAscii(msg.mailbox);
    if (!t.mailbox.empty()) {
      MailboxCounts& c = mailbox_counts[t.mailbox];
      if (c.address.empty()) {
        c.tenant = msg.tenant;
        c.address = msg.mailbox;
      }
    }
    count(t, true, +1); // setWhere() moves it between the two counts from now on
    return true;
  }

  // The engine is done with the message (final, or the store refused it).
  void forget(const std::string& id) {
    auto it = tracked.find(id);
    if (it == tracked.end()) {
      return;
    }
    count(it->second, waitingPlace(it->second.where), -1);
    if (it->second.where == Where::kFuture) {
      future.erase(it->second.it);
    }
    tracked.erase(it);
  }

  void setWhere(const std::string& id, Where w) {
    if (Tracked* t = findTracked(id)) {
      setWhere(*t, w);
    }
  }

  void park(Tracked& t, QueuedMessage msg) {
    t.parked = std::make_unique<QueuedMessage>(std::move(msg));
    setWhere(t, Where::kParked);
  }

  // Takes the engine's copy of a waiting message out of its place (a ready message's router
  // charges are given back); nullopt when the message is in flight or unknown.
  std::optional<QueuedMessage> takeWaiting(const std::string& id) {
    Tracked* t = findTracked(id);
    if (t == nullptr) {
      return std::nullopt;
    }
    std::optional<QueuedMessage> out;
    switch (t->where) {
    case Where::kFuture:
      out = std::move(t->it->second);
      future.erase(t->it);
      armTimer();
      break;
    case Where::kReady: {
      std::deque<Ready>& ready = t->pool->ready;
      auto r = std::find_if(ready.begin(), ready.end(),
                            [&id](const Ready& x) { return x.msg.id == id; });
      if (r == ready.end()) {
        return std::nullopt;
      }
      router.cancel(r->charges, wallClockMs());
      out = std::move(r->msg);
      ready.erase(r);
      break;
    }
    case Where::kParked:
      out = std::move(*t->parked);
      t->parked.reset();
      break;
    case Where::kDue:
    case Where::kAttempt:
    case Where::kStoreOp:
      return std::nullopt;
    }
    setWhere(*t, Where::kDue);
    return out;
  }

  // --- scheduling --------------------------------------------------------------------------

  void schedule(QueuedMessage msg) {
    if (shut_down) {
      return;
    }
    if (msg.state != MessageState::kQueued && msg.state != MessageState::kDeferred) {
      log->warn("msg={} not scheduled: it is {}", msg.id, toString(msg.state));
      return;
    }
    if (!track(msg)) {
      log->debug("msg={} already scheduled", msg.id);
      return;
    }
    place(std::move(msg));
  }

  // Puts a tracked message where it belongs: due now, or in the time-ordered set.
  void place(QueuedMessage msg) {
    if (!draining && msg.next_attempt_ms <= wallClockMs()) {
      becomeDue(std::move(msg));
      return;
    }
    toFuture(std::move(msg), false);
  }

  // `routing_wait`: the router said wait (held, paced, budget), as opposed to a retry delay.
  void toFuture(QueuedMessage msg, bool routing_wait) {
    Tracked* t = findTracked(msg.id);
    const int64_t at = msg.next_attempt_ms;
    auto it = future.emplace(at, std::move(msg));
    if (t != nullptr) {
      setWhere(*t, Where::kFuture);
      t->it = it;
      t->routing_wait = routing_wait;
    }
    armTimer();
  }

  void armTimer() {
    if (draining || future.empty()) {
      timer->stop();
      return;
    }
    const int64_t wait = future.begin()->first - wallClockMs();
    const milliseconds delay = std::clamp(milliseconds(wait), milliseconds(0), kMaxTimerSleep);
    timer->start(delay, [this] { onTimer(); });
  }

  void onTimer() {
    const int64_t now = wallClockMs();
    std::vector<QueuedMessage> due;
    while (!future.empty() && future.begin()->first <= now) {
      setWhere(future.begin()->second.id, Where::kDue);
      due.push_back(std::move(future.begin()->second));
      future.erase(future.begin());
    }
    for (auto& msg : due) {
      becomeDue(std::move(msg));
    }
    armTimer();
  }

  // The lifetime is over. A deferred message whose retry the store clamped to its expiry gets
  // that one last attempt when a connection can take it (see docs/queue.md); `relay_down` says
  // no connection can, so it expires too.
  static bool pastLifetime(const QueuedMessage& msg, int64_t now, bool relay_down) {
    if (msg.expires_at_ms <= 0 || now < msg.expires_at_ms) {
      return false;
    }
    const bool last_attempt = msg.attempts > 0 && msg.next_attempt_ms >= msg.expires_at_ms;
    return relay_down || !last_attempt;
  }

  void becomeDue(QueuedMessage msg) {
    Tracked* t = findTracked(msg.id);
    if (t != nullptr && t->operator_op) {
      park(*t, std::move(msg)); // until the operator's action is recorded
      return;
    }
    if (draining) {
      toFuture(std::move(msg), false); // stays queued in the store
      return;
    }
    if (pastLifetime(msg, wallClockMs(), false)) {
      expireMessage(std::move(msg));
      return;
    }
    const int64_t now = wallClockMs();
    RouteDecision d = router.decide(msg, now, [this](std::string_view relay) {
      auto it = pool_by_relay.find(relay);
      return it != pool_by_relay.end() && !it->second->backing_off &&
             it->second->backoff->attempts() == 0;
    });
    flushRouteChanges();
    switch (d.kind) {
    case RouteDecision::Kind::kWait: {
      ++stats.waits;
      const int64_t at = paceSlot(d);
      log->debug("msg={} waits {} ms: {}", msg.id, at - now, d.reason);
      msg.next_attempt_ms = at;
      toFuture(std::move(msg), true);
      return;
    }
    case RouteDecision::Kind::kFail:
      failMessage(std::move(msg), d.reason);
      return;
    case RouteDecision::Kind::kSend:
      break;
    }
    Pool* pool = d.route == kMicrosoft365Route ? mailboxPool(d.mailbox) : relayPool(d.route);
    if (pool == nullptr) {
      router.cancel(d.charges, now);
      failMessage(std::move(msg), "550 5.3.5 no upstream is configured for route " + d.route);
      return;
    }
    if (d.failover) {
      ++stats.failovers;
      log->info("msg={} mailbox={} through relay {}: {}", msg.id, msg.mailbox, d.route, d.reason);
    }
    if (t != nullptr) {
      setWhere(*t, Where::kReady);
      t->pool = pool;
    }
    pool->ready.push_back(Ready{std::move(msg), std::move(d.route), std::move(d.charges)});
    pump(*pool);
  }

  // When a message told to wait for a pacing slot looks again: messages waiting on the same
  // ledger get successive slots, so a backlog wakes one message per slot instead of all of them
  // at every slot (which would cost O(backlog) per message).
  int64_t paceSlot(const RouteDecision& d) {
    if (d.pace_key.empty() || d.pace_interval_us <= 0) {
      return d.until_ms;
    }
    int64_t& next_us = pace_next_us[d.pace_key];
    const int64_t at_us = std::max(d.until_ms * 1000, next_us);
    next_us = at_us + d.pace_interval_us;
    return (at_us + 999) / 1000;
  }

  Pool* relayPool(std::string_view name) {
    auto it = pool_by_relay.find(name);
    return it == pool_by_relay.end() ? nullptr : it->second;
  }

  // The pool of a mailbox's Microsoft 365 route, made at its first use (most configured
  // mailboxes may never send, and a pool is far larger than a ledger).
  Pool* mailboxPool(const std::string& address) {
    if (auto it = pool_by_mailbox.find(address); it != pool_by_mailbox.end()) {
      return it->second;
    }
    const config::Mailbox* mb = router.mailbox(address);
    if (mb == nullptr || !mb->auth || !mb->auth->password) {
      return nullptr;
    }
    const config::Upstream& up = mb->smtp;
    auto pool = std::make_unique<Pool>();
    pool->label = fmt::format("{} via {}:{}", mb->address, up.host, up.port);
    pool->mailbox = address;
    pool->max_connections = router.maxConnections(address, wallClockMs());
    pool->backoff = std::make_unique<net::Backoff>(options.connect_backoff);
    pool->backoff_timer = net::Timer::create(loop);
    UpstreamSettings& s = pool->base;
    s.relay = std::string(kMicrosoft365Route);
    s.endpoint = net::Endpoint{up.host, up.port};
    s.bind_address = config->egress.bind_address;
    s.client = mailboxClient(*mb, ehlo_name);
    s.timeouts = options.timeouts;
    pool->identity = identityOf(up, s.client, nullptr, *config);
    if (up.tls != config::TlsMode::kNone) {
      auto ctx = tlsContext(up);
      if (!ctx) {
        log->error("mailbox={} cannot use its Microsoft 365 route: {}", mb->address,
                   ctx.error().describe());
        return nullptr;
      }
      s.tls = std::move(*ctx);
    }
    Pool* raw = pool.get();
    pool_by_mailbox.emplace(address, raw);
    pools.push_back(std::move(pool));
    return raw;
  }

  // Client TLS contexts are shared by every pool with the same trust settings.
  Result<net::TlsContextPtr> tlsContext(const config::Upstream& up) {
    return tlsContext(up, tls_cache);
  }
  template <typename Cache>
  static Result<net::TlsContextPtr> tlsContext(const config::Upstream& up, Cache& cache) {
    auto key = std::make_tuple(up.ca_file, up.allow_self_signed, up.pins);
    if (auto it = cache.find(key); it != cache.end()) {
      return it->second;
    }
    net::TlsClientOptions tls;
    tls.ca_file = up.ca_file;
    tls.allow_self_signed = up.allow_self_signed;
    tls.pins = up.pins;
    auto ctx = net::TlsContext::client(tls);
    if (!ctx) {
      return std::unexpected(ctx.error());
    }
    cache.emplace(key, *ctx);
    return *ctx;
  }

  // Route state changes and events from the router go to the store (drain waits for them).
  void flushRouteChanges() {
    for (auto& change : router.takeChanges()) {
      if (change.event && change.event->type == "route.failover" && !change.manual) {
        ++metrics.failovers_automatic;
      }
      if (change.event) {
        log->info("route {} is {}: {}{}", change.state.key, change.state.state,
                  change.state.reason.empty() ? change.event->type : change.state.reason,
                  change.state.hint.empty() ? "" : " (hint: " + change.state.hint + ")");
      }
      change.state.updated_ms = wallClockMs();
      ++store_ops;
      store.saveRouteState(std::move(change.state), std::move(change.event),
                           [weak = weak_from_this()](Result<void> r) {
                             auto self = weak.lock();
                             if (!self) {
                               return;
                             }
                             --self->store_ops;
                             if (!r) {
                               self->log->error("cannot record a route change: {}",
                                                r.error().describe());
                             }
                             self->checkDrain();
                           });
    }
  }

  // The mailbox's route changed (exhausted, paused, disconnected): the messages waiting for its
  // connections go back to the router, their ledger charges given back.
  void reroute(Pool& pool) {
    std::deque<Ready> waiting = std::move(pool.ready);
    pool.ready.clear();
    const int64_t now = wallClockMs();
    for (auto& r : waiting) {
      router.cancel(r.charges, now);
      setWhere(r.msg.id, Where::kDue);
    }
    for (auto& r : waiting) {
      becomeDue(std::move(r.msg));
    }
  }

  // Makes the messages of `mailbox` that wait for the router (held, paced, over budget) due now:
  // its route came back or changed. Messages waiting for a retry keep their time.
  void wakeMailbox(const std::string& mailbox) {
    wakeWaiting(
        [&mailbox](const Tracked& t, const QueuedMessage&) { return t.mailbox == mailbox; });
  }

  // Makes due now every message that waits for the router and `pick` chooses.
  template <typename Pick> void wakeWaiting(Pick pick) {
    std::vector<QueuedMessage> woken;
    for (auto it = future.begin(); it != future.end();) {
      Tracked* t = findTracked(it->second.id);
      if (t != nullptr && t->routing_wait && pick(*t, it->second)) {
        setWhere(*t, Where::kDue);
        woken.push_back(std::move(it->second));
        it = future.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& m : woken) {
      becomeDue(std::move(m));
    }
    armTimer();
  }

  // A disconnected route is probed with a login (a connection that sends nothing) on the
  // router's schedule, so it comes back by itself once the credentials work.
  void armProbes() {
    if (draining || shut_down) {
      return;
    }
    for (const auto& [mailbox, at] : router.probesDue()) {
      auto& t = probes[mailbox];
      if (!t) {
        t = net::Timer::create(loop);
      }
      const milliseconds delay =
          std::clamp(milliseconds(at - wallClockMs()), milliseconds(0), kMaxTimerSleep * 60);
      t->start(delay, [this, mailbox] { probe(mailbox); });
    }
  }

  void probe(const std::string& mailbox) {
    const int64_t now = wallClockMs();
    const auto view = router.view(mailbox, now);
    if (!view || view->state != RouteState::kDisconnected || draining) {
      return;
    }
    if (view->until_ms > now + 1000) {
      armProbes(); // the timer's sleep is capped; not due yet
      return;
    }
    Pool* pool = mailboxPool(mailbox);
    if (pool == nullptr) {
      return;
    }
    if (pool->slots.empty()) {
      log->info("mailbox={} trying the Microsoft 365 login again", mailbox);
      openConnection(*pool);
    }
  }

  // --- pools and connections ---------------------------------------------------------------

  void pump(Pool& pool) {
    if (draining || shut_down || pool.retired) {
      return;
    }
    if (!pool.mailbox.empty()) {
      pool.max_connections = router.maxConnections(pool.mailbox, wallClockMs());
    }
    for (auto& slot : pool.slots) {
      while (!pool.ready.empty() && slot->idle()) {
        Ready r = std::move(pool.ready.front());
        pool.ready.pop_front();
        if (Tracked* t = findTracked(r.msg.id); t != nullptr && t->operator_op) {
          router.cancel(r.charges, wallClockMs());
          park(*t, std::move(r.msg));
          continue;
        }
        if (pastLifetime(r.msg, wallClockMs(), false)) {
          router.cancel(r.charges, wallClockMs());
          expireMessage(std::move(r.msg));
          continue;
        }
        startAttempt(pool, *slot, std::move(r));
      }
    }
    if (pool.ready.empty() || pool.backing_off) {
      return;
    }
    const auto opening =
        static_cast<size_t>(std::count_if(pool.slots.begin(), pool.slots.end(), [](const auto& s) {
          return !s->conn->established() && !s->quitting;
        }));
    size_t want = pool.ready.size() > opening ? pool.ready.size() - opening : 0;
    if (!pool.mailbox.empty()) {
      // A mailbox opens another connection only for a backlog of kMessagesPerMailboxConnection
      // per connection: Microsoft 365 counts the rep's own clients against the same few
      // connections, and one connection keeps up with the per-minute limit.
      const auto busy = static_cast<size_t>(
          std::count_if(pool.slots.begin(), pool.slots.end(), [](const auto& s) {
            return s->conn->established() && !s->quitting && s->attempt;
          }));
      const size_t desired = (pool.ready.size() + busy + kMessagesPerMailboxConnection - 1) /
                             kMessagesPerMailboxConnection;
      want = desired > busy + opening ? desired - busy - opening : 0;
    }
    if (pool.backoff->attempts() > 0) {
      // Recovering from failures: probe with one connection before opening the others.
      want = opening == 0 ? 1 : 0;
    }
    const size_t room =
        pool.max_connections > pool.slots.size() ? pool.max_connections - pool.slots.size() : 0;
    for (size_t i = 0; i < std::min(want, room); ++i) {
      openConnection(pool);
    }
  }

  void openConnection(Pool& pool) {
    UpstreamSettings settings = pool.base;
    settings.id = ++next_conn_id;
    auto slot = std::make_unique<Slot>();
    slot->conn = std::make_unique<UpstreamConnection>(loop, std::move(settings), *this);
    slot->idle_timer = net::Timer::create(loop);
    UpstreamConnection& conn = *slot->conn;
    slot_by_conn.emplace(&conn, std::make_pair(&pool, slot.get()));
    pool.slots.push_back(std::move(slot));
    ++stats.connections_opened;
    log->debug("conn=u{} relay={} connecting ({} message(s) ready, {} connection(s))", conn.id(),
               pool.label, pool.ready.size(), pool.slots.size());
    conn.start();
  }

  // After a message, or when a connection became ready: take the next message, or wait idle.
  void makeIdle(Pool& pool, Slot& slot) {
    if (slot.quitting || !slot.conn->ready()) {
      return;
    }
    if (draining || pool.retired || slot.messages >= messages_per_connection || slot.close_after) {
      log->debug("conn=u{} relay={} closing after {} message(s){}", slot.conn->id(), pool.label,
                 slot.messages, draining ? " (draining)" : "");
      slot.quitting = true;
      slot.idle_timer->stop();
      slot.conn->quit();
      return;
    }
    Slot* raw = &slot;
    Pool* p = &pool;
    slot.idle_timer->start(options.idle_timeout, [this, p, raw] {
      log->debug("conn=u{} relay={} idle for {} ms, closing", raw->conn->id(), p->label,
                 options.idle_timeout.count());
      raw->quitting = true;
      raw->conn->quit();
    });
    pump(pool);
  }

  std::pair<Pool*, Slot*> find(const UpstreamConnection& conn) {
    auto it = slot_by_conn.find(&conn);
    return it == slot_by_conn.end() ? std::pair<Pool*, Slot*>{nullptr, nullptr} : it->second;
  }

  void onUpstreamReady(UpstreamConnection& conn) override {
    auto [pool, slot] = find(conn);
    if (slot == nullptr) {
      return;
    }
    if (!slot->counted_ready) {
      slot->counted_ready = true;
      ++stats.connections_ready;
      if (pool->backoff->attempts() > 0) {
        log->info("conn=u{} relay={} connected again; {} message(s) waiting", conn.id(),
                  pool->label, pool->ready.size());
      }
      pool->backoff->reset();
    }
    // A pool a reload replaced logged in with the old settings: that says nothing of the route.
    const bool back =
        !pool->mailbox.empty() && !pool->retired && router.onLoginOk(pool->mailbox, wallClockMs());
    makeIdle(*pool, *slot);
    if (back) {
      flushRouteChanges();
      log->info("mailbox={} the Microsoft 365 login works again; held mail goes out",
                pool->mailbox);
      probes.erase(pool->mailbox);
      wakeMailbox(pool->mailbox);
    }
  }

  void onUpstreamClosed(UpstreamConnection& conn, std::optional<Error> error) override {
    auto [pool, slot] = find(conn);
    if (slot == nullptr) {
      return;
    }
    const bool established = conn.established();
    const bool asked = slot->quitting;
    const uint64_t id = conn.id();
    const std::optional<smtp::Reply> closing_reply = conn.closingReply();
    if (slot->attempt) {
      // Waiting for the store when the connection went: the attempt notices and requeues.
      slot->attempt->slot = nullptr;
      slot->attempt.reset();
    }
    // Destroys the UpstreamConnection from inside its callback, which its contract allows.
    slot_by_conn.erase(&conn);
    std::erase_if(pool->slots, [slot](const auto& s) { return s.get() == slot; });
    if (pool->retired) {
      log->debug("conn=u{} relay={} (replaced by a reload) closed{}", id, pool->label,
                 error ? ": " + error->describe() : std::string());
      deleteIfRetiredAndEmpty(*pool);
      checkDrain();
      return;
    }
    if (!established && !asked) {
      ++stats.connect_failures;
      const Error e = error ? *error
                            : Error("smtp.closed", "the server ended the session before it was "
                                                   "ready");
      const route::ReplyRule* rule = pool->mailbox.empty() ? nullptr : loginRule(e, closing_reply);
      ++metrics.replies[rule != nullptr ? std::string(rule->name)
                        : closing_reply ? codeClass(closing_reply->code)
                                        : std::string("connection")];
      if (!pool->mailbox.empty()) {
        const bool login = rule != nullptr && rule->action == route::ReplyAction::kDisconnect;
        noteError(pool->mailbox, login ? "login" : "connection", e.message,
                  rule != nullptr ? std::string(rule->hint) : e.hint);
      }
      if (pool->mailbox.empty() || !onLoginFailure(*pool, id, e, closing_reply)) {
        onPoolFailure(*pool, id, e);
      }
    } else if (error) {
      log->warn("conn=u{} relay={} connection ended: {}", id, pool->label, error->describe());
    } else {
      log->debug("conn=u{} relay={} closed", id, pool->label);
    }
    pump(*pool);
    reclaimIfIdle(*pool);
    checkDrain();
  }

  // A mailbox's pool with no connection, no waiting message and no backoff in progress is
  // dropped: thousands of mailboxes that each sent a little keep nothing but their ledgers. The
  // next message makes a new pool (mailboxPool).
  void reclaimIfIdle(Pool& pool) {
    if (pool.mailbox.empty() || pool.retired || !pool.slots.empty() || !pool.ready.empty() ||
        pool.backing_off) {
      return;
    }
    pool_by_mailbox.erase(pool.mailbox);
    std::erase_if(pools, [&pool](const auto& p) { return p.get() == &pool; });
  }

  // A Microsoft 365 connection failed before it was ready. A login refused for a reason in the
  // reply table disconnects the route (mail held or failed over, the login probed on the
  // router's schedule); a failed probe schedules the next one. Returns false when the ordinary
  // pool backoff applies (network trouble on an active route).
  bool onLoginFailure(Pool& pool, uint64_t conn_id, const Error& error,
                      const std::optional<smtp::Reply>& reply) {
    const route::ReplyRule* rule = loginRule(error, reply);
    const int64_t now = wallClockMs();
    const bool disconnects = rule != nullptr && rule->action == route::ReplyAction::kDisconnect;
    const auto view = router.view(pool.mailbox, now);
    const bool was_disconnected = view && view->state == RouteState::kDisconnected;
    if (!disconnects && !was_disconnected) {
      return false;
    }
    const int64_t next =
        router.onLoginFailed(pool.mailbox, disconnects ? rule : nullptr, error.message, now);
    flushRouteChanges();
    log->log(disconnects ? spdlog::level::err : spdlog::level::warn,
             "conn=u{} mailbox={} Microsoft 365 login failed: {}; route disconnected, next login "
             "in {} s{}",
             conn_id, pool.mailbox, error.describe(), (next - now) / 1000,
             rule != nullptr ? fmt::format(" (hint: {})", rule->hint) : std::string());
    reroute(pool);
    armProbes();
    return true;
  }

  // What a Microsoft 365 connection that failed before it was ready says about the route.
  static const route::ReplyRule* loginRule(const Error& error,
                                           const std::optional<smtp::Reply>& reply) {
    const route::ReplyRule* rule = route::classifyError(error.code);
    if (rule == nullptr && reply) {
      rule = route::classifyReply(reply->code, classifiedText(*reply));
    }
    if (rule == nullptr && error.code == "smtp.auth_failed") {
      // A refusal worded unlike Microsoft's: treat it as bad credentials.
      rule = route::classifyReply(535, "5.7.3 Authentication unsuccessful");
    }
    return rule;
  }

  void noteError(const std::string& mailbox, std::string kind, std::string message,
                 std::string hint) {
    last_errors[mailbox] =
        MailboxError{std::move(kind), std::move(message), std::move(hint), wallClockMs()};
  }

  // A connection could not be set up: nobody's attempt is consumed; the whole pool waits.
  void onPoolFailure(Pool& pool, uint64_t conn_id, const Error& error) {
    if (draining) {
      log->info("conn=u{} relay={} connection failed while draining: {}", conn_id, pool.label,
                error.describe());
      return;
    }
    if (pool.backing_off) {
      log->debug("conn=u{} relay={} connection failed: {}", conn_id, pool.label, error.describe());
      return;
    }
    const milliseconds delay = pool.backoff->next();
    pool.backing_off = true;
    const auto level = isConfigurationError(error) ? spdlog::level::err : spdlog::level::warn;
    log->log(level,
             "conn=u{} relay={} cannot deliver: {}; {} message(s) wait (no attempt counted), next "
             "connection in {} ms",
             conn_id, pool.label, error.describe(), pool.ready.size(), delay.count());
    Pool* p = &pool;
    pool.backoff_timer->start(delay, [this, p] {
      p->backing_off = false;
      sweepExpired(*p);
      pump(*p);
    });
  }

  // Ready messages whose lifetime ended while their relay could not be reached.
  void sweepExpired(Pool& pool) {
    const int64_t now = wallClockMs();
    std::deque<Ready> keep;
    std::vector<QueuedMessage> expired;
    for (auto& r : pool.ready) {
      if (Tracked* t = findTracked(r.msg.id); t != nullptr && t->operator_op) {
        router.cancel(r.charges, now);
        park(*t, std::move(r.msg));
      } else if (pastLifetime(r.msg, now, true)) {
        router.cancel(r.charges, now);
        expired.push_back(std::move(r.msg));
      } else {
        keep.push_back(std::move(r));
      }
    }
    pool.ready = std::move(keep);
    for (auto& msg : expired) {
      expireMessage(std::move(msg));
    }
  }

  // --- one attempt ---------------------------------------------------------------------------

  void startAttempt(Pool& pool, Slot& slot, Ready ready) {
    slot.idle_timer->stop();
    auto att = std::make_shared<Attempt>();
    att->pool = &pool;
    att->slot = &slot;
    att->conn_id = slot.conn->id();
    att->msg = std::move(ready.msg);
    att->route = std::move(ready.route);
    att->charges = std::move(ready.charges);
    slot.attempt = att;
    setWhere(att->msg.id, Where::kAttempt);
    ++in_flight;
    ++store_ops;
    const std::string id = att->msg.id;
    AttemptStart start{att->route, att->charges};
    store.markSending(id, wallClockMs(), std::move(start),
                      [weak = weak_from_this(), att](Result<std::string> r) {
                        if (auto self = weak.lock()) {
                          --self->store_ops;
                          self->onMarked(att, std::move(r));
                        }
                      });
  }

  // The attempt is not going to the session (any more): its connection takes the next message.
  void release(const AttemptPtr& att) {
    Slot* slot = att->slot;
    att->slot = nullptr;
    if (slot != nullptr && slot->attempt == att) {
      slot->attempt.reset();
      makeIdle(*att->pool, *slot);
    }
  }

  // `r` holds the body on success (markSending hands it back).
  void onMarked(const AttemptPtr& att, Result<std::string> r) {
    if (!r) {
      --in_flight;
      router.cancel(att->charges, wallClockMs());
      const Error& e = r.error();
      if (isTransientStoreError(e)) {
        log->warn("conn=u{} msg={} cannot start the attempt: {}; trying again in {} ms",
                  att->conn_id, att->msg.id, e.describe(), options.store_retry.count());
        QueuedMessage msg = att->msg;
        msg.next_attempt_ms = wallClockMs() + options.store_retry.count();
        release(att);
        place(std::move(msg));
      } else {
        // Already sending (a second copy), final, deleted, or the store is closing.
        log->warn("conn=u{} msg={} not sent: {}", att->conn_id, att->msg.id, e.describe());
        forget(att->msg.id);
        release(att);
      }
      checkDrain();
      return;
    }
    ++stats.attempts;
    att->msg.attempts += 1;
    att->msg.state = MessageState::kSending;
    onBody(att, std::move(r));
  }

  AttemptOutcome wholeTempFailure(const AttemptPtr& att, std::string reply, int64_t next) {
    AttemptOutcome o;
    o.id = att->msg.id;
    o.whole_message_temp_failure = true;
    o.reply = std::move(reply);
    o.now_ms = wallClockMs();
    o.next_attempt_ms = next;
    return o;
  }

  void onBody(const AttemptPtr& att, Result<std::string> body) {
    const int64_t now = wallClockMs();
    if (!body) {
      log->error("conn=u{} msg={} cannot read the message body: {}", att->conn_id, att->msg.id,
                 body.error().describe());
      release(att);
      record(att, wholeTempFailure(
                      att, "local error: cannot read the message body: " + body.error().message,
                      retry.nextAttempt(att->msg.attempts, now, att->msg.id)));
      return;
    }
    Slot* slot = att->slot;
    if (slot == nullptr || !slot->conn->ready()) {
      // Nothing reached the upstream, so the message is not to blame: it goes again shortly
      // rather than after a retry delay (shortly, not at once: a relay that drops every
      // connection right after EHLO must not turn this into a busy loop).
      log->info("conn=u{} msg={} connection closed before the message was sent; requeued",
                att->conn_id, att->msg.id);
      release(att);
      record(att,
             wholeTempFailure(att, "the connection to the relay closed before the message was sent",
                              now + kRequeueDelay.count()));
      return;
    }
    const QueuedMessage& msg = att->msg;
    smtp::Envelope env;
    env.mail_from = msg.mail_from;
    env.smtputf8 = msg.smtputf8;
    env.body_8bit = msg.body_8bit;
    const bool bad_sender =
        !msg.mail_from.empty() && !smtp::isValidMailbox(msg.mail_from, msg.smtputf8);
    for (const auto& r : msg.recipients) {
      if (r.status != RecipientStatus::kPending) {
        continue;
      }
      const bool postmaster =
          r.address.size() == 10 && config::lowerAscii(r.address) == "postmaster";
      if (bad_sender) {
        att->local.push_back({r.address, DeliveryResult::kPermFail,
                              "553 5.1.7 the envelope sender address is not valid"});
      } else if (!postmaster && !smtp::isValidMailbox(r.address, msg.smtputf8)) {
        att->local.push_back(
            {r.address, DeliveryResult::kPermFail, "553 5.1.3 the recipient address is not valid"});
      } else {
        env.recipients.push_back(r.address);
      }
    }
    if (env.recipients.empty()) {
      log->warn("conn=u{} msg={} no valid recipient left; failing it", att->conn_id, msg.id);
      AttemptOutcome o;
      o.id = msg.id;
      o.recipients = att->local;
      o.now_ms = now;
      o.next_attempt_ms = now;
      release(att);
      record(att, std::move(o));
      return;
    }
    if (auto sent = slot->conn->send(env, *body); !sent) {
      const Error& e = sent.error();
      std::string reply;
      if (e.code == "smtp.smtputf8_unsupported") {
        reply = "550 5.6.7 " + e.message;
      } else if (e.code == "smtp.message_too_large") {
        reply = "552 5.3.4 " + e.message;
      } else if (e.code == "smtp.bad_address") {
        reply = "553 5.1.3 " + e.message;
      } else {
        // Not ready after all: a local condition, not the message's fault.
        log->warn("conn=u{} msg={} could not start the transaction: {}", att->conn_id, msg.id,
                  e.describe());
        release(att);
        record(att, wholeTempFailure(att, e.message, now));
        return;
      }
      log->warn("conn=u{} msg={} cannot be sent through relay {}: {}", att->conn_id, msg.id,
                att->pool->label, e.describe());
      AttemptOutcome o;
      o.id = msg.id;
      o.recipients = att->local;
      for (const auto& rcpt : env.recipients) {
        o.recipients.push_back({rcpt, DeliveryResult::kPermFail, reply});
      }
      o.reply = reply;
      o.now_ms = now;
      o.next_attempt_ms = now;
      release(att);
      record(att, std::move(o));
      return;
    }
    log->debug("conn=u{} msg={} sending to {} recipient(s), {} bytes (attempt {})", att->conn_id,
               msg.id, env.recipients.size(), body->size(), msg.attempts);
  }

  void onUpstreamResult(UpstreamConnection& conn, smtp::ClientSession::MessageResult result,
                        bool end_of_data_sent) override {
    auto [pool, slot] = find(conn);
    if (slot == nullptr || !slot->attempt) {
      log->warn("conn=u{} result for no message", conn.id());
      return;
    }
    AttemptPtr att = std::move(slot->attempt);
    att->slot = nullptr;
    ++slot->messages;
    const int64_t now = wallClockMs();
    const std::string& id = att->msg.id;

    AttemptOutcome o;
    o.id = id;
    o.now_ms = now;
    o.next_attempt_ms = retry.nextAttempt(att->msg.attempts, now, id);
    const std::string error_text = result.error ? result.error->message : std::string("no reply");
    for (auto& r : result.recipients) {
      o.recipients.push_back({r.address, toDeliveryResult(r.status),
                              r.reply.code != 0 ? r.reply.describe() : error_text});
    }
    for (auto& r : att->local) {
      o.recipients.push_back(r);
    }
    const bool unknown = result.error.has_value() && end_of_data_sent;
    o.uncertain = unknown;
    if (unknown) {
      ++stats.unknown_outcomes;
      o.reply = "connection lost after the end of data (" + error_text +
                "); the upstream may have accepted the message, so it stays on route " +
                att->route + " and is sent again only through it (it may arrive twice)";
      log->warn("conn=u{} msg={} connection lost after the final '.': outcome unknown; the "
                "message stays on route {} and will be sent again through it only; it may be "
                "a duplicate ({})",
                conn.id(), id, att->route, result.error->describe());
    } else if (result.error) {
      o.reply = result.error->message;
    } else if (result.final_reply) {
      o.reply = result.final_reply->describe();
    } else if (result.mail_reply) {
      o.reply = result.mail_reply->describe();
    }
    // Nobody got a final answer and the reason was message-wide: record it once, for the
    // message. A recipient refused with 5xx before a 421 keeps its own result.
    const bool any_decided =
        std::any_of(result.recipients.begin(), result.recipients.end(),
                    [](const auto& r) { return r.status != smtp::RecipientStatus::kTempFailed; });
    o.whole_message_temp_failure = !any_decided && att->local.empty() &&
                                   (result.error.has_value() || !isOk(result.mail_reply) ||
                                    (result.final_reply && result.final_reply->isTransient()));
    countReply(*pool, result);
    if (!pool->mailbox.empty() && !unknown) {
      if (applyMicrosoftReply(*pool, *slot, att, result, o)) {
        return;
      }
    }
    record(att, std::move(o));
  }

  // One reply class per attempt for metrics: the reply that decided it.
  void countReply(const Pool& pool, const smtp::ClientSession::MessageResult& result) {
    std::string cls = "connection";
    if (const auto failing = failingReply(result)) {
      const route::ReplyRule* rule =
          pool.mailbox.empty() ? nullptr
                               : route::classifyReply(failing->code, classifiedText(*failing));
      cls = rule != nullptr ? std::string(rule->name) : codeClass(failing->code);
    } else if (result.error) {
      cls = "connection";
    } else if (result.final_reply) {
      cls = codeClass(result.final_reply->code);
    } else if (result.mail_reply) {
      cls = codeClass(result.mail_reply->code);
    }
    ++metrics.replies[cls];
  }

  // The reply that failed an attempt, root cause first: MAIL; then a refused RCPT when no
  // recipient was taken (a pipelining server answers DATA with 503/554 after that); then the end
  // of data; then any refused RCPT.
  static std::optional<smtp::Reply> failingReply(const smtp::ClientSession::MessageResult& r) {
    if (r.mail_reply && !r.mail_reply->isPositive()) {
      return r.mail_reply;
    }
    const smtp::Reply* refused = nullptr;
    bool any_taken = false;
    for (const auto& rcpt : r.recipients) {
      if (rcpt.reply.code >= 400 && refused == nullptr) {
        refused = &rcpt.reply;
      }
      any_taken = any_taken || (rcpt.reply.code >= 200 && rcpt.reply.code < 400);
    }
    if (refused != nullptr && !any_taken) {
      return *refused;
    }
    if (r.final_reply && !r.final_reply->isPositive()) {
      return r.final_reply;
    }
    if (refused != nullptr) {
      return *refused;
    }
    return std::nullopt;
  }

  static std::string classifiedText(const smtp::Reply& reply) {
    return reply.enhanced.empty() ? reply.text() : reply.enhanced + " " + reply.text();
  }

  // Microsoft 365's replies that say something about the route (MICROSOFT365.md's table) turn
  // the attempt into what the route needs. Returns true when it recorded the outcome itself.
  bool applyMicrosoftReply(Pool& pool, Slot& slot, const AttemptPtr& att,
                           const smtp::ClientSession::MessageResult& result, AttemptOutcome& o) {
    const auto reply = failingReply(result);
    if (!reply) {
      return false;
    }
    const std::string text = classifiedText(*reply);
    const route::ReplyRule* rule = route::classifyReply(reply->code, text);
    if (rule == nullptr) {
      return false;
    }
    const int64_t now = wallClockMs();
    const bool any_sent = std::any_of(o.recipients.begin(), o.recipients.end(), [](const auto& r) {
      return r.result == DeliveryResult::kSent;
    });
    if (!any_sent) {
      // Microsoft 365 took nothing: its recipients go back to the ledger before the router
      // looks at it (a quota reply waits for the oldest send that really counts).
      o.refunds = router.refund(att->charges, 0, now);
      att->charges.clear();
    }
    const ReplyEffect effect = router.onReply(pool.mailbox, *rule, reply->code, text, now);
    noteError(pool.mailbox, "reply", fmt::format("{} {}", reply->code, text),
              std::string(rule->hint));
    log->warn("conn=u{} msg={} mailbox={} Microsoft 365 answered '{} {}': {} ({})", att->conn_id,
              att->msg.id, pool.mailbox, reply->code, text, rule->name,
              route::toString(rule->action));
    flushRouteChanges();
    if (rule->action == route::ReplyAction::kReject) {
      o.whole_message_temp_failure = false;
      o.reply = effect.reply;
      for (auto& r : o.recipients) {
        if (r.result != DeliveryResult::kSent) {
          r.result = DeliveryResult::kPermFail;
          r.reply = effect.reply;
        }
      }
      record(att, std::move(o));
      return true;
    }
    // Nothing was delivered through the route, so the message is free to go again (through
    // whatever route is right by then) without counting against its retry schedule.
    if (!any_sent) {
      o.whole_message_temp_failure = true;
      o.recipients.clear();
    }
    o.reply = effect.reply;
    o.next_attempt_ms = effect.retry_at_ms;
    // The connection QUITs when it is idle again (makeIdle).
    slot.close_after = slot.close_after || effect.close_connection;
    record(att, std::move(o));
    if (rule->action != route::ReplyAction::kFewerConnections &&
        rule->action != route::ReplyAction::kPace) {
      reroute(pool);
    }
    return true;
  }

  // --- recording outcomes --------------------------------------------------------------------

  void record(const AttemptPtr& att, AttemptOutcome outcome) {
    outcome.route = att->route;
    uint32_t kept = 0;
    if (outcome.uncertain) {
      kept = std::numeric_limits<uint32_t>::max();
    } else if (!outcome.whole_message_temp_failure) {
      for (const auto& r : outcome.recipients) {
        kept += r.result == DeliveryResult::kSent ? 1 : 0;
      }
    }
    for (auto& r : router.refund(att->charges, kept, outcome.now_ms)) {
      outcome.refunds.push_back(std::move(r));
    }
    ++store_ops;
    submitRecord(att->conn_id, std::move(outcome));
  }

  // store_ops stays counted across retries, so drain() waits for the outcome to be stored.
  void submitRecord(uint64_t conn_id, AttemptOutcome outcome) {
    AttemptOutcome copy = outcome;
    store.recordAttempt(std::move(outcome), [weak = weak_from_this(), conn_id,
                                             copy = std::move(copy)](Result<QueuedMessage> r) {
      auto self = weak.lock();
      if (!self) {
        return;
      }
      if (!r && isTransientStoreError(r.error()) && !self->shut_down) {
        self->log->warn("conn=u{} msg={} cannot record the attempt: {}; trying again in {} ms",
                        conn_id, copy.id, r.error().describe(), self->options.store_retry.count());
        self->later(self->options.store_retry,
                    [s = self.get(), conn_id, copy] { s->submitRecord(conn_id, copy); });
        return;
      }
      --self->store_ops;
      --self->in_flight;
      self->onRecorded(conn_id, copy.id, std::move(r));
    });
  }

  void onRecorded(uint64_t conn_id, const std::string& id, Result<QueuedMessage> r) {
    if (!r) {
      // The message stays `sending` in the store; recovery at the next start requeues it.
      log->error("conn=u{} msg={} cannot record the attempt: {}", conn_id, id,
                 r.error().describe());
      forget(id);
      checkDrain();
      return;
    }
    QueuedMessage& m = *r;
    ++metrics.messages[{routeLabel(m.route), std::string(toString(m.state))}];
    size_t sent = 0;
    size_t failed = 0;
    for (const auto& rcpt : m.recipients) {
      sent += rcpt.status == RecipientStatus::kSent ? 1 : 0;
      failed += rcpt.status == RecipientStatus::kFailed ? 1 : 0;
    }
    switch (m.state) {
    case MessageState::kDeferred: {
      ++stats.deferred;
      const int64_t wait = std::max<int64_t>(0, m.next_attempt_ms - wallClockMs());
      log->info("conn=u{} msg={} deferred after attempt {}: {}; {} recipient(s) pending, next "
                "attempt in {} s",
                conn_id, id, m.attempts, m.last_reply, m.pendingRecipients(), wait / 1000);
      place(std::move(m));
      break;
    }
    case MessageState::kSent:
      ++stats.delivered;
      if (failed > 0) {
        log->info("conn=u{} msg={} sent to {} recipient(s); {} failed", conn_id, id, sent, failed);
      } else {
        log->info("conn=u{} msg={} sent to {} recipient(s)", conn_id, id, sent);
      }
      forget(id);
      break;
    case MessageState::kFailed:
      ++stats.failed;
      log->warn("conn=u{} msg={} failed: {}", conn_id, id, m.last_reply);
      forget(id);
      break;
    case MessageState::kQueued:
    case MessageState::kSending:
      log->warn("conn=u{} msg={} left {} after the attempt", conn_id, id, toString(m.state));
      forget(id);
      break;
    }
    checkDrain();
  }

  void expireMessage(QueuedMessage msg) {
    setWhere(msg.id, Where::kStoreOp);
    ++store_ops;
    const std::string id = msg.id;
    store.expire(id, wallClockMs(),
                 [weak = weak_from_this(), msg = std::move(msg)](Result<QueuedMessage> r) mutable {
                   auto self = weak.lock();
                   if (!self) {
                     return;
                   }
                   --self->store_ops;
                   self->onExpired(std::move(msg), std::move(r));
                 });
  }

  void onExpired(QueuedMessage msg, Result<QueuedMessage> r) {
    if (!r) {
      if (isTransientStoreError(r.error()) && !draining) {
        log->warn("msg={} cannot expire it now: {}; trying again in {} ms", msg.id,
                  r.error().describe(), options.store_retry.count());
        msg.next_attempt_ms = wallClockMs() + options.store_retry.count();
        place(std::move(msg));
      } else {
        log->warn("msg={} cannot expire it: {}", msg.id, r.error().describe());
        forget(msg.id);
      }
      checkDrain();
      return;
    }
    if (r->state == MessageState::kSent) {
      ++stats.delivered;
    } else {
      ++stats.failed;
    }
    log->warn("msg={} lifetime ended after {} attempt(s); it is {} (last reply: {})", r->id,
              r->attempts, toString(r->state), r->last_reply.empty() ? "none" : r->last_reply);
    ++metrics.messages[{routeLabel(r->route), std::string(toString(r->state))}];
    forget(msg.id);
    checkDrain();
  }

  // No route can take the message: markSending, then every pending recipient fails with `reply`.
  void failMessage(QueuedMessage msg, std::string reply) {
    log->error("msg={} fails: {}", msg.id, reply);
    setWhere(msg.id, Where::kStoreOp);
    ++in_flight;
    ++store_ops;
    const std::string id = msg.id;
    store.markSending(
        id, wallClockMs(),
        [weak = weak_from_this(), msg, reply = std::move(reply)](Result<std::string> r) {
          auto self = weak.lock();
          if (!self) {
            return;
          }
          --self->store_ops;
          if (!r) {
            --self->in_flight;
            self->log->warn("msg={} not failed: {}", msg.id, r.error().describe());
            self->forget(msg.id);
            self->checkDrain();
            return;
          }
          AttemptOutcome o;
          o.id = msg.id;
          o.now_ms = wallClockMs();
          o.next_attempt_ms = o.now_ms;
          o.reply = reply;
          for (const auto& rcpt : msg.recipients) {
            if (rcpt.status == RecipientStatus::kPending) {
              o.recipients.push_back({rcpt.address, DeliveryResult::kPermFail, o.reply});
            }
          }
          ++self->store_ops;
          self->submitRecord(0, std::move(o));
        });
  }

  // Runs `fn` after `delay` on the loop. The timer belongs to this State.
  void later(milliseconds delay, std::function<void()> fn) {
    const uint64_t key = ++next_later_id;
    auto t = net::Timer::create(loop);
    net::Timer& ref = *t;
    later_timers.emplace(key, std::make_pair(std::move(t), std::move(fn)));
    ref.start(delay, [this, key] {
      auto node = later_timers.extract(key);
      if (node.empty()) {
        return;
      }
      std::function<void()> fn_local = std::move(node.mapped().second);
      net::TimerPtr timer_local = std::move(node.mapped().first); // dies after fn_local ran
      fn_local();
    });
  }

  // --- relay pools and reloads ----------------------------------------------------------------

  using TlsCache =
      std::map<std::tuple<std::string, bool, std::vector<std::string>>, net::TlsContextPtr>;

  // Relays with the same identity share one pool (and the first one's connection cap, relays in
  // name order).
  struct RelayPoolPlan {
    std::map<std::string, Pool*, std::less<>> by_relay;
    std::vector<std::unique_ptr<Pool>> fresh; // made for this plan
    std::vector<Pool*> kept;                  // of `reusable`, still wanted
  };

  // Pools for every relay of `cfg`: one of `reusable` where the identity matches (its label and
  // cap are updated), otherwise a new one with TLS contexts from `cache`. Errors: "tls.config"
  // naming the relay.
  Result<RelayPoolPlan> planRelayPools(const config::Config& cfg, const std::string& ehlo,
                                       TlsCache& cache, const std::vector<Pool*>& reusable) {
    RelayPoolPlan plan;
    std::map<PoolIdentity, Pool*> planned;
    struct Update {
      Pool* pool;
      std::string label;
      uint32_t cap;
    };
    std::vector<Update> updates; // applied only once the whole plan holds
    for (const auto& [name, relay] : cfg.relays) {
      const config::Upstream& up = relay.server;
      std::shared_ptr<TokenSource> tokens;
      if (auto it = options.token_sources.find(name); it != options.token_sources.end()) {
        tokens = it->second;
      }
      smtp::ClientOptions client;
      client.ehlo_name = ehlo;
      client.tls = toClientTls(up.tls);
      if (tokens) {
        client.auth = smtp::ClientAuth::kXOAuth2;
        client.username = relay.auth ? relay.auth->username : std::string();
      } else if (relay.auth) {
        client.auth = smtp::ClientAuth::kPlain;
        if (auto it = options.auth_mechanism.find(name); it != options.auth_mechanism.end()) {
          client.auth = it->second;
        }
        client.username = relay.auth->username;
        client.password = relay.auth->password.reveal();
      }
      PoolIdentity id = identityOf(up, client, tokens.get(), cfg);
      std::string label = fmt::format("{} ({}:{})", name, up.host, up.port);
      const uint32_t cap = std::max<uint32_t>(relay.limits.max_connections, 1);
      if (auto it = planned.find(id); it != planned.end()) {
        plan.by_relay.emplace(name, it->second);
        continue;
      }
      auto same = std::find_if(reusable.begin(), reusable.end(),
                               [&id](const Pool* p) { return p->identity == id; });
      if (same != reusable.end()) {
        updates.push_back({*same, std::move(label), cap});
        plan.kept.push_back(*same);
        planned.emplace(std::move(id), *same);
        plan.by_relay.emplace(name, *same);
        continue;
      }
      auto pool = std::make_unique<Pool>();
      pool->label = std::move(label);
      pool->max_connections = cap;
      pool->backoff = std::make_unique<net::Backoff>(options.connect_backoff);
      pool->backoff_timer = net::Timer::create(loop);
      pool->identity = id;
      UpstreamSettings& st = pool->base;
      st.relay = name;
      st.endpoint = net::Endpoint{up.host, up.port};
      st.bind_address = cfg.egress.bind_address;
      st.client = std::move(client);
      st.token_source = std::move(tokens);
      st.timeouts = options.timeouts;
      if (up.tls != config::TlsMode::kNone) {
        auto ctx = tlsContext(up, cache);
        if (!ctx) {
          return fail("tls.config", fmt::format("relays.{}: {}", name, ctx.error().message),
                      ctx.error().hint);
        }
        st.tls = std::move(*ctx);
      }
      planned.emplace(std::move(id), pool.get());
      plan.by_relay.emplace(name, pool.get());
      plan.fresh.push_back(std::move(pool));
    }
    for (auto& u : updates) {
      u.pool->label = std::move(u.label);
      u.pool->max_connections = u.cap;
    }
    return plan;
  }

  // A pool a reload replaced: its waiting messages go to `displaced` (charges given back), idle
  // and opening connections QUIT, busy ones QUIT after their message. Deleted at once when it has
  // no connection left (do not use `pool` afterwards).
  void retire(Pool& pool, std::vector<QueuedMessage>& displaced) {
    pool.retired = true;
    pool.backoff_timer->stop();
    pool.backing_off = false;
    const int64_t now = wallClockMs();
    for (auto& r : pool.ready) {
      router.cancel(r.charges, now);
      setWhere(r.msg.id, Where::kDue);
      displaced.push_back(std::move(r.msg));
    }
    pool.ready.clear();
    for (auto& slot : pool.slots) {
      if (slot->attempt) {
        slot->close_after = true;
      } else if (!slot->quitting) {
        slot->quitting = true;
        slot->idle_timer->stop();
        slot->conn->quit();
      }
    }
    deleteIfRetiredAndEmpty(pool);
  }

  void deleteIfRetiredAndEmpty(Pool& pool) {
    if (pool.retired && pool.slots.empty()) {
      std::erase_if(pools, [&pool](const auto& p) { return p.get() == &pool; });
    }
  }

  // Makes due now the messages that wait for the router and belong to one of `mailboxes`, or have
  // no mailbox and go to one of `relays`.
  void wakeAffected(const std::set<std::string, std::less<>>& mailboxes,
                    const std::set<std::string, std::less<>>& relays) {
    wakeWaiting([&](const Tracked& t, const QueuedMessage& m) {
      const std::string_view relay = m.route.empty() ? std::string_view("default") : m.route;
      return t.mailbox.empty() ? relays.contains(relay) : mailboxes.contains(t.mailbox);
    });
  }

  Result<ReloadReport> reconfigure(std::shared_ptr<const config::Config> next_owner) {
    if (!next_owner) {
      return fail("config.reload", "no configuration given");
    }
    const config::Config& next = *next_owner;
    const config::Config& old = *config;
    const RetryOptions ro = retryOptions(next, options.retry_jitter);
    if (auto v = RetryPolicy::validate(ro); !v) {
      return std::unexpected(v.error());
    }
    const std::string ehlo = ehloName(next);
    // Everything that can fail comes first: until the plan is made nothing has changed.
    std::vector<Pool*> current;
    for (const auto& [_, p] : pool_by_relay) {
      if (std::find(current.begin(), current.end(), p) == current.end()) {
        current.push_back(p);
      }
    }
    TlsCache cache;
    auto plan = planRelayPools(next, ehlo, cache, current);
    if (!plan) {
      return std::unexpected(plan.error());
    }

    ReloadReport report;
    const auto say = [&report](std::string line) { report.applied.push_back(std::move(line)); };
    if (old.queue.retry_initial != next.queue.retry_initial ||
        old.queue.retry_max != next.queue.retry_max) {
      say("queue.retry_initial/retry_max changed: applies to each message's next retry");
    }
    if (old.queue.lifetime != next.queue.lifetime) {
      say("queue.lifetime changed: applies to messages accepted from now on");
    }
    if (old.queue.messages_per_connection != next.queue.messages_per_connection) {
      say(fmt::format("queue.messages_per_connection is {} (open connections count on from what "
                      "they carried)",
                      next.queue.messages_per_connection));
    }
    if (old.queue.commit_batch_max != next.queue.commit_batch_max) {
      report.restart_required.emplace_back("queue.commit_batch_max");
    }
    if (old.microsoft365.login_retry_initial != next.microsoft365.login_retry_initial ||
        old.microsoft365.login_retry_max != next.microsoft365.login_retry_max) {
      say("microsoft365.login_retry_initial/login_retry_max changed: applies from each route's "
          "next disconnection");
    }
    if (old.egress.bind_address != next.egress.bind_address) {
      say("egress.bind_address changed: every connection pool is replaced");
    }
    if (ehlo != ehlo_name) {
      say("node.id changed: new connections say EHLO " + ehlo);
    }

    // Commit. The previous configuration stays alive (`previous`) until this returns, so the
    // router can compare against it.
    const std::shared_ptr<const config::Config> previous = std::move(config_owner);
    config_owner = std::move(next_owner);
    config = &next;
    retry = RetryPolicy(ro);
    messages_per_connection = std::max<uint32_t>(next.queue.messages_per_connection, 1);
    setLoginBackoff(options.router, next);
    ehlo_name = ehlo;
    tls_cache = std::move(cache);
    const int64_t now = wallClockMs();
    RouterReload rr = router.reconfigure(next, options.router, now);
    for (auto& line : rr.changes) {
      say(std::move(line));
    }

    std::vector<QueuedMessage> displaced;
    std::set<std::string, std::less<>> relays_affected = rr.relays;
    for (const auto& [name, p] : pool_by_relay) {
      auto it = plan->by_relay.find(name);
      if (it == plan->by_relay.end() || it->second != p) {
        relays_affected.insert(name);
      }
    }
    std::vector<std::string> replaced;
    for (Pool* p : current) {
      if (std::find(plan->kept.begin(), plan->kept.end(), p) == plan->kept.end()) {
        replaced.push_back(p->label);
        retire(*p, displaced);
      }
    }
    for (auto& p : plan->fresh) {
      pools.push_back(std::move(p));
    }
    pool_by_relay = std::move(plan->by_relay);
    for (auto it = pool_by_mailbox.begin(); it != pool_by_mailbox.end();) {
      Pool* p = it->second;
      const config::Mailbox* mb = router.mailbox(it->first);
      const bool same =
          mb != nullptr && mb->auth && mb->auth->password &&
          identityOf(mb->smtp, mailboxClient(*mb, ehlo), nullptr, next) == p->identity;
      if (same) {
        ++it;
        continue;
      }
      replaced.push_back(p->label);
      it = pool_by_mailbox.erase(it);
      retire(*p, displaced);
    }
    // A reload that replaces thousands of mailbox pools (egress.bind_address) names the first.
    constexpr size_t kMaxReportedPools = 10;
    for (size_t i = 0; i < replaced.size() && i < kMaxReportedPools; ++i) {
      say(fmt::format("connections of {} are replaced: busy ones finish their message, new ones "
                      "use the new settings",
                      replaced[i]));
    }
    if (replaced.size() > kMaxReportedPools) {
      say(fmt::format("... and {} more connection pools replaced",
                      replaced.size() - kMaxReportedPools));
    }

    // Probes follow the new states; the errors of mailboxes that are gone are forgotten.
    probes.clear();
    armProbes();
    std::erase_if(last_errors,
                  [this](const auto& kv) { return router.mailbox(kv.first) == nullptr; });
    // What changed is routed again now, with fresh pacing slots.
    for (const auto& m : rr.mailboxes) {
      pace_next_us.erase("m365:" + m);
    }
    for (const auto& r : relays_affected) {
      pace_next_us.erase("relay:" + r);
    }
    for (auto& m : displaced) {
      becomeDue(std::move(m));
    }
    wakeAffected(rr.mailboxes, relays_affected);
    flushRouteChanges();
    for (const auto& line : report.applied) {
      log->info("reload: {}", line);
    }
    for (const auto& key : report.restart_required) {
      log->warn("reload: {} changed; it applies at the next start", key);
    }
    if (report.applied.empty()) {
      log->info("reload: nothing changed for delivery");
    }
    return report;
  }

  // --- the control API -----------------------------------------------------------------------

  MailboxStatus statusOf(MailboxRouteView view) {
    MailboxStatus st;
    std::string lowered;
    const std::string_view key = config::hasUpperAscii(view.address)
                                     ? std::string_view(lowered = config::lowerAscii(view.address))
                                     : std::string_view(view.address);
    st.route = std::move(view);
    fillEngineSide(key, st);
    return st;
  }

  void fillEngineSide(std::string_view key, MailboxStatus& st) {
    st.connections_open = 0;
    st.connections_busy = 0;
    st.waiting = 0;
    st.in_flight = 0;
    if (auto it = pool_by_mailbox.find(key); it != pool_by_mailbox.end()) {
      for (const auto& slot : it->second->slots) {
        ++st.connections_open;
        st.connections_busy += slot->attempt ? 1 : 0;
      }
    }
    if (auto it = mailbox_counts.find(key); it != mailbox_counts.end()) {
      st.waiting = it->second.waiting;
      st.in_flight = it->second.in_flight;
    }
    if (auto it = last_errors.find(key); it != last_errors.end()) {
      st.last_error = it->second;
    } else {
      st.last_error.reset();
    }
  }

  // A mailbox that is no longer configured but still has mail here.
  MailboxStatus orphanStatus(std::string_view key, const MailboxCounts& c) {
    MailboxStatus st;
    st.configured = false;
    st.route.tenant = c.tenant;
    st.route.address = c.address;
    st.route.state = RouteState::kUnconfigured;
    st.route.reason = "mailbox no longer configured";
    st.route.hint = "its mail stays queued until the mailbox is configured again or the "
                    "message's lifetime ends; cancel the messages to bounce them now";
    fillEngineSide(key, st);
    return st;
  }

  std::optional<MailboxStatus> mailboxStatus(std::string_view address) {
    MailboxStatus st;
    if (!mailboxStatusInto(address, st)) {
      return std::nullopt;
    }
    return st;
  }

  bool mailboxStatusInto(std::string_view address, MailboxStatus& out) {
    std::string lowered;
    const std::string_view key = config::hasUpperAscii(address)
                                     ? std::string_view(lowered = config::lowerAscii(address))
                                     : address;
    const bool configured = router.viewInto(key, wallClockMs(), out.route);
    flushRouteChanges();
    if (configured) {
      out.configured = true;
      fillEngineSide(key, out);
      return true;
    }
    if (auto it = mailbox_counts.find(key); it != mailbox_counts.end()) {
      out = orphanStatus(key, it->second);
      return true;
    }
    return false;
  }

  void forEachMailbox(const std::function<void(const MailboxStatus&)>& fn,
                      std::string_view tenant) {
    router.forEachView(tenant, wallClockMs(), [&](const MailboxRouteView& v) { fn(statusOf(v)); });
    for (const auto& [key, c] : mailbox_counts) {
      if ((tenant.empty() || c.tenant == tenant) && router.mailbox(key) == nullptr) {
        fn(orphanStatus(key, c));
      }
    }
    flushRouteChanges();
  }

  Result<MailboxStatus> failover(std::string_view address, std::string_view actor) {
    const std::string key = config::lowerAscii(address);
    auto started = router.failover(key, actor, wallClockMs());
    if (!started) {
      return std::unexpected(started.error());
    }
    flushRouteChanges();
    if (*started) {
      ++metrics.failovers_manual;
      log->warn("mailbox={} manual failover by {}: its new mail goes through the tenant's relays "
                "until failback",
                key, actor);
      // Mail waiting for the mailbox's own connections, and mail held for its route, goes
      // through the relays now.
      if (auto it = pool_by_mailbox.find(key); it != pool_by_mailbox.end()) {
        reroute(*it->second);
      }
      wakeMailbox(key);
    }
    return *mailboxStatus(key);
  }

  Result<MailboxStatus> failback(std::string_view address, std::string_view actor) {
    const std::string key = config::lowerAscii(address);
    if (auto done = router.failback(key, actor, wallClockMs()); !done) {
      return std::unexpected(done.error());
    }
    flushRouteChanges();
    ++metrics.failbacks_manual;
    log->warn("mailbox={} manual failback by {}: its mail goes through Microsoft 365 again when "
              "the route can take it",
              key, actor);
    armProbes(); // a disconnected route is due for a login now
    wakeMailbox(key);
    return *mailboxStatus(key);
  }

  void operatorAction(bool cancelling, std::string id, std::string actor,
                      std::function<void(Result<QueuedMessage>)> done) {
    const auto refuse = [this, &done](Error e) {
      loop.defer([weak = weak_from_this(), done = std::move(done), e = std::move(e)] {
        if (weak.lock()) {
          done(std::unexpected(e));
        }
      });
    };
    if (Tracked* t = findTracked(id)) {
      if (t->operator_op) {
        refuse(inFlight(id, "has another retry or cancel in progress"));
        return;
      }
      if (!waitingPlace(t->where)) {
        refuse(inFlight(id, t->where == Where::kAttempt ? "is being delivered now"
                                                        : "is being failed or expired now"));
        return;
      }
      // Until the store answers, the message stays where it is, or is set aside (parked) instead
      // of starting an attempt.
      t->operator_op = true;
    }
    log->info("msg={} {} requested by {}", id, cancelling ? "cancel" : "retry", actor);
    ++store_ops;
    auto completion = [weak = weak_from_this(), id, cancelling,
                       done = std::move(done)](Result<QueuedMessage> r) mutable {
      auto self = weak.lock();
      if (!self) {
        return;
      }
      --self->store_ops;
      self->onOperatorAction(cancelling, id, r);
      done(std::move(r));
      self->checkDrain();
    };
    if (cancelling) {
      store.cancel(id, wallClockMs(), std::move(actor), std::move(completion));
    } else {
      store.retryNow(id, wallClockMs(), std::move(actor), std::move(completion));
    }
  }

  void onOperatorAction(bool cancelling, const std::string& id, const Result<QueuedMessage>& r) {
    Tracked* t = findTracked(id);
    if (t != nullptr) {
      t->operator_op = false;
    }
    if (!r) {
      log->info("msg={} {} refused: {}", id, cancelling ? "cancel" : "retry", r.error().describe());
      if (t != nullptr && t->where == Where::kParked) {
        QueuedMessage msg = std::move(*t->parked);
        t->parked.reset();
        setWhere(*t, Where::kDue);
        place(std::move(msg)); // as before: due again, or waiting for its time
      }
      return;
    }
    if (cancelling) {
      ++metrics.messages[{routeLabel(r->route), std::string(toString(r->state))}];
      if (takeWaiting(id)) {
        forget(id);
      }
      return;
    }
    if (t == nullptr) {
      schedule(*r); // the engine did not hold it
    } else if (takeWaiting(id)) {
      place(*r); // the store's copy: due now
    }
  }

  // --- drain and shutdown --------------------------------------------------------------------

  void drain(std::function<void()> done) {
    if (done) {
      drain_done.push_back(std::move(done));
    }
    if (!draining) {
      draining = true;
      timer->stop();
      probes.clear();
      size_t waiting = future.size();
      for (auto& pool : pools) {
        waiting += pool->ready.size();
        pool->backoff_timer->stop();
        pool->backing_off = false;
        for (auto& slot : pool->slots) {
          if (!slot->quitting && !slot->attempt) {
            slot->quitting = true;
            slot->idle_timer->stop();
            slot->conn->quit();
          }
        }
      }
      log->info("draining: {} attempt(s) in flight; {} waiting message(s) stay queued", in_flight,
                waiting);
    }
    drain_reported = false;
    checkDrain();
  }

  void checkDrain() {
    if (!draining || drain_reported || store_ops > 0) {
      return;
    }
    for (auto& pool : pools) {
      if (!pool->slots.empty()) {
        return;
      }
    }
    drain_reported = true;
    loop.defer([weak = weak_from_this()] {
      auto self = weak.lock();
      if (!self) {
        return;
      }
      std::vector<std::function<void()>> callbacks = std::move(self->drain_done);
      self->drain_done.clear();
      self.reset(); // the callback may destroy the engine
      for (auto& cb : callbacks) {
        cb();
      }
    });
  }

  // For the destructor: no callback of ours may run afterwards.
  void shutdown() {
    shut_down = true;
    timer.reset();
    probes.clear();
    later_timers.clear();
    for (auto& pool : pools) {
      pool->backoff_timer.reset();
      pool->slots.clear();
      slot_by_conn.clear();
    }
  }
};

// ----------------------------------------------------------------------------------------------

DeliveryEngine::DeliveryEngine(PrivateTag, std::shared_ptr<State> state)
    : state_(std::move(state)) {}

DeliveryEngine::~DeliveryEngine() {
  if (state_) {
    if (state_->in_flight > 0) {
      state_->log->info("delivery stopped with {} attempt(s) in flight; they stay `sending` and "
                        "are sent again after the next start",
                        state_->in_flight);
    }
    state_->shutdown();
  }
}

Result<std::unique_ptr<DeliveryEngine>>
DeliveryEngine::create(net::Loop& loop, const config::Config& config, QueueStore& store) {
  return create(loop, config, store, DeliveryOptions{});
}

Result<std::unique_ptr<DeliveryEngine>> DeliveryEngine::create(net::Loop& loop,
                                                               const config::Config& config,
                                                               QueueStore& store,
                                                               DeliveryOptions options) {
  const RetryOptions ro = retryOptions(config, options.retry_jitter);
  if (auto v = RetryPolicy::validate(ro); !v) {
    return std::unexpected(v.error());
  }
  setLoginBackoff(options.router, config);
  auto state = std::make_shared<State>(loop, store, config, std::move(options), RetryPolicy(ro),
                                       config.queue.messages_per_connection);
  state->ehlo_name = ehloName(config);
  auto pools = state->planRelayPools(config, state->ehlo_name, state->tls_cache, {});
  if (!pools) {
    return std::unexpected(pools.error());
  }
  state->pool_by_relay = std::move(pools->by_relay);
  for (auto& p : pools->fresh) {
    state->pools.push_back(std::move(p));
  }

  // Ledgers and route states survive restarts.
  const int64_t now = wallClockMs();
  auto snapshot = store.loadRouting(now, state->router.maxWindowMs());
  if (!snapshot) {
    return std::unexpected(snapshot.error());
  }
  state->router.restore(*snapshot, now);
  state->armProbes();
  return std::make_unique<DeliveryEngine>(PrivateTag{}, std::move(state));
}

void DeliveryEngine::schedule(QueuedMessage msg) {
  state_->schedule(std::move(msg));
}

void DeliveryEngine::drain(std::function<void()> done) {
  state_->drain(std::move(done));
}

Result<ReloadReport> DeliveryEngine::reconfigure(std::shared_ptr<const config::Config> next) {
  return state_->reconfigure(std::move(next));
}

DeliveryMetrics DeliveryEngine::metrics() const {
  DeliveryMetrics m = state_->metrics;
  m.failed_over_messages = state_->stats.failovers;
  m.connections_opened = state_->stats.connections_opened;
  m.connections_ready = state_->stats.connections_ready;
  m.connections_failed = state_->stats.connect_failures;
  for (const auto& pool : state_->pools) {
    m.connections_open += pool->slots.size();
  }
  m.messages_waiting = state_->waiting_total;
  m.messages_in_flight = state_->in_flight_total;
  return m;
}

std::optional<MailboxStatus> DeliveryEngine::mailboxStatus(std::string_view address) {
  return state_->mailboxStatus(address);
}

bool DeliveryEngine::mailboxStatusInto(std::string_view address, MailboxStatus& out) {
  return state_->mailboxStatusInto(address, out);
}

void DeliveryEngine::forEachMailbox(const std::function<void(const MailboxStatus&)>& fn,
                                    std::string_view tenant) {
  state_->forEachMailbox(fn, tenant);
}

Result<MailboxStatus> DeliveryEngine::failover(std::string_view address, std::string_view actor) {
  return state_->failover(address, actor);
}

Result<MailboxStatus> DeliveryEngine::failback(std::string_view address, std::string_view actor) {
  return state_->failback(address, actor);
}

void DeliveryEngine::retryNow(std::string id, std::string actor,
                              std::function<void(Result<QueuedMessage>)> done) {
  state_->operatorAction(false, std::move(id), std::move(actor), std::move(done));
}

void DeliveryEngine::cancel(std::string id, std::string actor,
                            std::function<void(Result<QueuedMessage>)> done) {
  state_->operatorAction(true, std::move(id), std::move(actor), std::move(done));
}

DeliveryStats DeliveryEngine::stats() const {
  DeliveryStats s = state_->stats;
  for (const auto& pool : state_->pools) {
    s.open_connections += pool->slots.size();
  }
  s.waiting = state_->waiting_total;
  return s;
}

} // namespace mailgate::relay

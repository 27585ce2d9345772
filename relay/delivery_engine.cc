#include "relay/delivery_engine.h"

#include "base/log.h"
#include "net/loop.h"
#include "net/timer.h"
#include "net/tls_context.h"
#include "relay/queue/retry_policy.h"
#include "relay/smtp/protocol/address.h"

#include <algorithm>
#include <array>
#include <deque>
#include <limits>
#include <map>
#include <set>
#include <tuple>
#include <unistd.h>
#include <unordered_set>
#include <utility>
#include <vector>

namespace mailgate::relay {
namespace {

using std::chrono::milliseconds;

// The scheduler's timer never sleeps longer than this, so a wall clock that was stepped (NTP,
// suspend) delays a due message by at most this much.
constexpr milliseconds kMaxTimerSleep{std::chrono::seconds(60)};

// When a message could not be handed to its connection because the connection went away while the
// message was being read from the store.
constexpr milliseconds kRequeueDelay{std::chrono::seconds(1)};

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

  // One message on its way through markSending (which hands back the body) → send → recordAttempt.
  struct Attempt {
    QueuedMessage msg;
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

    [[nodiscard]] bool idle() const { return conn->ready() && !attempt && !quitting; }
  };

  // Connections to one upstream identity and the messages waiting for them.
  struct Pool {
    std::string label; // "default (127.0.0.1:2526)" for log lines
    UpstreamSettings base;
    uint32_t max_connections = 1;
    std::deque<QueuedMessage> ready; // due, FIFO, waiting for a connection
    std::vector<std::unique_ptr<Slot>> slots;
    std::unique_ptr<net::Backoff> backoff;
    net::TimerPtr backoff_timer;
    bool backing_off = false;
  };

  State(net::Loop& l, QueueStore& s, DeliveryOptions o, RetryPolicy r, uint32_t per_connection)
      : loop(l), store(s), options(std::move(o)), retry(r),
        messages_per_connection(std::max<uint32_t>(per_connection, 1)), log(logger("delivery")),
        timer(net::Timer::create(l)) {}

  net::Loop& loop;
  QueueStore& store;
  DeliveryOptions options;
  RetryPolicy retry;
  uint32_t messages_per_connection;
  std::shared_ptr<spdlog::logger> log;

  std::vector<std::unique_ptr<Pool>> pools;
  std::map<std::string, Pool*, std::less<>> pool_by_relay;

  // Messages not yet due, by next_attempt_ms (FIFO among equal times); one timer for the first.
  std::multimap<int64_t, QueuedMessage> future;
  net::TimerPtr timer;
  // Ids the engine is responsible for (waiting, ready or in flight); schedule() ignores repeats.
  std::unordered_set<std::string> known;
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

  // --- scheduling --------------------------------------------------------------------------

  void schedule(QueuedMessage msg) {
    if (shut_down) {
      return;
    }
    if (msg.state != MessageState::kQueued && msg.state != MessageState::kDeferred) {
      log->warn("msg={} not scheduled: it is {}", msg.id, toString(msg.state));
      return;
    }
    if (!known.insert(msg.id).second) {
      log->debug("msg={} already scheduled", msg.id);
      return;
    }
    place(std::move(msg));
  }

  // Puts a known message where it belongs: due now, or in the time-ordered set.
  void place(QueuedMessage msg) {
    if (!draining && msg.next_attempt_ms <= wallClockMs()) {
      becomeDue(std::move(msg));
      return;
    }
    const int64_t at = msg.next_attempt_ms;
    future.emplace(at, std::move(msg));
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
    if (draining) {
      future.emplace(msg.next_attempt_ms, std::move(msg)); // parked; stays queued in the store
      return;
    }
    if (pastLifetime(msg, wallClockMs(), false)) {
      expireMessage(std::move(msg));
      return;
    }
    auto it = pool_by_relay.find(msg.route.empty() ? std::string_view("default") : msg.route);
    if (it == pool_by_relay.end()) {
      failNoRoute(std::move(msg));
      return;
    }
    Pool& pool = *it->second;
    pool.ready.push_back(std::move(msg));
    pump(pool);
  }

  // --- pools and connections ---------------------------------------------------------------

  void pump(Pool& pool) {
    if (draining || shut_down) {
      return;
    }
    for (auto& slot : pool.slots) {
      while (!pool.ready.empty() && slot->idle()) {
        QueuedMessage msg = std::move(pool.ready.front());
        pool.ready.pop_front();
        if (pastLifetime(msg, wallClockMs(), false)) {
          expireMessage(std::move(msg));
          continue;
        }
        startAttempt(pool, *slot, std::move(msg));
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
    if (draining || slot.messages >= messages_per_connection) {
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
    for (auto& pool : pools) {
      for (auto& slot : pool->slots) {
        if (slot->conn.get() == &conn) {
          return {pool.get(), slot.get()};
        }
      }
    }
    return {nullptr, nullptr};
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
    makeIdle(*pool, *slot);
  }

  void onUpstreamClosed(UpstreamConnection& conn, std::optional<Error> error) override {
    auto [pool, slot] = find(conn);
    if (slot == nullptr) {
      return;
    }
    const bool established = conn.established();
    const bool asked = slot->quitting;
    const uint64_t id = conn.id();
    if (slot->attempt) {
      // Waiting for the store when the connection went: the attempt notices and requeues.
      slot->attempt->slot = nullptr;
      slot->attempt.reset();
    }
    // Destroys the UpstreamConnection from inside its callback, which its contract allows.
    std::erase_if(pool->slots, [slot](const auto& s) { return s.get() == slot; });
    if (!established && !asked) {
      ++stats.connect_failures;
      onPoolFailure(*pool, id,
                    error ? *error
                          : Error("smtp.closed", "the server ended the session before it was "
                                                 "ready"));
    } else if (error) {
      log->warn("conn=u{} relay={} connection ended: {}", id, pool->label, error->describe());
    } else {
      log->debug("conn=u{} relay={} closed", id, pool->label);
    }
    pump(*pool);
    checkDrain();
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
    std::deque<QueuedMessage> keep;
    std::vector<QueuedMessage> expired;
    for (auto& msg : pool.ready) {
      if (pastLifetime(msg, now, true)) {
        expired.push_back(std::move(msg));
      } else {
        keep.push_back(std::move(msg));
      }
    }
    pool.ready = std::move(keep);
    for (auto& msg : expired) {
      expireMessage(std::move(msg));
    }
  }

  // --- one attempt ---------------------------------------------------------------------------

  void startAttempt(Pool& pool, Slot& slot, QueuedMessage msg) {
    slot.idle_timer->stop();
    auto att = std::make_shared<Attempt>();
    att->pool = &pool;
    att->slot = &slot;
    att->conn_id = slot.conn->id();
    att->msg = std::move(msg);
    slot.attempt = att;
    ++in_flight;
    ++store_ops;
    const std::string id = att->msg.id;
    store.markSending(id, wallClockMs(), [weak = weak_from_this(), att](Result<std::string> r) {
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
        known.erase(att->msg.id);
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
    if (unknown) {
      ++stats.unknown_outcomes;
      o.reply = "connection lost after the end of data (" + error_text +
                "); the relay may have accepted the message, so it is sent again and may arrive "
                "twice";
      log->warn("conn=u{} msg={} connection lost after the final '.': outcome unknown; the "
                "message will be sent again and may be a duplicate ({})",
                conn.id(), id, result.error->describe());
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
    record(att, std::move(o));
  }

  // --- recording outcomes --------------------------------------------------------------------

  void record(const AttemptPtr& att, AttemptOutcome outcome) {
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
      known.erase(id);
      checkDrain();
      return;
    }
    QueuedMessage& m = *r;
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
      known.erase(id);
      break;
    case MessageState::kFailed:
      ++stats.failed;
      log->warn("conn=u{} msg={} failed: {}", conn_id, id, m.last_reply);
      known.erase(id);
      break;
    case MessageState::kQueued:
    case MessageState::kSending:
      log->warn("conn=u{} msg={} left {} after the attempt", conn_id, id, toString(m.state));
      known.erase(id);
      break;
    }
    checkDrain();
  }

  void expireMessage(QueuedMessage msg) {
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
        known.erase(msg.id);
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
    known.erase(msg.id);
    checkDrain();
  }

  // Unknown route: markSending, then every pending recipient fails with the reason.
  void failNoRoute(QueuedMessage msg) {
    log->error("msg={} route '{}' names no configured relay; the message fails", msg.id, msg.route);
    ++in_flight;
    ++store_ops;
    const std::string id = msg.id;
    store.markSending(id, wallClockMs(), [weak = weak_from_this(), msg](Result<std::string> r) {
      auto self = weak.lock();
      if (!self) {
        return;
      }
      --self->store_ops;
      if (!r) {
        --self->in_flight;
        self->log->warn("msg={} not failed: {}", msg.id, r.error().describe());
        self->known.erase(msg.id);
        self->checkDrain();
        return;
      }
      AttemptOutcome o;
      o.id = msg.id;
      o.now_ms = wallClockMs();
      o.next_attempt_ms = o.now_ms;
      o.reply = "550 5.3.5 no relay named '" + msg.route + "' is configured";
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

  // --- drain and shutdown --------------------------------------------------------------------

  void drain(std::function<void()> done) {
    if (done) {
      drain_done.push_back(std::move(done));
    }
    if (!draining) {
      draining = true;
      timer->stop();
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
    later_timers.clear();
    for (auto& pool : pools) {
      pool->backoff_timer.reset();
      pool->slots.clear();
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
  RetryOptions ro;
  ro.initial_delay_ms = config.queue.retry_initial.count();
  ro.max_delay_ms = config.queue.retry_max.count();
  ro.lifetime_ms = config.queue.lifetime.count();
  ro.jitter_fraction = options.retry_jitter;
  if (auto v = RetryPolicy::validate(ro); !v) {
    return std::unexpected(v.error());
  }
  const std::string ehlo = config.node.id.empty() ? hostName() : config.node.id;
  auto state = std::make_shared<State>(loop, store, std::move(options), RetryPolicy(ro),
                                       config.queue.messages_per_connection);

  // Relays with the same host, port, TLS mode and credentials share one pool (and the first
  // one's connection cap).
  using Key =
      std::tuple<std::string, uint16_t, int, std::string, std::string, int, const TokenSource*>;
  std::map<Key, State::Pool*> by_key;
  for (const auto& [name, relay] : config.relays) {
    const config::Upstream& up = relay.server;
    std::shared_ptr<TokenSource> tokens;
    if (auto it = state->options.token_sources.find(name);
        it != state->options.token_sources.end()) {
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
      if (auto it = state->options.auth_mechanism.find(name);
          it != state->options.auth_mechanism.end()) {
        client.auth = it->second;
      }
      client.username = relay.auth->username;
      client.password = relay.auth->password.reveal();
    }
    const Key key{up.host,         up.port,         static_cast<int>(up.tls),
                  client.username, client.password, static_cast<int>(client.auth),
                  tokens.get()};
    if (auto it = by_key.find(key); it != by_key.end()) {
      state->pool_by_relay.emplace(name, it->second);
      continue;
    }

    auto pool = std::make_unique<State::Pool>();
    pool->label = fmt::format("{} ({}:{})", name, up.host, up.port);
    pool->max_connections = std::max<uint32_t>(relay.limits.max_connections, 1);
    pool->backoff = std::make_unique<net::Backoff>(state->options.connect_backoff);
    pool->backoff_timer = net::Timer::create(loop);
    UpstreamSettings& s = pool->base;
    s.relay = name;
    s.endpoint = net::Endpoint{up.host, up.port};
    s.bind_address = config.egress.bind_address;
    s.client = std::move(client);
    s.token_source = std::move(tokens);
    s.timeouts = state->options.timeouts;
    if (up.tls != config::TlsMode::kNone) {
      net::TlsClientOptions tls;
      tls.ca_file = up.ca_file;
      tls.allow_self_signed = up.allow_self_signed;
      tls.pins = up.pins;
      auto ctx = net::TlsContext::client(tls);
      if (!ctx) {
        return fail("tls.config", fmt::format("relays.{}: {}", name, ctx.error().message),
                    ctx.error().hint);
      }
      s.tls = std::move(*ctx);
    }
    by_key.emplace(key, pool.get());
    state->pool_by_relay.emplace(name, pool.get());
    state->pools.push_back(std::move(pool));
  }
  return std::make_unique<DeliveryEngine>(PrivateTag{}, std::move(state));
}

void DeliveryEngine::schedule(QueuedMessage msg) {
  state_->schedule(std::move(msg));
}

void DeliveryEngine::drain(std::function<void()> done) {
  state_->drain(std::move(done));
}

DeliveryStats DeliveryEngine::stats() const {
  DeliveryStats s = state_->stats;
  for (const auto& pool : state_->pools) {
    s.open_connections += pool->slots.size();
  }
  s.waiting = state_->known.size() - std::min(state_->known.size(), state_->in_flight);
  return s;
}

} // namespace mailgate::relay

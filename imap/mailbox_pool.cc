#include "imap/mailbox_pool.h"

#include "base/log.h"
#include "imap/sent_folder.h"
#include "net/loop.h"

#include <algorithm>
#include <atomic>
#include <utility>

namespace mailgate::imap {

namespace {

std::atomic<uint64_t> g_next_session_id{1};

int64_t wallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool isCredentialProblem(const SessionEnd& end) {
  using Kind = protocol::Advice::Kind;
  if (end.advice.kind == Kind::kAuthFailed || end.advice.kind == Kind::kLoginDisabled ||
      end.advice.kind == Kind::kAuthTrouble) {
    return !end.logged_in || end.advice.kind == Kind::kAuthTrouble;
  }
  const auto& code = end.error.code;
  return code == "imap.auth" || code == "imap.login_disabled" || code == "imap.auth_unavailable" ||
         code == "imap.no_token_source" || code == "imap.not_connected" ||
         code.starts_with("oauth.");
}

} // namespace

// --- SessionBudget -------------------------------------------------------------------------------

void SessionBudget::setCap(std::optional<uint32_t> cap) {
  cap_ = cap;
  wake();
}

bool SessionBudget::tryAcquire() {
  if (cap_ && used_ >= *cap_) {
    return false;
  }
  ++used_;
  return true;
}

void SessionBudget::release() {
  if (used_ > 0) {
    --used_;
  }
  wake();
}

void SessionBudget::wait(MailboxPool* pool) {
  if (std::ranges::find(waiting_, pool) == waiting_.end()) {
    waiting_.push_back(pool);
  }
}

void SessionBudget::forget(MailboxPool* pool) {
  std::erase(waiting_, pool);
}

void SessionBudget::wake() {
  // One pool per free session, in the order they asked; each takes what it can.
  while (!waiting_.empty() && (!cap_ || used_ < *cap_)) {
    auto* pool = waiting_.front();
    waiting_.pop_front();
    uint32_t before = used_;
    pool->budgetFreed();
    if (used_ == before) {
      continue; // it no longer needed one
    }
  }
}

// --- Lease ---------------------------------------------------------------------------------------

struct Lease::Slot {
  SessionPtr session;
  bool idle_role = false;
  MailboxPool::Phase phase{};
  int64_t last_used_ms = 0;
  bool leased = false; // a Lease points here: the slot must stay until it is given back
  bool dead = false;   // closed while leased: removed when given back
  bool holds_budget = true;
  bool holds_gate = false; // a turn at connecting, given back once logged in or closed
  uint64_t generation = 0; // settings generation it was opened with
};

struct LeaseRequest::Waiter {
  std::function<void(Result<LeasePtr>)> done;
};

LeaseRequest::~LeaseRequest() {
  if (waiter_) {
    waiter_->done = nullptr;
  }
}

Lease::Lease(std::weak_ptr<bool> pool_alive, MailboxPool* pool, Slot* slot)
    : pool_alive_(std::move(pool_alive)), pool_(pool), slot_(slot) {}

Lease::~Lease() {
  if (!pool_alive_.expired()) {
    pool_->giveBack(slot_, discard_);
  }
}

Session& Lease::session() {
  return *slot_->session;
}

// --- MailboxPool ---------------------------------------------------------------------------------

MailboxPool::MailboxPool(net::Loop& loop, PoolSettings settings, SessionBudget* budget,
                         SessionBudget* connect_gate)
    : loop_(loop), settings_(std::move(settings)), budget_(budget), gate_(connect_gate),
      log_(logger("imap")), reconnect_(settings_.reconnect), retry_(net::Timer::create(loop)),
      sweep_(net::Timer::create(loop)) {}

MailboxPool::~MailboxPool() {
  *alive_ = false;
  if (gate_) {
    gate_->forget(this);
  }
  if (budget_) {
    budget_->forget(this);
  }
  for (const auto& slot : slots_) {
    releaseBudgets(*slot);
  }
}

void MailboxPool::releaseBudgets(Lease::Slot& slot) {
  if (slot.holds_gate && gate_) {
    slot.holds_gate = false;
    gate_->release();
  }
  if (slot.holds_budget && budget_) {
    slot.holds_budget = false;
    budget_->release();
  }
}

int64_t MailboxPool::nowMs() const {
  return static_cast<int64_t>(loop_.nowMs());
}

Lease::Slot* MailboxPool::slotById(uint64_t session_id) {
  for (auto& slot : slots_) {
    if (slot->session->id() == session_id) {
      return slot.get();
    }
  }
  return nullptr;
}

Lease::Slot* MailboxPool::slotOf(const Session& session) {
  for (auto& slot : slots_) {
    if (slot->session.get() == &session) {
      return slot.get();
    }
  }
  return nullptr;
}

void MailboxPool::start() {
  if (started_) {
    return;
  }
  started_ = true;
  if (settings_.setup) {
    recordError(*settings_.setup, wallMs());
    credentials_refused_ = true; // shown as disconnected: nothing works until the config changes
    return;
  }
  maintain();
}

bool MailboxPool::mayOpen() const {
  if (!started_ || stopping_ || settings_.setup) {
    return false;
  }
  int64_t now = nowMs();
  if (now < retry_at_ms_ || now < paused_until_ms_) {
    return false;
  }
  // One session at a time is connecting or logging in.
  return std::ranges::none_of(slots_, [](const auto& slot) {
    return slot->phase == Phase::kConnecting || slot->phase == Phase::kPreparing;
  });
}

void MailboxPool::maintain() {
  if (!started_ || stopping_) {
    return;
  }
  int64_t now = nowMs();
  if (now < paused_until_ms_) {
    scheduleRetry(std::chrono::milliseconds(paused_until_ms_ - now));
    return;
  }
  if (now < retry_at_ms_) {
    scheduleRetry(std::chrono::milliseconds(retry_at_ms_ - now)); // existing sessions still serve
  }
  std::erase_if(waiters_, [](const auto& w) { return !w->done; });

  bool has_idle = std::ranges::any_of(slots_, [](const auto& s) { return s->idle_role; });
  if (settings_.idle_session && !has_idle) {
    if (mayOpen()) {
      openSession(true);
    }
    if (waiters_.empty()) {
      return;
    }
  }
  // Free sessions go to waiting jobs, in order.
  for (auto& slot : slots_) {
    if (waiters_.empty()) {
      break;
    }
    if (slot->phase != Phase::kFree || slot->idle_role) {
      continue;
    }
    if (now - slot->last_used_ms >= settings_.health_check_after.count()) {
      slot->phase = Phase::kChecking;
      uint64_t id = slot->session->id();
      slot->session->noop([this, id, alive = std::weak_ptr<bool>(alive_)](Result<void> r) {
        auto* raw = alive.expired() ? nullptr : slotById(id);
        if (!raw || raw->phase != Phase::kChecking) {
          return;
        }
        if (!r) {
          closeSlot(*raw); // onSessionClosed replaces it
          return;
        }
        raw->phase = Phase::kFree;
        raw->last_used_ms = nowMs();
        maintain();
      });
      continue;
    }
    lend(*slot);
  }
  if (waiters_.empty()) {
    return;
  }
  // More sessions, up to the cap (the IDLE one counts).
  auto open_count = static_cast<uint32_t>(slots_.size());
  bool any_pending = std::ranges::any_of(slots_, [](const auto& s) {
    return s->phase == Phase::kConnecting || s->phase == Phase::kPreparing ||
           s->phase == Phase::kChecking;
  });
  if (open_count < settings_.max_sessions) {
    if (!mayOpen() || openSession(false) != Opened::kBudgetSpent) {
      return; // opening (or about to): the job gets that session
    }
  }
  if (any_pending) {
    return;
  }
  // No room for another session and none free: the IDLE session serves the job, and IDLEs again
  // once it comes back (a pool of one, or a tenant budget that is spent).
  for (auto& slot : slots_) {
    if (slot->idle_role && slot->phase == Phase::kIdling &&
        std::ranges::none_of(slots_, [](const auto& s) { return s->phase == Phase::kLeased; })) {
      slot->phase = Phase::kFree;
      slot->session->stopIdle();
      lend(*slot);
      return;
    }
  }
}

MailboxPool::Opened MailboxPool::openSession(bool idle_role) {
  // A turn at connecting (the service's gate: a start or a reload never opens thousands of
  // sessions at once), then room in the tenant's budget.
  if (gate_ && !gate_->tryAcquire()) {
    gate_->wait(this);
    return Opened::kGateBusy;
  }
  if (budget_ && !budget_->tryAcquire()) {
    if (gate_) {
      gate_->release();
    }
    budget_->wait(this);
    return Opened::kBudgetSpent;
  }
  auto slot = std::make_unique<Lease::Slot>();
  slot->idle_role = idle_role;
  slot->phase = Phase::kConnecting;
  slot->holds_budget = budget_ != nullptr;
  slot->holds_gate = gate_ != nullptr;
  slot->generation = generation_;
  SessionSettings session = settings_.session;
  session.id = g_next_session_id.fetch_add(1, std::memory_order_relaxed);
  slot->session =
      std::make_unique<Session>(loop_, std::move(session), static_cast<Session::Observer&>(*this));
  auto* raw = slot.get();
  slots_.push_back(std::move(slot));
  raw->session->start();
  return Opened::kOpened;
}

void MailboxPool::budgetFreed() {
  maintain();
}

void MailboxPool::onSessionReady(Session& session) {
  auto* slot = slotOf(session);
  if (!slot) {
    return;
  }
  if (slot->holds_gate && gate_) {
    slot->holds_gate = false;
    gate_->release();
  }
  ++logins_;
  reconnect_.reset();
  login_delay_ = std::chrono::milliseconds(0);
  credentials_refused_ = false;
  retry_at_ms_ = 0;
  if (connected_since_wall_ms_ == 0) {
    connected_since_wall_ms_ = wallMs();
  }
  slot->last_used_ms = nowMs();
  if (stopping_) {
    closeSlot(*slot);
    return;
  }
  if (sent_folder_.empty()) {
    slot->phase = Phase::kPreparing;
    uint64_t id = session.id();
    session.list(
        [this, id, alive = std::weak_ptr<bool>(alive_)](Result<std::vector<FolderInfo>> folders) {
          auto* slot = alive.expired() ? nullptr : slotById(id);
          if (!slot || slot->dead || slot->phase != Phase::kPreparing) {
            return;
          }
          if (!folders) {
            closeSlot(*slot);
            return;
          }
          sent_folder_ = findSentFolder(*folders, settings_.sent_folder);
          if (sent_folder_.empty()) {
            log_->warn("{}: no Sent folder found (no \\Sent flag, no known name, none configured)",
                       settings_.address);
          }
          settle(*slot);
        });
    return;
  }
  settle(*slot);
}

void MailboxPool::settle(Lease::Slot& slot) {
  if (slot.idle_role) {
    prepareIdle(slot);
    return;
  }
  slot.phase = Phase::kFree;
  armSweep(); // logged out after its linger if no job takes it
  maintain();
}

// EXAMINE INBOX (read-only: watching must change no flag), then IDLE.
void MailboxPool::prepareIdle(Lease::Slot& slot) {
  slot.phase = Phase::kPreparing;
  uint64_t id = slot.session->id();
  auto alive = std::weak_ptr<bool>(alive_);
  slot.session->select("INBOX", true, [this, id, alive](Result<SelectInfo> selected) {
    auto* raw = alive.expired() ? nullptr : slotById(id);
    if (!raw || raw->dead || raw->phase != Phase::kPreparing) {
      return;
    }
    if (!selected) {
      if (nowMs() >= paused_until_ms_) { // a throttling refusal is already recorded as such
        recordError(selected.error(), wallMs());
      }
      closeSlot(*raw);
      return;
    }
    raw->phase = Phase::kIdling;
    if (watching_) {
      watching_(); // nobody watched INBOX until now: mail may have come meanwhile
    }
    raw->session->idle([this, id, alive](Result<void> ended) {
      auto* raw = alive.expired() ? nullptr : slotById(id);
      if (!raw || raw->dead) {
        return;
      }
      if (!ended && raw->phase == Phase::kIdling) {
        // IDLE refused or broken: this session cannot watch; replace it.
        recordError(ended.error(), wallMs());
        closeSlot(*raw);
      }
    });
    maintain(); // jobs may have waited for the first login
  });
}

void MailboxPool::lend(Lease::Slot& slot) {
  auto waiter = waiters_.front();
  waiters_.pop_front();
  slot.phase = Phase::kLeased;
  slot.leased = true;
  Lease::Slot* raw = &slot;
  // Granted in a later turn: never from inside lease() or another call on the pool.
  loop_.defer([this, waiter, raw, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired()) {
      return;
    }
    if (raw->dead && waiter->done) {
      waiters_.push_front(waiter); // the session died on the way: the job waits for another
    }
    auto lease = std::make_unique<Lease>(alive_, this, raw);
    if (raw->dead || !waiter->done) {
      return; // the lease's destructor gives the session back (or drops the dead one)
    }
    auto done = std::move(waiter->done);
    waiter->done = nullptr;
    done(std::move(lease));
  });
}

void MailboxPool::giveBack(Lease::Slot* slot, bool discard) {
  slot->leased = false;
  if (slot->dead) {
    removeSlot(slot);
    if (stopping_) {
      checkStopped();
    } else {
      maintain();
    }
    return;
  }
  slot->last_used_ms = nowMs();
  if (discard || stopping_ || !slot->session->ready() || slot->generation != generation_ ||
      static_cast<uint32_t>(slots_.size()) > settings_.max_sessions) {
    closeSlot(*slot);
    return;
  }
  settle(*slot);
}

void MailboxPool::closeSlot(Lease::Slot& slot) {
  if (slot.phase == Phase::kClosing) {
    return;
  }
  slot.phase = Phase::kClosing;
  slot.session->logout(); // onSessionClosed follows
}

void MailboxPool::removeSlot(Lease::Slot* slot) {
  auto it = std::ranges::find_if(slots_, [slot](const auto& s) { return s.get() == slot; });
  if (it == slots_.end()) {
    return;
  }
  auto owned = std::move(*it);
  slots_.erase(it);
  releaseBudgets(*owned);
  // The session may be the one whose callback is running: free it in a later turn.
  loop_.defer([session = std::shared_ptr<Session>(std::move(owned->session))] {});
}

void MailboxPool::recordError(const Error& error, int64_t wall_ms) {
  last_error_ = error;
  last_error_wall_ms_ = wall_ms;
}

void MailboxPool::onSessionClosed(Session& session, const SessionEnd& end) {
  auto* slot = slotOf(session);
  if (!slot) {
    return;
  }
  bool ours = end.error.code == "imap.logout";
  if (slot->leased) {
    slot->dead = true; // the job still holds it; removed when given back
    releaseBudgets(*slot);
  } else {
    removeSlot(slot);
  }
  if (stopping_) {
    checkStopped();
    return;
  }
  if (slots_.empty() || std::ranges::all_of(slots_, [](const auto& s) { return s->dead; })) {
    connected_since_wall_ms_ = 0;
  }
  if (ours) {
    maintain();
    return;
  }
  recordError(end.error, wallMs());
  if (!end.logged_in) {
    ++failures_;
  }
  using Kind = protocol::Advice::Kind;
  std::chrono::milliseconds delay;
  if (isCredentialProblem(end)) {
    credentials_refused_ = true;
    login_delay_ = login_delay_.count() == 0
                       ? settings_.login_retry_initial
                       : std::min(login_delay_ * 2, settings_.login_retry_max);
    delay = login_delay_;
    log_->warn("{}: IMAP login refused, next attempt in {} s: {}", settings_.address,
               (delay.count() + 999) / 1000, end.error.describe());
  } else if (end.advice.kind == Kind::kThrottled && end.advice.backoff) {
    delay = std::max(*end.advice.backoff, reconnect_.next());
  } else if (end.advice.kind == Kind::kUnavailable) {
    delay = std::max(std::chrono::milliseconds(std::chrono::seconds(15)), reconnect_.next());
  } else {
    delay = reconnect_.next();
  }
  retry_at_ms_ = nowMs() + delay.count();
  scheduleRetry(delay);
}

void MailboxPool::onSessionPush(Session& session, const protocol::UntaggedData& data) {
  auto* slot = slotOf(session);
  if (slot && slot->idle_role && push_) {
    push_(data);
  }
}

void MailboxPool::onSessionAdvice(Session& /*session*/, const protocol::Advice& advice) {
  if (advice.kind != protocol::Advice::Kind::kThrottled) {
    return;
  }
  // "Request is throttled. Suggested Backoff Time: N milliseconds": the whole mailbox waits N.
  auto wait = advice.backoff.value_or(std::chrono::seconds(5));
  paused_until_ms_ = std::max(paused_until_ms_, nowMs() + static_cast<int64_t>(wait.count()));
  recordError(Error("imap.throttled", "the server asked to slow down", advice.hint), wallMs());
  log_->info("{}: IMAP throttled by the server, pausing {} ms", settings_.address, wait.count());
  scheduleRetry(wait);
}

void MailboxPool::scheduleRetry(std::chrono::milliseconds delay) {
  retry_->start(delay, [this] { maintain(); });
}

void MailboxPool::armSweep() {
  if (!sweep_->active()) {
    sweep_->start(settings_.worker_linger, [this] { sweep(); });
  }
}

void MailboxPool::sweep() {
  int64_t now = nowMs();
  bool more = false;
  for (auto& slot : slots_) {
    if (slot->phase != Phase::kFree || slot->idle_role) {
      continue;
    }
    if (now - slot->last_used_ms >= settings_.worker_linger.count()) {
      closeSlot(*slot);
    } else {
      more = true;
    }
  }
  if (more) {
    armSweep();
  }
}

LeaseRequestPtr MailboxPool::lease(std::function<void(Result<LeasePtr>)> done) {
  auto waiter = std::make_shared<LeaseRequest::Waiter>();
  waiter->done = std::move(done);
  auto request = std::make_unique<LeaseRequest>(waiter);
  if (stopping_) {
    loop_.defer([waiter] {
      if (waiter->done) {
        auto fn = std::move(waiter->done);
        fn(std::unexpected(Error("imap.pool_stopped", "the mailbox's IMAP sessions are stopped")));
      }
    });
    return request;
  }
  waiters_.push_back(std::move(waiter));
  loop_.defer([this, alive = std::weak_ptr<bool>(alive_)] {
    if (!alive.expired()) {
      maintain();
    }
  });
  return request;
}

void MailboxPool::stop(std::function<void()> done) {
  stopping_ = true;
  retry_->stop();
  sweep_->stop();
  if (budget_) {
    budget_->forget(this);
  }
  if (gate_) {
    gate_->forget(this);
  }
  auto waiters = std::move(waiters_);
  waiters_.clear();
  for (auto& waiter : waiters) {
    loop_.defer([waiter] {
      if (waiter->done) {
        auto fn = std::move(waiter->done);
        fn(std::unexpected(Error("imap.pool_stopped", "the mailbox's IMAP sessions are stopped")));
      }
    });
  }
  stopped_ = std::move(done);
  for (auto& slot : slots_) {
    if (!slot->dead) {
      closeSlot(*slot);
    }
  }
  checkStopped();
}

void MailboxPool::checkStopped() {
  if (!stopped_ || !std::ranges::all_of(slots_, [](const auto& s) { return s->dead; })) {
    return;
  }
  loop_.defer([done = std::move(stopped_)] { done(); });
  stopped_ = nullptr;
}

void MailboxPool::reconfigure(PoolSettings settings) {
  const auto& a = settings_.session;
  const auto& b = settings.session;
  bool restart = a.endpoint != b.endpoint || a.tls != b.tls || a.tls_context != b.tls_context ||
                 a.bind_address != b.bind_address || a.username != b.username || a.auth != b.auth ||
                 a.password.reveal() != b.password.reveal() || a.tokens != b.tokens ||
                 settings_.setup.has_value() || settings.setup.has_value();
  bool new_folder = settings_.sent_folder != settings.sent_folder;
  settings_ = std::move(settings);
  if (new_folder) {
    sent_folder_.clear();
  }
  if (restart) {
    log_->info("{}: IMAP settings changed, reconnecting", settings_.address);
    ++generation_;
    for (auto& slot : slots_) {
      if (slot->leased) {
        continue; // closed when given back: giveBack sees its older generation
      }
      closeSlot(*slot);
    }
    reconnect_ = net::Backoff(settings_.reconnect);
    credentials_refused_ = false;
    login_delay_ = std::chrono::milliseconds(0);
    retry_at_ms_ = 0;
    paused_until_ms_ = 0;
    sent_folder_.clear();
    if (settings_.setup) {
      recordError(*settings_.setup, wallMs());
      credentials_refused_ = true;
      return;
    }
  }
  // Above a lowered cap, sessions nobody uses go now.
  auto count = static_cast<uint32_t>(slots_.size());
  for (auto& slot : slots_) {
    if (count <= settings_.max_sessions) {
      break;
    }
    if (slot->phase == Phase::kFree && !slot->idle_role) {
      closeSlot(*slot);
      --count;
    }
  }
  maintain();
}

void MailboxPool::statusInto(MailboxImapStatus& out) const {
  out.max_sessions = settings_.max_sessions;
  out.sessions_open = out.sessions_idle = out.sessions_busy = out.sessions_connecting = 0;
  for (const auto& slot : slots_) {
    if (slot->dead) {
      continue;
    }
    switch (slot->phase) {
    case Phase::kConnecting:
    case Phase::kPreparing:
      if (slot->session->ready()) {
        ++out.sessions_open;
      } else {
        ++out.sessions_connecting;
      }
      break;
    case Phase::kIdling:
      ++out.sessions_open;
      ++out.sessions_idle;
      break;
    case Phase::kLeased:
      ++out.sessions_open;
      ++out.sessions_busy;
      break;
    case Phase::kFree:
    case Phase::kChecking:
    case Phase::kClosing:
      ++out.sessions_open;
      break;
    }
  }
  out.jobs_waiting = static_cast<uint32_t>(
      std::ranges::count_if(waiters_, [](const auto& w) { return w->done != nullptr; }));
  out.sent_folder = sent_folder_;
  out.last_error_code = last_error_.code;
  out.last_error = last_error_.message;
  out.hint = last_error_.hint;
  out.last_error_at_ms = last_error_wall_ms_;
  out.connected_since_ms = connected_since_wall_ms_;
  out.logins = logins_;
  out.failures = failures_;
  int64_t now = nowMs();
  int64_t wait_until = std::max(retry_at_ms_, paused_until_ms_);
  out.next_retry_at_ms = wait_until > now ? wallMs() + (wait_until - now) : 0;
  if (!started_ || stopping_) {
    out.state = PoolState::kOff;
  } else if (credentials_refused_ && out.sessions_open == 0) {
    out.state = PoolState::kDisconnected;
  } else if (paused_until_ms_ > now) {
    out.state = PoolState::kThrottled;
  } else if (out.sessions_open > 0) {
    out.state = PoolState::kConnected;
  } else if (logins_ == 0 && failures_ == 0) {
    out.state = PoolState::kConnecting;
  } else if (retry_at_ms_ > now) {
    out.state = PoolState::kBackoff;
  } else {
    out.state = PoolState::kConnecting;
  }
}

} // namespace mailgate::imap

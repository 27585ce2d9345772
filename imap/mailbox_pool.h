// The IMAP sessions of one mailbox: one IDLEs on INBOX (pushes go to the push handler), the
// others serve jobs through RAII leases, up to max_sessions and the tenant's budget. Sessions are
// opened one at a time (Microsoft 365 punishes login storms), reused, health-checked with NOOP
// before a lease when they sat unused, closed when unused for a while, and replaced with jittered
// exponential backoff. The server's throttling replies pause the whole mailbox for as long as
// they ask; refused credentials put it in `disconnected` and retry slowly, for hours.
//
// Threading: loop thread only. Callbacks (lease grants, the push handler) run on the loop thread,
// never from inside a call made on the pool. Destroying the pool aborts its sessions. A lease
// request may outlive the pool (it is inert then); a lease must not (its session goes with it).
#pragma once

#include "imap/mailbox_status.h"
#include "imap/session.h"
#include "net/backoff.h"
#include "net/timer.h"

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mailgate::imap {

class MailboxPool;

// A cap shared by several pools: the sessions of one tenant (tenants[].imap.max_sessions), or the
// sessions connecting at once in the whole process (ImapService's connect gate). Loop thread
// only. Pools that found it full are told, in turn, when a place is given back.
class SessionBudget {
public:
  explicit SessionBudget(std::optional<uint32_t> cap) : cap_(cap) {}
  void setCap(std::optional<uint32_t> cap);
  [[nodiscard]] bool tryAcquire();
  void release();
  void wait(MailboxPool* pool); // the pool wants a session once one is free
  void forget(MailboxPool* pool);
  [[nodiscard]] uint32_t used() const { return used_; }

private:
  void wake();
  std::optional<uint32_t> cap_;
  uint32_t used_ = 0;
  std::deque<MailboxPool*> waiting_;
};

struct PoolSettings {
  std::string tenant;
  std::string address;
  SessionSettings session; // every session's settings; `id` is set per session
  uint32_t max_sessions = 3;
  std::string sent_folder;    // configured name (UTF-8), the last resort of findSentFolder
  bool idle_session = true;   // keep one session IDLE on INBOX
  std::optional<Error> setup; // a problem found before connecting (TLS trust files): no session
  // Reconnects after network, TLS and server failures.
  net::BackoffOptions reconnect{std::chrono::seconds(1), std::chrono::minutes(5), 2.0, 0.2, {}};
  // After refused credentials: a new App Password can take hours to start working on Microsoft
  // 365, so retry this slowly, doubling, for as long as the mailbox is configured.
  std::chrono::milliseconds login_retry_initial{std::chrono::minutes(5)};
  std::chrono::milliseconds login_retry_max{std::chrono::hours(2)};
  // A session that served a lease and sat unused this long is logged out.
  std::chrono::milliseconds worker_linger{std::chrono::minutes(5)};
  // A session unused this long gets a NOOP before it is lent.
  std::chrono::milliseconds health_check_after{std::chrono::seconds(60)};
};

// A session lent to a job. Destroying the lease gives the session back (it may be reused); call
// discard() first when the job left it in a state that must not be reused (a command timed out,
// the job aborted half-way). Not copyable or movable: hold it by LeasePtr.
class Lease {
public:
  struct Slot;
  Lease(std::weak_ptr<bool> pool_alive, MailboxPool* pool, Slot* slot);
  ~Lease();
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  // Valid as long as the lease; a session that closed meanwhile fails its commands.
  [[nodiscard]] Session& session();
  void discard() { discard_ = true; }

private:
  std::weak_ptr<bool> pool_alive_;
  MailboxPool* pool_;
  Slot* slot_;
  bool discard_ = false;
};
using LeasePtr = std::unique_ptr<Lease>;

// A queued lease request; destroying it withdraws the request (its callback never runs).
class LeaseRequest {
public:
  struct Waiter;
  explicit LeaseRequest(std::shared_ptr<Waiter> waiter) : waiter_(std::move(waiter)) {}
  ~LeaseRequest();
  LeaseRequest(const LeaseRequest&) = delete;
  LeaseRequest& operator=(const LeaseRequest&) = delete;

private:
  std::shared_ptr<Waiter> waiter_;
};
using LeaseRequestPtr = std::unique_ptr<LeaseRequest>;

class MailboxPool : private Session::Observer {
public:
  using PushHandler = std::function<void(const protocol::UntaggedData& data)>;

  // `budget` (the tenant's cap) and `connect_gate` (how many sessions of the whole process may be
  // connecting and logging in at once) may be null (no limit) and must outlive the pool.
  MailboxPool(net::Loop& loop, PoolSettings settings, SessionBudget* budget,
              SessionBudget* connect_gate = nullptr);
  ~MailboxPool() override;
  MailboxPool(const MailboxPool&) = delete;
  MailboxPool& operator=(const MailboxPool&) = delete;

  // Opens the IDLE session (and later the others, on demand).
  void start();

  // LOGOUT on every session; `done` runs once all are closed (at most a few seconds). Lease
  // requests still waiting fail with "imap.pool_stopped". The pool opens nothing afterwards.
  void stop(std::function<void()> done);

  // New settings. A change of server, TLS, login or credentials closes every session and starts
  // again at once (a mailbox that was disconnected for bad credentials retries now); a new cap
  // closes unused sessions above it; other changes apply as sessions are next opened.
  void reconfigure(PoolSettings settings);

  // Asks for a session. `done` runs once, in a later turn, with a lease (a logged-in session with
  // nothing in flight; no mailbox selected is promised) or "imap.pool_stopped". Requests wait in
  // order for as long as it takes, through disconnections and throttling: jobs are durable
  // elsewhere and the caller decides when to give up (by destroying the request).
  [[nodiscard]] LeaseRequestPtr lease(std::function<void(Result<LeasePtr>)> done);

  // Untagged data the IDLE session received (new mail, expunges, flag changes).
  void setPushHandler(PushHandler handler) { push_ = std::move(handler); }
  // Called each time a session starts watching INBOX (the first one, or one that replaces a
  // session the server ended): mail may have come while none watched.
  void setWatchHandler(std::function<void()> handler) { watching_ = std::move(handler); }

  void statusInto(MailboxImapStatus& out) const;
  [[nodiscard]] const PoolSettings& settings() const { return settings_; }

  // SessionBudget's call: a session may be free for this pool now.
  void budgetFreed();

private:
  friend class Lease;
  enum class Phase { kConnecting, kPreparing, kFree, kChecking, kLeased, kIdling, kClosing };

  // Session::Observer
  void onSessionReady(Session& session) override;
  void onSessionClosed(Session& session, const SessionEnd& end) override;
  void onSessionPush(Session& session, const protocol::UntaggedData& data) override;
  void onSessionAdvice(Session& session, const protocol::Advice& advice) override;

  Lease::Slot* slotOf(const Session& session);
  Lease::Slot* slotById(uint64_t session_id);
  void maintain();
  enum class Opened { kOpened, kGateBusy, kBudgetSpent };
  Opened openSession(bool idle_role); // kGateBusy, kBudgetSpent: told when a place frees
  // A logged-in session with nothing to do: the IDLE one watches INBOX, a worker waits for jobs.
  void settle(Lease::Slot& slot);
  void prepareIdle(Lease::Slot& slot);
  void lend(Lease::Slot& slot);
  void giveBack(Lease::Slot* slot, bool discard);
  void removeSlot(Lease::Slot* slot);
  void closeSlot(Lease::Slot& slot);
  void checkStopped(); // stop()'s `done` once every session is closed
  void releaseBudgets(Lease::Slot& slot);
  void scheduleRetry(std::chrono::milliseconds delay);
  void armSweep();
  void sweep();
  void recordError(const Error& error, int64_t wall_ms);
  [[nodiscard]] bool mayOpen() const;
  [[nodiscard]] int64_t nowMs() const;

  net::Loop& loop_;
  PoolSettings settings_;
  SessionBudget* budget_;
  SessionBudget* gate_;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<std::unique_ptr<Lease::Slot>> slots_;
  std::deque<std::shared_ptr<LeaseRequest::Waiter>> waiters_;
  PushHandler push_;
  std::function<void()> watching_;
  net::Backoff reconnect_;
  net::TimerPtr retry_;                      // the next attempt after a failure or a pause
  net::TimerPtr sweep_;                      // closes lingering sessions
  std::chrono::milliseconds login_delay_{0}; // the current slow-retry delay after bad credentials
  int64_t retry_at_ms_ = 0;                  // loop clock: nothing opens before
  int64_t paused_until_ms_ = 0; // loop clock: throttled; nothing is sent or opened before
  uint64_t generation_ = 0;     // bumped when new settings need new sessions
  bool started_ = false;
  bool stopping_ = false;
  bool credentials_refused_ = false;
  std::function<void()> stopped_;
  std::string sent_folder_;
  // Status figures.
  Error last_error_;
  int64_t last_error_wall_ms_ = 0;
  int64_t connected_since_wall_ms_ = 0;
  uint64_t logins_ = 0;
  uint64_t failures_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

} // namespace mailgate::imap

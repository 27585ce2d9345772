// The event loop every net/ object runs on. One Loop per worker thread; every object created on a
// Loop (timers, connections, listeners, pending connects) must be used and destroyed on the thread
// that runs it, except post() and stop(), which any thread may call.
//
// A loop turn, in order: due timers; deferred functions (defer()); before-poll hooks
// (beforePoll(), where connections flush their batched writes); waiting for I/O, which runs read,
// write, accept and connect completions, posted functions (post()) and signal handlers.
#pragma once

#include "base/error.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

namespace mailgate::net {

class Loop;
using LoopPtr = std::unique_ptr<Loop>;

class Loop {
public:
  struct Impl; // net/internal/loop_impl.h; the only place that knows it wraps libuv
  struct PrivateTag {
    explicit PrivateTag() = default;
  };

  // Creates a loop. The calling thread is the loop thread until run() is called; run() makes its
  // caller the loop thread. Also sets SIGPIPE to "ignore" for the whole process, so a write to a
  // socket the peer reset becomes an error value instead of killing the process.
  static Result<LoopPtr> create();

  Loop(PrivateTag, std::unique_ptr<Impl> impl);
  // Closes every handle still open (as stop() + run() would) and frees the loop. Objects created on
  // this loop that the caller still holds become inert: their methods do nothing and their
  // callbacks never fire; destroying them afterwards is safe.
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // Runs callbacks until stop() is called, then closes every handle (connections, listeners,
  // timers, signal watchers) WITHOUT calling their user callbacks, drops functions that were posted
  // or deferred but have not run, and returns. A loop runs once: calling run() again returns at
  // once. Objects still held by the caller are inert afterwards (see ~Loop).
  void run();

  // Asks run() to return. Thread-safe and async-signal-unsafe; returns at once. Functions already
  // posted before the call still run; anything after the current turn does not.
  void stop();

  // Runs `fn` on the loop thread in a later turn. Thread-safe: this is how other threads (storage
  // commits, blocking work) hand results back. Functions posted from one thread run in the order
  // they were posted. Dropped without running if the loop has stopped.
  void post(std::function<void()> fn);

  // Loop thread only. Runs `fn` at the start of the next turn, never from inside the current call
  // stack, in FIFO order with other deferred functions. A function deferred from inside a deferred
  // function runs in the turn after. This is how net/ itself avoids calling user code re-entrantly.
  void defer(std::function<void()> fn);

  // Loop thread only. Runs `fn` once, late in the current turn, after every deferred function and
  // I/O callback already queued and just before the loop waits for I/O (if called while those hooks
  // are running, in the same pass). Connections use it to turn many write() calls into one socket
  // write per turn; other code can use it to batch its own work the same way.
  void beforePoll(std::function<void()> fn);

  // Milliseconds since an arbitrary origin, as cached at the start of the current turn (cheap; does
  // not move inside one callback). Monotonic.
  [[nodiscard]] uint64_t nowMs() const;

  // Loop thread only. Calls `fn` on the loop thread whenever the process receives `signum` (e.g.
  // SIGTERM to drain, SIGHUP to reload, SIGINT). One function per signal: a second call for the
  // same signal replaces the first. Returns an error if the signal cannot be watched.
  Result<void> onSignal(int signum, std::function<void()> fn);

  // True on the thread that runs (or, before run(), created) this loop.
  [[nodiscard]] bool inLoopThread() const;

  // For net/ internals only.
  Impl& impl() { return *impl_; }

private:
  std::unique_ptr<Impl> impl_;
};

} // namespace mailgate::net

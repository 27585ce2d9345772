// One-shot and repeating timers on a Loop.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

namespace mailgate::net {

class Loop;
class TimerCore;
class Timer;
using TimerPtr = std::unique_ptr<Timer>;

// Owns one timer. Loop thread only. The callback runs on the loop thread, never from inside
// start()/stop(). Destroying the Timer is always safe, including from inside its own callback:
// the callback never fires afterwards, and the libuv handle is freed once libuv has closed it.
class Timer {
public:
  // Never fails. On a loop that has already stopped the timer is inert (never fires).
  static TimerPtr create(Loop& loop);

  explicit Timer(std::shared_ptr<TimerCore> core);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Calls `fn` once after `delay`. Replaces whatever was scheduled before (its function is
  // dropped without being called). May be called from inside the timer's own callback.
  void start(std::chrono::milliseconds delay, std::function<void()> fn);

  // Calls `fn` every `period` (first call after one period) until stop(), start() or destruction.
  // A zero period is treated as 1 ms.
  void startRepeating(std::chrono::milliseconds period, std::function<void()> fn);

  // Cancels what is scheduled and drops its function. Harmless when nothing is scheduled.
  void stop();

  // True while a callback is scheduled.
  [[nodiscard]] bool active() const;

private:
  std::shared_ptr<TimerCore> core_;
};

} // namespace mailgate::net

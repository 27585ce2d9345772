// One thread for CPU-heavy work the loop must not wait for (composing a large message with GMime,
// preparing a large raw one): run() queues a job; the job's result is handed back to the loop
// with net::Loop::post, so completions run on the loop thread in a later turn.
//
// Destruction stops taking jobs, lets the running one finish and joins; queued jobs that have not
// started are dropped. Jobs must hold their state by value or weakly (as store completions do).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace mailgate::api {

class BackgroundWorker {
public:
  BackgroundWorker();
  ~BackgroundWorker();
  BackgroundWorker(const BackgroundWorker&) = delete;
  BackgroundWorker& operator=(const BackgroundWorker&) = delete;

  // Any thread. False when the worker is stopping or `max_queued` jobs wait already (the caller
  // answers "busy" instead of piling work up).
  bool run(std::function<void()> job, std::size_t max_queued = 64);

private:
  void loop();

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_; // guarded by mu_
  bool stopping_ = false;                  // guarded by mu_
  std::thread thread_;                     // last: started once the rest exists
};

} // namespace mailgate::api

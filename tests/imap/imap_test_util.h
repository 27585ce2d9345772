// The loop the session and pool tests run: runUntil() turns the loop until a condition holds (a
// hang guard fails the test after `limit`; no test relies on it to pass).
#pragma once

#include "imap/session.h"
#include "net/loop.h"
#include "net/timer.h"

#include <chrono>
#include <functional>
#include <gtest/gtest.h>
#include <vector>

namespace mailgate::imap::test {

// A net::Loop runs once (run() after stop() returns at once), so a test is one run of the loop
// through a list of steps: each waits until its condition holds (checked every 2 ms), then runs
// its action, all on the loop thread. The loop stops after the last step, or fails the test on
// the hang guard (no test relies on the guard to pass).
struct Step {
  std::function<bool()> until; // null: at once
  std::function<void()> then;  // may be null
};

class TestLoop {
public:
  TestLoop() : loop_(std::move(*net::Loop::create())) {}
  net::Loop& operator*() { return *loop_; }

  // False when the hang guard fired; the failure names the step that never came true.
  bool run(std::vector<Step> steps, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    bool ok = true;
    std::size_t next = 0;
    auto check = net::Timer::create(*loop_);
    auto guard = net::Timer::create(*loop_);
    auto advance = [&] {
      while (next < steps.size() && (!steps[next].until || steps[next].until())) {
        auto then = steps[next].then;
        ++next;
        if (then) {
          then();
        }
      }
      if (next == steps.size()) {
        loop_->stop();
      }
    };
    check->startRepeating(std::chrono::milliseconds(2), advance);
    guard->start(limit, [&] {
      ok = false;
      ADD_FAILURE() << "step " << next << " of " << steps.size() << " never came true";
      loop_->stop();
    });
    loop_->run();
    return ok;
  }

private:
  net::LoopPtr loop_;
};

// Records what a session reports.
struct RecordingObserver : Session::Observer {
  int ready = 0;
  std::optional<SessionEnd> end;
  std::vector<protocol::UntaggedData> pushes;
  std::vector<protocol::Advice> advice;
  std::function<void(Session&)> on_ready;
  void onSessionReady(Session& s) override {
    ++ready;
    if (on_ready) {
      on_ready(s);
    }
  }
  void onSessionClosed(Session&, const SessionEnd& e) override { end = e; }
  void onSessionPush(Session&, const protocol::UntaggedData& d) override { pushes.push_back(d); }
  void onSessionAdvice(Session&, const protocol::Advice& a) override { advice.push_back(a); }
};

} // namespace mailgate::imap::test

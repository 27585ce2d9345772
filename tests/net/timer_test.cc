#include "net/timer.h"
#include "test_util.h"

#include <gtest/gtest.h>

namespace mailgate::net {
namespace {

using std::chrono::milliseconds;
using test::TestLoop;

TEST(Timer, OneShotFiresOnceAndNeverInsideStart) {
  TestLoop loop;
  int fired = 0;
  auto timer = Timer::create(*loop);
  timer->start(milliseconds(0), [&] { ++fired; });
  EXPECT_EQ(fired, 0);
  EXPECT_TRUE(timer->active());
  auto end = Timer::create(*loop);
  end->start(milliseconds(20), [&] { loop->stop(); });
  loop.run();
  EXPECT_EQ(fired, 1);
}

TEST(Timer, RepeatingUntilStoppedFromItsOwnCallback) {
  TestLoop loop;
  int fired = 0;
  auto timer = Timer::create(*loop);
  timer->startRepeating(milliseconds(1), [&] {
    if (++fired == 5) {
      timer->stop();
      loop->defer([&] { loop->stop(); });
    }
  });
  loop.run();
  EXPECT_EQ(fired, 5);
  EXPECT_FALSE(timer->active());
}

TEST(Timer, StartReplacesThePendingCallback) {
  TestLoop loop;
  std::string which;
  auto timer = Timer::create(*loop);
  timer->start(milliseconds(1), [&] { which += "first"; });
  timer->start(milliseconds(1), [&] {
    which += "second";
    loop->stop();
  });
  loop.run();
  EXPECT_EQ(which, "second");
}

TEST(Timer, RestartFromInsideItsOwnCallback) {
  TestLoop loop;
  int fired = 0;
  auto timer = Timer::create(*loop);
  std::function<void()> tick = [&] {
    if (++fired < 3) {
      timer->start(milliseconds(0), tick);
    } else {
      loop->stop();
    }
  };
  timer->start(milliseconds(0), tick);
  loop.run();
  EXPECT_EQ(fired, 3);
}

TEST(Timer, DestroyedTimerNeverFires) {
  TestLoop loop;
  bool fired = false;
  auto timer = Timer::create(*loop);
  timer->start(milliseconds(0), [&] { fired = true; });
  timer.reset();
  auto later = Timer::create(*loop);
  later->start(milliseconds(10), [&] { loop->stop(); });
  loop.run();
  EXPECT_FALSE(fired);
}

TEST(Timer, DestroyingItselfInsideItsCallbackIsSafe) {
  TestLoop loop;
  auto timer = Timer::create(*loop);
  int fired = 0;
  timer->startRepeating(milliseconds(1), [&] {
    ++fired;
    timer.reset(); // destroys the Timer whose callback is running
    loop->defer([&] { loop->stop(); });
  });
  loop.run();
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(timer, nullptr);
}

TEST(Timer, OutlivingItsLoopIsSafeAndInert) {
  TimerPtr timer;
  {
    TestLoop loop;
    timer = Timer::create(*loop);
    timer->start(milliseconds(100000), [] { ADD_FAILURE() << "must not fire"; });
    loop->defer([&] { loop->stop(); });
    loop.run();
  }
  EXPECT_FALSE(timer->active());
  timer->start(milliseconds(0), [] {}); // inert: nothing happens, nothing crashes
  timer.reset();
}

} // namespace
} // namespace mailgate::net

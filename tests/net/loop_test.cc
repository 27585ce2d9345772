#include "net/loop.h"
#include "test_util.h"

#include <atomic>
#include <csignal>
#include <gtest/gtest.h>
#include <thread>
#include <vector>

namespace mailgate::net {
namespace {

using test::TestLoop;

TEST(Loop, DeferRunsInALaterTurnInFifoOrderNeverInline) {
  TestLoop loop;
  std::vector<std::string> order;
  loop->defer([&] {
    order.push_back("a");
    loop->defer([&] {
      order.push_back("c");
      loop->stop();
    });
    order.push_back("a-end"); // the nested defer did not run inline
  });
  loop->defer([&] { order.push_back("b"); });
  EXPECT_TRUE(order.empty());
  loop.run();
  EXPECT_EQ(order, (std::vector<std::string>{"a", "a-end", "b", "c"}));
}

TEST(Loop, BeforePollRunsLateInTheSameTurn) {
  TestLoop loop;
  std::vector<std::string> order;
  loop->defer([&] {
    loop->defer([&] {
      order.push_back("next-turn");
      loop->stop();
    });
    loop->beforePoll([&] {
      order.push_back("hook");
      loop->beforePoll([&] { order.push_back("hook-from-hook"); });
    });
    order.push_back("deferred");
  });
  loop.run();
  EXPECT_EQ(order, (std::vector<std::string>{"deferred", "hook", "hook-from-hook", "next-turn"}));
}

TEST(Loop, PostFromManyThreadsRunsEverythingOnTheLoopThreadInPerThreadOrder) {
  TestLoop loop;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::thread::id loop_thread;
  loop->defer([&] { loop_thread = std::this_thread::get_id(); });
  std::vector<int> last(kThreads, -1);
  int total = 0;
  bool wrong_thread = false;
  bool out_of_order = false;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        loop->post([&, t, i] {
          wrong_thread =
              wrong_thread || std::this_thread::get_id() != loop_thread || !loop->inLoopThread();
          out_of_order = out_of_order || last[static_cast<size_t>(t)] != i - 1;
          last[static_cast<size_t>(t)] = i;
          if (++total == kThreads * kPerThread) {
            loop->stop();
          }
        });
      }
    });
  }
  loop.run();
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(total, kThreads * kPerThread);
  EXPECT_FALSE(wrong_thread);
  EXPECT_FALSE(out_of_order);
}

TEST(Loop, StopFromAnotherThreadEndsRun) {
  TestLoop loop;
  bool ran = false;
  std::thread other([&] {
    loop->post([&] { ran = true; });
    loop->stop();
  });
  loop.run();
  other.join();
  EXPECT_TRUE(ran); // posted before stop(): still runs
  EXPECT_FALSE(loop.timedOut());
}

TEST(Loop, PostAndDeferAfterTheLoopEndedAreDropped) {
  TestLoop loop;
  loop->defer([&] { loop->stop(); });
  loop.run();
  bool ran = false;
  loop->post([&] { ran = true; });
  loop->defer([&] { ran = true; });
  loop.run(); // a finished loop returns at once
  EXPECT_FALSE(ran);
}

TEST(Loop, PendingDeferredWorkIsDroppedAtStop) {
  TestLoop loop;
  bool ran = false;
  loop->defer([&] {
    loop->stop();
    // Runs only if the loop turned once more, which it must not.
    loop->defer([&] { loop->defer([&] { ran = true; }); });
  });
  loop.run();
  EXPECT_FALSE(ran);
}

TEST(Loop, SignalHandlerRunsOnTheLoop) {
  TestLoop loop;
  int calls = 0;
  ASSERT_TRUE(loop->onSignal(SIGUSR1, [&] { calls = -1; }));
  // A second registration replaces the first.
  ASSERT_TRUE(loop->onSignal(SIGUSR1, [&] {
    ++calls;
    EXPECT_TRUE(loop->inLoopThread());
    loop->stop();
  }));
  loop->defer([] { std::raise(SIGUSR1); });
  loop.run();
  EXPECT_EQ(calls, 1);
}

TEST(Loop, SignalThatCannotBeWatchedIsAnError) {
  TestLoop loop;
  auto result = loop->onSignal(SIGKILL, [] {});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, "net.signal");
}

TEST(Loop, NowIsMonotonic) {
  TestLoop loop;
  const uint64_t start = loop->nowMs();
  uint64_t later = 0;
  auto timer = Timer::create(*loop);
  timer->start(std::chrono::milliseconds(2), [&] {
    later = loop->nowMs();
    loop->stop();
  });
  loop.run();
  EXPECT_GE(later, start);
}

} // namespace
} // namespace mailgate::net

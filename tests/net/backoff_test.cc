#include "net/backoff.h"

#include <gtest/gtest.h>
#include <vector>

namespace mailgate::net {
namespace {

using std::chrono::milliseconds;

TEST(Backoff, StaysWithinJitterBoundsAndCapsAtMax) {
  Backoff backoff({.initial = milliseconds(100),
                   .max = milliseconds(5000),
                   .factor = 2.0,
                   .jitter = 0.25,
                   .seed = 42});
  double base = 100;
  for (int i = 0; i < 20; ++i) {
    const auto d = backoff.next().count();
    EXPECT_GE(d, static_cast<int64_t>(base * 0.75) - 1) << "attempt " << i;
    EXPECT_LE(d, static_cast<int64_t>(std::min(base * 1.25, 5000.0))) << "attempt " << i;
    base = std::min(base * 2, 5000.0);
  }
  EXPECT_EQ(backoff.attempts(), 20u);
}

TEST(Backoff, JitterSpreadsBothSidesOfTheBase) {
  // At the cap, the base stays at max; jitter then only goes down. Below the cap it goes both ways.
  Backoff backoff({.initial = milliseconds(1000),
                   .max = milliseconds(100000),
                   .factor = 1.0,
                   .jitter = 0.5,
                   .seed = 7});
  int64_t lo = INT64_MAX;
  int64_t hi = 0;
  for (int i = 0; i < 1000; ++i) {
    const auto d = backoff.next().count();
    ASSERT_GE(d, 500);
    ASSERT_LE(d, 1500);
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  EXPECT_LT(lo, 600);
  EXPECT_GT(hi, 1400);
}

TEST(Backoff, NoJitterIsExactExponential) {
  Backoff backoff({.initial = milliseconds(10),
                   .max = milliseconds(75),
                   .factor = 2.0,
                   .jitter = 0.0,
                   .seed = 1});
  std::vector<int64_t> got;
  for (int i = 0; i < 6; ++i) {
    got.push_back(backoff.next().count());
  }
  EXPECT_EQ(got, (std::vector<int64_t>{10, 20, 40, 75, 75, 75}));
}

TEST(Backoff, SameSeedSameSequenceAndResetStartsOver) {
  BackoffOptions options{.initial = milliseconds(50),
                         .max = milliseconds(10000),
                         .factor = 1.5,
                         .jitter = 0.3,
                         .seed = 99};
  Backoff a(options);
  Backoff b(options);
  std::vector<int64_t> first;
  for (int i = 0; i < 10; ++i) {
    const auto x = a.next().count();
    EXPECT_EQ(x, b.next().count());
    first.push_back(x);
  }
  options.seed = 100;
  Backoff c(options);
  bool differs = false;
  for (int i = 0; i < 10; ++i) {
    differs = differs || c.next().count() != first[static_cast<size_t>(i)];
  }
  EXPECT_TRUE(differs);

  a.reset();
  EXPECT_EQ(a.attempts(), 0u);
  const auto after_reset = a.next().count();
  EXPECT_GE(after_reset, 35); // back at the initial 50 ms +-30%
  EXPECT_LE(after_reset, 65);
}

TEST(Backoff, NonsenseOptionsAreClamped) {
  Backoff backoff({.initial = milliseconds(500),
                   .max = milliseconds(100),
                   .factor = 0.1,
                   .jitter = 7.0,
                   .seed = 3});
  for (int i = 0; i < 50; ++i) {
    const auto d = backoff.next().count();
    EXPECT_GE(d, 0);
    EXPECT_LE(d, 100);
  }
}

} // namespace
} // namespace mailgate::net

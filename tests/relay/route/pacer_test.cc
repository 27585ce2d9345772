// Messages per minute: at most `per_minute` starts in ANY 60-second span, however the caller
// drives the pacer. Starts are simulated with passed-in times; nothing sleeps.
#include "relay/route/ledger.h"

#include <cstdint>
#include <gtest/gtest.h>
#include <limits>
#include <vector>

namespace mailgate::relay::route {
namespace {

constexpr int64_t kT0 = 1'795'392'000'000; // 2026-11-23T00:00:00Z
constexpr int64_t kMinuteMs = 60'000;

// The most starts found in any half-open span [t, t + 60 s). The busiest span can always be
// slid right until it begins at a start, so checking the spans that begin at each start covers
// every span.
size_t busiestMinute(const std::vector<int64_t>& starts) {
  size_t most = 0;
  size_t j = 0;
  for (size_t i = 0; i < starts.size(); ++i) {
    j = std::max(j, i);
    while (j < starts.size() && starts[j] < starts[i] + kMinuteMs) {
      ++j;
    }
    most = std::max(most, j - i);
  }
  return most;
}

// Deterministic pseudo-random delays, so a failure reproduces.
class Jitter {
public:
  uint64_t next(uint64_t bound) {
    state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
    return bound == 0 ? 0 : (state_ >> 33) % bound;
  }

private:
  uint64_t state_ = 42;
};

const uint32_t kRates[] = {1, 2, 7, 29, 30, 31, 59, 60, 61, 997, 1000, 7000, 60'000'000};

TEST(Pacer, StartsExactlyWhenAllowedNeverExceedTheRateAndReachIt) {
  for (uint32_t per_minute : kRates) {
    SCOPED_TRACE(per_minute);
    Pacer pacer(per_minute);
    std::vector<int64_t> starts;
    int64_t t = kT0;
    while (t < kT0 + 5 * kMinuteMs && starts.size() < 100'000) {
      t = pacer.nextAt(t);
      starts.push_back(t);
      pacer.take(t);
    }
    if (per_minute <= 100'000) {
      // Rounding to milliseconds costs nothing: the full rate is reached, never more.
      EXPECT_EQ(busiestMinute(starts), per_minute);
    } else {
      EXPECT_LE(busiestMinute(starts), per_minute);
    }
  }
}

TEST(Pacer, JitteredCallersWithIdlePeriodsNeverExceedTheRate) {
  Jitter jitter;
  for (uint32_t per_minute : kRates) {
    SCOPED_TRACE(per_minute);
    Pacer pacer(per_minute);
    std::vector<int64_t> starts;
    int64_t t = kT0;
    for (int i = 0; i < 5'000; ++i) {
      switch (jitter.next(4)) {
      case 0: // idle a while, then try to burst
        t += static_cast<int64_t>(jitter.next(3 * kMinuteMs));
        break;
      case 1: // a little late
        t = pacer.nextAt(t) + static_cast<int64_t>(jitter.next(500));
        break;
      default: // right on time
        t = pacer.nextAt(t);
        break;
      }
      if (pacer.nextAt(t) <= t) {
        starts.push_back(t);
        pacer.take(t);
      }
    }
    EXPECT_LE(busiestMinute(starts), per_minute);
    EXPECT_GT(starts.size(), 1'000u);
  }
}

TEST(Pacer, AnEagerPollerNeverExceedsTheRate) {
  for (uint32_t per_minute : {30u, 7u, 1000u}) {
    SCOPED_TRACE(per_minute);
    Pacer pacer(per_minute);
    std::vector<int64_t> starts;
    for (int64_t t = kT0; t < kT0 + 10 * kMinuteMs; t += 7) {
      if (pacer.nextAt(t) <= t) {
        starts.push_back(t);
        pacer.take(t);
      }
    }
    EXPECT_LE(busiestMinute(starts), per_minute);
    EXPECT_GE(busiestMinute(starts), per_minute - per_minute / 10);
  }
}

TEST(Pacer, NoBurstAfterIdling) {
  Pacer pacer(30);
  EXPECT_EQ(pacer.nextAt(kT0), kT0); // the first start is at once
  pacer.take(kT0);
  EXPECT_EQ(pacer.nextAt(kT0), kT0 + 2000);
  const int64_t later = kT0 + 3'600'000; // an idle hour saves nothing up
  EXPECT_EQ(pacer.nextAt(later), later);
  pacer.take(later);
  EXPECT_EQ(pacer.nextAt(later), later + 2000);
  EXPECT_EQ(pacer.nextAt(later + 1999), later + 2000);
  EXPECT_EQ(pacer.nextAt(later + 2000), later + 2000);
}

TEST(Pacer, ANewRateSpacesTheNextStartFromTheLastOne) {
  Pacer slower(60); // one a second
  slower.take(kT0);
  EXPECT_EQ(slower.nextAt(kT0), kT0 + 1000);
  slower.setRate(2); // one every 30 s
  EXPECT_EQ(slower.nextAt(kT0), kT0 + 30'000);
  Pacer faster(2);
  faster.take(kT0);
  faster.setRate(60);
  EXPECT_EQ(faster.nextAt(kT0 + 10), kT0 + 1000);
  Pacer idle(2);
  idle.setRate(1);
  EXPECT_EQ(idle.nextAt(kT0), kT0); // nothing started yet: now
  Pacer none(0);
  none.setRate(30);
  EXPECT_EQ(none.nextAt(kT0), kT0);
  none.setRate(0);
  EXPECT_EQ(none.nextAt(kT0), std::numeric_limits<int64_t>::max());
}

TEST(Pacer, ZeroAllowsNothingAndExtremesSaturate) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  Pacer none(0);
  EXPECT_EQ(none.nextAt(kT0), kMax);
  none.take(kT0);
  EXPECT_EQ(none.nextAt(kT0), kMax);
  Pacer pacer(30);
  pacer.take(kMax);
  EXPECT_EQ(pacer.nextAt(kMax - 5), kMax);
  pacer.take(kMax);
  EXPECT_EQ(pacer.nextAt(0), kMax);
}

TEST(Pacer, ThroughTheLedgerEveryMinuteSpanHoldsAtMost30Starts) {
  LedgerLimits limits;
  limits.messages_per_minute = 30;
  Ledger ledger("m365:rep1@acme.example", limits);
  Jitter jitter;
  std::vector<int64_t> starts;
  int64_t t = kT0;
  while (starts.size() < 3'000) {
    const LedgerCheck c = ledger.check(t, 1, 100, Priority::kBulk);
    if (c.verdict == Verdict::kSend) {
      ledger.charge(t, 1);
      starts.push_back(t);
      t += static_cast<int64_t>(jitter.next(1500)); // the next message shows up soon
    } else {
      ASSERT_EQ(c.verdict, Verdict::kWait);
      ASSERT_GT(c.until_ms, t);
      t = c.until_ms + static_cast<int64_t>(jitter.next(3) == 0 ? jitter.next(200) : 0);
    }
  }
  EXPECT_LE(busiestMinute(starts), 30u);
  EXPECT_GE(busiestMinute(starts), 28u);
}

} // namespace
} // namespace mailgate::relay::route

#include "relay/queue/retry_policy.h"

#include <cstdint>
#include <gtest/gtest.h>
#include <limits>
#include <set>
#include <string>

namespace mailgate::relay {
namespace {

constexpr int64_t kMin = 60'000;
constexpr int64_t kT0 = 1'790'000'000'000;

TEST(RetryPolicyTest, DefaultScheduleDoublesFromFiveMinutesToAnHour) {
  const RetryPolicy p;
  EXPECT_EQ(p.delayMs(1), 5 * kMin);
  EXPECT_EQ(p.delayMs(2), 10 * kMin);
  EXPECT_EQ(p.delayMs(3), 20 * kMin);
  EXPECT_EQ(p.delayMs(4), 40 * kMin);
  EXPECT_EQ(p.delayMs(5), 60 * kMin);
  EXPECT_EQ(p.delayMs(6), 60 * kMin);
  EXPECT_EQ(p.nextAttempt(1, kT0), kT0 + 5 * kMin);
  EXPECT_EQ(p.nextAttempt(3, kT0, "any key"), kT0 + 20 * kMin); // no jitter by default
}

TEST(RetryPolicyTest, AttemptsBelowOneCountAsTheFirst) {
  const RetryPolicy p;
  EXPECT_EQ(p.delayMs(0), 5 * kMin);
  EXPECT_EQ(p.delayMs(-7), 5 * kMin);
}

TEST(RetryPolicyTest, HugeAttemptCountsStayAtTheCap) {
  const RetryPolicy p;
  EXPECT_EQ(p.delayMs(std::numeric_limits<int>::max()), 60 * kMin);
  RetryOptions o;
  o.multiplier = 1e300;
  o.max_delay_ms = std::numeric_limits<int64_t>::max();
  const RetryPolicy wide(o);
  EXPECT_GT(wide.delayMs(1000), 0);
  // Far-future times saturate instead of wrapping to the past.
  EXPECT_EQ(wide.nextAttempt(1000, std::numeric_limits<int64_t>::max() - 1),
            std::numeric_limits<int64_t>::max());
}

TEST(RetryPolicyTest, ConfigurableSchedule) {
  RetryOptions o;
  o.initial_delay_ms = 1000;
  o.multiplier = 3.0;
  o.max_delay_ms = 20'000;
  const RetryPolicy p(o);
  EXPECT_EQ(p.delayMs(1), 1000);
  EXPECT_EQ(p.delayMs(2), 3000);
  EXPECT_EQ(p.delayMs(3), 9000);
  EXPECT_EQ(p.delayMs(4), 20'000);
}

TEST(RetryPolicyTest, LifetimeDefaultsToFiveDays) {
  const RetryPolicy p;
  const int64_t five_days = 5LL * 24 * 60 * kMin;
  EXPECT_EQ(p.expiresAt(kT0), kT0 + five_days);
  EXPECT_FALSE(p.expired(kT0, kT0 + five_days - 1));
  EXPECT_TRUE(p.expired(kT0, kT0 + five_days));
  EXPECT_TRUE(p.expired(kT0, kT0 + five_days + 1));
  RetryOptions o;
  o.lifetime_ms = 1000;
  EXPECT_TRUE(RetryPolicy(o).expired(kT0, kT0 + 1000));
}

TEST(RetryPolicyTest, JitterIsDeterministicBoundedAndSpreadsMessages) {
  RetryOptions o;
  o.jitter_fraction = 0.5;
  o.jitter_seed = 7;
  const RetryPolicy p(o);
  std::set<int64_t> times;
  for (int i = 0; i < 200; ++i) {
    const std::string key = "msg-" + std::to_string(i);
    const int64_t t = p.nextAttempt(2, kT0, key);
    EXPECT_EQ(t, p.nextAttempt(2, kT0, key));              // same inputs, same time
    EXPECT_EQ(t, RetryPolicy(o).nextAttempt(2, kT0, key)); // and across instances
    EXPECT_LE(t, kT0 + 10 * kMin);
    EXPECT_GE(t, kT0 + 5 * kMin); // at most half of the 10 minutes taken off
    times.insert(t);
  }
  EXPECT_GT(times.size(), 150u); // 200 messages do not retry in one burst

  RetryOptions other = o;
  other.jitter_seed = 8;
  int differing = 0;
  for (int i = 0; i < 20; ++i) {
    const std::string key = "msg-" + std::to_string(i);
    differing += p.nextAttempt(2, kT0, key) != RetryPolicy(other).nextAttempt(2, kT0, key);
  }
  EXPECT_GT(differing, 15);
}

TEST(RetryPolicyTest, ValidateNamesTheProblem) {
  EXPECT_TRUE(RetryPolicy::validate(RetryOptions{}).has_value());
  auto bad = [](auto change) {
    RetryOptions o;
    change(o);
    auto r = RetryPolicy::validate(o);
    EXPECT_FALSE(r.has_value());
    return r ? std::string() : r.error().code;
  };
  EXPECT_EQ(bad([](RetryOptions& o) { o.initial_delay_ms = 0; }), "config.retry");
  EXPECT_EQ(bad([](RetryOptions& o) { o.max_delay_ms = 1; }), "config.retry");
  EXPECT_EQ(bad([](RetryOptions& o) { o.multiplier = 0.5; }), "config.retry");
  EXPECT_EQ(bad([](RetryOptions& o) { o.multiplier = std::numeric_limits<double>::quiet_NaN(); }),
            "config.retry");
  EXPECT_EQ(bad([](RetryOptions& o) { o.lifetime_ms = 0; }), "config.retry");
  EXPECT_EQ(bad([](RetryOptions& o) { o.jitter_fraction = 1.5; }), "config.retry");
}

TEST(RetryPolicyTest, InvalidOptionsAreClampedNotTrusted) {
  RetryOptions o;
  o.initial_delay_ms = -5;
  o.max_delay_ms = -10;
  o.multiplier = std::numeric_limits<double>::quiet_NaN();
  const RetryPolicy p(o);
  EXPECT_GE(p.delayMs(1), 1);
  EXPECT_GE(p.nextAttempt(3, kT0), kT0 + 1);
}

} // namespace
} // namespace mailgate::relay

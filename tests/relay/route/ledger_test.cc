// The rolling-window ledger: budgets, reserve, refunds, restore, exhaustion, memory bounds.
// Every time is passed in; nothing here reads a clock.
#include "relay/route/ledger.h"

#include <chrono>
#include <cstdint>
#include <gtest/gtest.h>
#include <limits>
#include <map>
#include <string>

namespace mailgate::relay::route {
namespace {

using namespace std::chrono_literals;

constexpr int64_t kDayMs = 24 * 3600 * 1000;
constexpr int64_t kWidthMs = kDayMs / 240; // 6 min for a 24 h window
// 2026-11-23T00:00:00Z, a multiple of the 24 h bucket width.
constexpr int64_t kT0 = 1'795'392'000'000;
static_assert(kT0 % kWidthMs == 0);

LedgerLimits dayLimit(uint32_t recipients) {
  LedgerLimits l;
  l.recipients_per_window = recipients;
  l.window = 24h;
  return l;
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

TEST(BucketWidth, IsAWindowOver240ButAtLeastOneSecond) {
  EXPECT_EQ(bucketWidth(24h), 6min);
  EXPECT_EQ(bucketWidth(std::chrono::hours(24 * 31)), std::chrono::milliseconds(11'160'000));
  EXPECT_EQ(bucketWidth(240s), 1s);
  EXPECT_EQ(bucketWidth(60s), 1s);
  EXPECT_EQ(bucketWidth(0ms), 1s);
  EXPECT_EQ(bucketWidth(241s), std::chrono::milliseconds(1004));
}

TEST(RollingWindow, BucketOfRoundsDown) {
  RollingWindow w(24h);
  EXPECT_EQ(w.bucketOf(kT0), kT0);
  EXPECT_EQ(w.bucketOf(kT0 + kWidthMs - 1), kT0);
  EXPECT_EQ(w.bucketOf(kT0 + kWidthMs), kT0 + kWidthMs);
  EXPECT_EQ(w.bucketOf(0), 0);
  EXPECT_EQ(w.bucketOf(-1), -kWidthMs);
  EXPECT_EQ(w.bucketOf(-kWidthMs), -kWidthMs);
}

TEST(RollingWindow, ASendIsCountedUntilItsWholeBucketHasLeftTheWindow) {
  RollingWindow w(24h);
  const int64_t sent = kT0 + 100'000; // inside the bucket [kT0, kT0 + 6 min)
  w.add(w.bucketOf(sent), 7, sent);
  const int64_t frees = kT0 + kWidthMs + kDayMs;
  EXPECT_EQ(w.used(sent), 7u);
  EXPECT_EQ(w.used(sent + kDayMs), 7u); // the exact rolling window would free it here
  EXPECT_EQ(w.used(frees - 1), 7u);
  EXPECT_EQ(w.used(frees), 0u);
  EXPECT_EQ(w.oldestFreesAt(sent), frees);
  EXPECT_EQ(w.oldestFreesAt(frees - 1), frees);
  EXPECT_EQ(w.oldestFreesAt(frees), std::nullopt);
  // Never earlier than the exact window, at most one bucket width later.
  EXPECT_GE(frees, sent + kDayMs);
  EXPECT_LE(frees, sent + kDayMs + kWidthMs);
}

TEST(RollingWindow, FitsAtFindsTheFirstBucketEndThatFreesEnough) {
  RollingWindow w(24h);
  w.add(kT0, 4, kT0);
  w.add(kT0 + kWidthMs, 3, kT0 + kWidthMs);
  w.add(kT0 + 2 * kWidthMs, 3, kT0 + 2 * kWidthMs);
  const int64_t now = kT0 + 3 * kWidthMs;
  EXPECT_EQ(w.used(now), 10u);
  EXPECT_EQ(w.fitsAt(now, 10, 0), now);
  EXPECT_EQ(w.fitsAt(now, 12, 2), now);
  EXPECT_EQ(w.fitsAt(now, 10, 4), kT0 + kWidthMs + kDayMs);     // the first bucket frees 4
  EXPECT_EQ(w.fitsAt(now, 10, 5), kT0 + 2 * kWidthMs + kDayMs); // 4 + 3 free
  EXPECT_EQ(w.fitsAt(now, 10, 10), kT0 + 3 * kWidthMs + kDayMs);
  EXPECT_EQ(w.fitsAt(now, 10, 11), std::nullopt);
  // Later, the first bucket has gone without a prune.
  EXPECT_EQ(w.fitsAt(kT0 + kWidthMs + kDayMs, 10, 4), kT0 + kWidthMs + kDayMs);
}

TEST(RollingWindow, GivingBackNeverGoesBelowZero) {
  RollingWindow w(24h);
  w.add(kT0, 5, kT0);
  w.add(kT0, -3, kT0);
  EXPECT_EQ(w.used(kT0), 2u);
  w.add(kT0, -10, kT0);
  EXPECT_EQ(w.used(kT0), 0u);
  EXPECT_EQ(w.bucketCount(), 0u);
  EXPECT_EQ(w.oldestFreesAt(kT0), std::nullopt);
  w.add(kT0 + kWidthMs, -4, kT0 + kWidthMs); // nothing there to give back
  EXPECT_EQ(w.used(kT0 + kWidthMs), 0u);
  EXPECT_EQ(w.bucketCount(), 0u);
}

TEST(RollingWindow, RestoreInAnyOrderIgnoresBucketsOutsideTheWindow) {
  RollingWindow w(24h);
  const int64_t now = kT0 + kDayMs;
  w.add(kT0 + 200 * kWidthMs, 20, now);
  w.add(kT0 + 5 * kWidthMs, 5, now);
  w.add(kT0 - kWidthMs, 100, now); // left the window at kT0 + kDayMs: ignored
  w.add(kT0 + 100 * kWidthMs, 10, now);
  w.add(kT0 + 5 * kWidthMs + 1234, 1, now); // not a bucket start: rounded down into the same
  EXPECT_EQ(w.used(now), 36u);
  EXPECT_EQ(w.bucketCount(), 3u);
  EXPECT_EQ(w.oldestFreesAt(now), kT0 + 6 * kWidthMs + kDayMs);
  EXPECT_EQ(w.used(kT0 + 6 * kWidthMs + kDayMs), 30u);
}

TEST(RollingWindow, PruneDropsOnlyBucketsThatLeft) {
  RollingWindow w(24h);
  for (int i = 0; i < 10; ++i) {
    w.add(kT0 + i * kWidthMs, 1, kT0 + i * kWidthMs);
  }
  w.prune(kT0 + 4 * kWidthMs + kDayMs); // buckets 0..3 have left
  EXPECT_EQ(w.bucketCount(), 6u);
  EXPECT_EQ(w.used(kT0 + 4 * kWidthMs + kDayMs), 6u);
}

TEST(RollingWindow, AFullWindowHoldsAtMost241Buckets) {
  for (const auto window :
       {std::chrono::milliseconds(24h), std::chrono::milliseconds(241s),
        std::chrono::milliseconds(60s), std::chrono::milliseconds(86'399'999)}) {
    SCOPED_TRACE(window.count());
    RollingWindow w(window);
    const int64_t width = bucketWidth(window).count();
    size_t most = 0;
    // A send every 700 ms over three windows: every bucket gets something.
    const int64_t step = std::max<int64_t>(700, width / 3);
    for (int64_t t = kT0; t < kT0 + 3 * (window.count() + width); t += step) {
      w.add(w.bucketOf(t), 1, t);
      most = std::max(most, w.bucketCount());
      ASSERT_LE(w.bucketCount(), RollingWindow::kMaxBuckets);
    }
    EXPECT_GE(most, window.count() / width); // it did fill up
  }
}

TEST(RollingWindow, BucketsAheadOfAClockThatWentBackStayBoundedAndCounted) {
  RollingWindow w(24h);
  for (int i = 0; i < 400; ++i) {
    w.add(kT0 + i * kWidthMs, 1, kT0); // all "in the future" of kT0
    ASSERT_LE(w.bucketCount(), RollingWindow::kMaxBuckets);
  }
  EXPECT_EQ(w.used(kT0), 400u);
}

TEST(RollingWindow, ExtremeValuesSaturate) {
  RollingWindow w(std::chrono::hours(24 * 31));
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  w.add(w.bucketOf(kMax), kMax, kMax - 1);
  w.add(w.bucketOf(kMax), kMax, kMax - 1);
  w.add(w.bucketOf(kMax), kMax, kMax - 1);
  EXPECT_EQ(w.used(kMax - 1), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(w.fitsAt(kMax - 1, 10, 1), kMax);
  w.add(w.bucketOf(kMax), kMin, kMax - 1); // gives back 2^63, leaves 2^63 - 1
  EXPECT_EQ(w.used(kMax - 1), uint64_t{kMax});
  RollingWindow early(std::chrono::hours(24 * 31));
  early.add(early.bucketOf(kMin), 3, kMin);
  early.add(early.bucketOf(kMin + 1), 4, kMin + 1);
  EXPECT_EQ(early.used(kMin), 7u);
  EXPECT_EQ(early.bucketOf(kMin), early.bucketOf(kMin + 1));
}

TEST(Ledger, ChargeReturnsWhatToPersist) {
  Ledger ledger("m365:rep1@acme.example", dayLimit(10'000));
  const LedgerCharge c = ledger.charge(kT0 + 90'000, 12);
  EXPECT_EQ(c.key, "m365:rep1@acme.example");
  EXPECT_EQ(c.bucket_ms, kT0);
  EXPECT_EQ(c.count, 12);
  EXPECT_EQ(ledger.usage(kT0 + 90'000).used, 12u);
}

TEST(Ledger, WindowBudgetFreesAtTheBucketBoundary) {
  Ledger ledger("m365:rep1@acme.example", dayLimit(10'000));
  ledger.charge(kT0 + 1000, 9'000);
  ledger.charge(kT0 + kWidthMs + 1000, 1'000);
  const int64_t now = kT0 + 2 * kWidthMs;
  const LedgerCheck full = ledger.check(now, 1, 1000, Priority::kPersonal);
  EXPECT_EQ(full.verdict, Verdict::kOverBudget);
  EXPECT_EQ(full.until_ms, kT0 + kWidthMs + kDayMs);
  EXPECT_TRUE(contains(full.reason, "10,000 of 10,000 recipients used in the last 24 h"))
      << full.reason;
  EXPECT_EQ(ledger.check(full.until_ms - 1, 1, 1000, Priority::kPersonal).verdict,
            Verdict::kOverBudget);
  EXPECT_EQ(ledger.check(full.until_ms, 9'000, 1000, Priority::kPersonal).verdict, Verdict::kSend);
  // 9,001 need the second bucket gone too.
  const LedgerCheck big = ledger.check(now, 9'001, 1000, Priority::kPersonal);
  EXPECT_EQ(big.verdict, Verdict::kOverBudget);
  EXPECT_EQ(big.until_ms, kT0 + 2 * kWidthMs + kDayMs);
}

TEST(Ledger, RestoreRebuildsTheWindow) {
  Ledger before("relay:default", dayLimit(100));
  std::vector<LedgerCharge> stored;
  for (int i = 0; i < 5; ++i) {
    stored.push_back(before.charge(kT0 + i * kWidthMs * 10, 20));
  }
  stored.push_back(before.refund(stored[2], 5, kT0 + 50 * kWidthMs));
  const int64_t now = kT0 + 50 * kWidthMs;
  // The store hands back one positive sum per bucket (RoutingSnapshot), in no particular order.
  std::map<int64_t, int64_t> sums;
  for (const LedgerCharge& c : stored) {
    sums[c.bucket_ms] += c.count;
  }
  Ledger after("relay:default", dayLimit(100));
  for (auto it = sums.rbegin(); it != sums.rend(); ++it) {
    after.restore(it->first, it->second, now);
  }
  EXPECT_EQ(after.usage(now).used, 95u);
  EXPECT_EQ(after.usage(now).used, before.usage(now).used);
  const LedgerCheck a = after.check(now, 10, 0, Priority::kPersonal);
  const LedgerCheck b = before.check(now, 10, 0, Priority::kPersonal);
  EXPECT_EQ(a.verdict, Verdict::kOverBudget);
  EXPECT_EQ(a.verdict, b.verdict);
  EXPECT_EQ(a.until_ms, b.until_ms);
  EXPECT_EQ(a.until_ms, kT0 + kWidthMs + kDayMs); // the first bucket's 20 must go
}

TEST(Ledger, RefundGivesRecipientsBack) {
  Ledger ledger("m365:rep1@acme.example", dayLimit(10));
  const LedgerCharge c = ledger.charge(kT0, 10);
  EXPECT_EQ(ledger.check(kT0 + 1, 1, 0, Priority::kPersonal).verdict, Verdict::kOverBudget);
  const LedgerCharge r = ledger.refund(c, 4, kT0 + kWidthMs * 3);
  EXPECT_EQ(r.key, c.key);
  EXPECT_EQ(r.bucket_ms, c.bucket_ms);
  EXPECT_EQ(r.count, -4);
  EXPECT_EQ(ledger.usage(kT0 + kWidthMs * 3).used, 6u);
  EXPECT_EQ(ledger.check(kT0 + kWidthMs * 3, 4, 0, Priority::kPersonal).verdict, Verdict::kSend);
  // Never more than the charge took.
  const LedgerCharge too_much = ledger.refund(c, 50, kT0 + kWidthMs * 3);
  EXPECT_EQ(too_much.count, -10);
  EXPECT_EQ(ledger.usage(kT0 + kWidthMs * 3).used, 0u);
  // A refund after the bucket left the window changes nothing.
  const LedgerCharge c2 = ledger.charge(kT0 + kWidthMs * 3, 3);
  const int64_t later = kT0 + kWidthMs * 4 + kDayMs;
  ledger.charge(later, 5);
  ledger.refund(c2, 3, later);
  EXPECT_EQ(ledger.usage(later).used, 5u);
}

TEST(Ledger, ReserveKeepsAShareForPersonalMail) {
  LedgerLimits limits = dayLimit(100);
  limits.reserve_percent = 10;
  Ledger ledger("m365:rep1@acme.example", limits);
  EXPECT_EQ(ledger.budgetFor(Priority::kBulk), 90u);
  EXPECT_EQ(ledger.budgetFor(Priority::kPersonal), 100u);
  ledger.charge(kT0, 90);
  const LedgerCheck bulk = ledger.check(kT0 + 1, 1, 0, Priority::kBulk);
  EXPECT_EQ(bulk.verdict, Verdict::kOverBudget);
  EXPECT_EQ(bulk.until_ms, kT0 + kWidthMs + kDayMs);
  EXPECT_TRUE(contains(bulk.reason, "90 of 90 recipients for bulk mail")) << bulk.reason;
  EXPECT_EQ(ledger.check(kT0 + 1, 10, 0, Priority::kPersonal).verdict, Verdict::kSend);
  ledger.charge(kT0 + 1, 10);
  EXPECT_EQ(ledger.check(kT0 + 2, 1, 0, Priority::kPersonal).verdict, Verdict::kOverBudget);
}

TEST(Ledger, ReserveRoundsTheBulkBudgetDown) {
  const auto bulk = [](uint32_t limit, uint32_t reserve) {
    LedgerLimits l = dayLimit(limit);
    l.reserve_percent = reserve;
    return Ledger("k", l).budgetFor(Priority::kBulk);
  };
  EXPECT_EQ(bulk(10'001, 10), 9'000u); // 9,000.9
  EXPECT_EQ(bulk(10'000, 0), 10'000u);
  EXPECT_EQ(bulk(10'000, 100), 0u);
  EXPECT_EQ(bulk(10'000, 250), 0u); // out of range: treated as 100
  EXPECT_EQ(bulk(1, 1), 0u);
  EXPECT_EQ(bulk(UINT32_MAX, 33), uint64_t{UINT32_MAX} * 67 / 100);
  EXPECT_EQ(bulk(UINT32_MAX, 0), uint64_t{UINT32_MAX});
  EXPECT_EQ(Ledger("k", LedgerLimits{}).budgetFor(Priority::kBulk), std::nullopt);
}

TEST(Ledger, MoreRecipientsThanTheWholeBudgetNeverFit) {
  LedgerLimits limits = dayLimit(100);
  limits.reserve_percent = 100;
  Ledger ledger("k", limits);
  const LedgerCheck bulk = ledger.check(kT0, 1, 0, Priority::kBulk);
  EXPECT_EQ(bulk.verdict, Verdict::kTooManyRecipients);
  EXPECT_FALSE(bulk.reason.empty());
  EXPECT_EQ(ledger.check(kT0, 101, 0, Priority::kPersonal).verdict, Verdict::kTooManyRecipients);
  EXPECT_EQ(ledger.check(kT0, 100, 0, Priority::kPersonal).verdict, Verdict::kSend);
}

TEST(Ledger, TooManyRecipientsPerMessage) {
  LedgerLimits limits = dayLimit(10'000);
  limits.recipients_per_message = 500;
  Ledger ledger("k", limits);
  EXPECT_EQ(ledger.check(kT0, 500, 0, Priority::kBulk).verdict, Verdict::kSend);
  const LedgerCheck c = ledger.check(kT0, 501, 0, Priority::kBulk);
  EXPECT_EQ(c.verdict, Verdict::kTooManyRecipients);
  EXPECT_TRUE(contains(c.reason, "501")) << c.reason;
  EXPECT_TRUE(contains(c.reason, "500")) << c.reason;
}

TEST(Ledger, TooLarge) {
  LedgerLimits limits;
  limits.max_message_bytes = 157'286'400;
  Ledger ledger("k", limits);
  EXPECT_EQ(ledger.check(kT0, 1, 157'286'400, Priority::kBulk).verdict, Verdict::kSend);
  const LedgerCheck c = ledger.check(kT0, 1, 157'286'401, Priority::kBulk);
  EXPECT_EQ(c.verdict, Verdict::kTooLarge);
  EXPECT_TRUE(contains(c.reason, "157,286,400")) << c.reason;
}

TEST(Ledger, ChecksInTheDocumentedOrder) {
  LedgerLimits limits = dayLimit(10);
  limits.max_message_bytes = 1000;
  limits.recipients_per_message = 5;
  limits.messages_per_minute = 1;
  Ledger ledger("k", limits);
  ledger.charge(kT0, 10); // window spent, and the pacer waits a minute
  ledger.markExhausted(kT0 + 2, 1h);
  const int64_t now = kT0 + 3;
  EXPECT_EQ(ledger.check(now, 6, 1001, Priority::kBulk).verdict, Verdict::kTooLarge);
  EXPECT_EQ(ledger.check(now, 6, 10, Priority::kBulk).verdict, Verdict::kTooManyRecipients);
  EXPECT_EQ(ledger.check(now, 1, 10, Priority::kBulk).verdict, Verdict::kExhausted);
  ledger.clearExhausted();
  EXPECT_EQ(ledger.check(now, 1, 10, Priority::kBulk).verdict, Verdict::kOverBudget);
  ledger.refund(LedgerCharge{"k", kT0, 5}, 5, now);
  const LedgerCheck paced = ledger.check(now, 1, 10, Priority::kBulk);
  EXPECT_EQ(paced.verdict, Verdict::kWait);
  EXPECT_EQ(paced.until_ms, kT0 + 60'000);
  EXPECT_TRUE(contains(paced.reason, "1 message per minute")) << paced.reason;
  const LedgerCheck ok = ledger.check(paced.until_ms, 1, 10, Priority::kBulk);
  EXPECT_EQ(ok.verdict, Verdict::kSend);
  EXPECT_TRUE(ok.reason.empty());
}

TEST(Ledger, ExhaustedUntilTheOldestSendFrees) {
  Ledger ledger("m365:rep1@acme.example", dayLimit(10'000));
  ledger.charge(kT0 + 5 * kWidthMs + 10, 30);
  ledger.charge(kT0 + 9 * kWidthMs, 40);
  const int64_t now = kT0 + 10 * kWidthMs;
  ledger.markExhausted(now, 1h);
  const int64_t oldest = kT0 + 6 * kWidthMs + kDayMs;
  EXPECT_EQ(ledger.exhaustedUntil(now), oldest);
  const LedgerCheck c = ledger.check(now, 1, 0, Priority::kPersonal);
  EXPECT_EQ(c.verdict, Verdict::kExhausted);
  EXPECT_EQ(c.until_ms, oldest);
  EXPECT_TRUE(contains(c.reason, "2026-11-24T00:36:00Z")) << c.reason;
  EXPECT_EQ(ledger.check(oldest - 1, 1, 0, Priority::kPersonal).verdict, Verdict::kExhausted);
  // Then one message probes again.
  EXPECT_EQ(ledger.check(oldest, 1, 0, Priority::kPersonal).verdict, Verdict::kSend);
  EXPECT_EQ(ledger.exhaustedUntil(oldest), std::nullopt);
  // The probe is refused too: now the next bucket is the oldest.
  ledger.markExhausted(oldest, 1h);
  EXPECT_EQ(ledger.exhaustedUntil(oldest), kT0 + 10 * kWidthMs + kDayMs);
  EXPECT_EQ(ledger.usage(oldest).exhausted_until_ms, kT0 + 10 * kWidthMs + kDayMs);
}

TEST(Ledger, ExhaustedWithNothingRecordedWaitsMinWaitButAtLeastOneSecond) {
  Ledger ledger("m365:rep1@acme.example", dayLimit(10'000));
  ledger.markExhausted(kT0, 15min);
  EXPECT_EQ(ledger.exhaustedUntil(kT0), kT0 + 15 * 60'000);
  ledger.markExhausted(kT0, 0ms);
  EXPECT_EQ(ledger.exhaustedUntil(kT0), kT0 + 1000);
  ledger.markExhausted(kT0, -5min);
  EXPECT_EQ(ledger.exhaustedUntil(kT0), kT0 + 1000);
  // A window shorter than a second still keeps the route off for a second.
  LedgerLimits tiny = dayLimit(10);
  tiny.window = 1ms;
  Ledger fast("relay:x", tiny);
  fast.charge(kT0, 1);
  fast.markExhausted(kT0 + 999, 1h);
  EXPECT_EQ(fast.exhaustedUntil(kT0 + 999), kT0 + 999 + 1000);
}

TEST(Ledger, RestoredAndClearedExhaustion) {
  Ledger ledger("k", dayLimit(10));
  ledger.restoreExhausted(kT0 + 5000);
  EXPECT_EQ(ledger.exhaustedUntil(kT0), kT0 + 5000);
  EXPECT_EQ(ledger.check(kT0, 1, 0, Priority::kPersonal).verdict, Verdict::kExhausted);
  EXPECT_EQ(ledger.exhaustedUntil(kT0 + 5000), std::nullopt);
  ledger.clearExhausted();
  EXPECT_EQ(ledger.exhaustedUntil(kT0), std::nullopt);
  EXPECT_EQ(ledger.check(kT0, 1, 0, Priority::kPersonal).verdict, Verdict::kSend);
}

TEST(Ledger, Usage) {
  Ledger ledger("m365:rep1@acme.example", dayLimit(100));
  LedgerUsage empty = ledger.usage(kT0);
  EXPECT_EQ(empty.used, 0u);
  EXPECT_EQ(empty.limit, 100u);
  EXPECT_EQ(empty.remaining, 100u);
  EXPECT_EQ(empty.frees_at_ms, std::nullopt);
  EXPECT_EQ(empty.exhausted_until_ms, std::nullopt);
  ledger.charge(kT0, 30);
  ledger.charge(kT0 + kWidthMs, 12);
  LedgerUsage u = ledger.usage(kT0 + kWidthMs);
  EXPECT_EQ(u.used, 42u);
  EXPECT_EQ(u.remaining, 58u);
  EXPECT_EQ(u.frees_at_ms, kT0 + kWidthMs + kDayMs);
  ledger.restore(kT0, 500, kT0 + kWidthMs); // more than the limit (the limit was lowered)
  EXPECT_EQ(ledger.usage(kT0 + kWidthMs).remaining, 0u);
  Ledger unlimited("relay:default", LedgerLimits{});
  unlimited.charge(kT0, 7);
  LedgerUsage n = unlimited.usage(kT0);
  EXPECT_EQ(n.used, 7u);
  EXPECT_EQ(n.limit, std::nullopt);
  EXPECT_EQ(n.remaining, std::nullopt);
  EXPECT_EQ(unlimited.check(kT0, 1'000'000, 1u << 30, Priority::kBulk).verdict, Verdict::kSend);
}

TEST(Ledger, NewLimitsApplyToWhatWasAlreadyCounted) {
  Ledger ledger("relay:default", dayLimit(100));
  ledger.charge(kT0, 60);
  ledger.markExhausted(kT0, 30min);
  const auto exhausted = ledger.exhaustedUntil(kT0);
  LedgerLimits lower = dayLimit(50);
  ledger.setLimits(lower, kT0 + 1000);
  EXPECT_EQ(ledger.limits().recipients_per_window, 50u);
  EXPECT_EQ(ledger.usage(kT0 + 1000).used, 60u);
  EXPECT_EQ(ledger.usage(kT0 + 1000).remaining, 0u);
  EXPECT_EQ(ledger.exhaustedUntil(kT0 + 1000), exhausted); // the mark stays
  ledger.clearExhausted();
  EXPECT_EQ(ledger.check(kT0 + 1000, 1, 0, Priority::kBulk).verdict, Verdict::kOverBudget);
}

TEST(Ledger, AShorterWindowReBucketsAndFreesSooner) {
  Ledger ledger("relay:default", dayLimit(10));
  ledger.charge(kT0, 4);                // 6-minute buckets
  ledger.charge(kT0 + 2 * kWidthMs, 5); // 12 minutes later
  LedgerLimits hour = dayLimit(10);
  hour.window = 1h; // 15-second buckets
  const int64_t now = kT0 + 2 * kWidthMs + 1000;
  ledger.setLimits(hour, now);
  EXPECT_EQ(ledger.rollingWindow().window(), 1h);
  EXPECT_EQ(ledger.usage(now).used, 9u);
  // The first send leaves the hour window first (its bucket start is kept, rounded down).
  EXPECT_EQ(ledger.usage(kT0 + 15'000 + 3'600'000).used, 5u);
  EXPECT_EQ(ledger.usage(kT0 + 2 * kWidthMs + 15'000 + 3'600'000).used, 0u);
}

TEST(Ledger, ALongerWindowKeepsWhatWasCounted) {
  LedgerLimits hour = dayLimit(10);
  hour.window = 1h;
  Ledger ledger("relay:default", hour);
  ledger.charge(kT0, 3);
  ledger.setLimits(dayLimit(10), kT0 + 1000);
  EXPECT_EQ(ledger.usage(kT0 + 2 * 3'600'000).used, 3u); // now counted for a day
  EXPECT_EQ(ledger.usage(kT0 + kWidthMs + kDayMs).used, 0u);
}

TEST(Ledger, MemoryIsBounded) {
  EXPECT_LE(sizeof(Ledger), 256u);
  Ledger ledger("m365:rep1@acme.example", dayLimit(UINT32_MAX));
  // A send every 20 s for three days.
  for (int64_t t = kT0; t < kT0 + 3 * kDayMs; t += 20'000) {
    ASSERT_EQ(ledger.check(t, 1, 0, Priority::kBulk).verdict, Verdict::kSend);
    ledger.charge(t, 1);
    ASSERT_LE(ledger.rollingWindow().bucketCount(), RollingWindow::kMaxBuckets);
  }
  // The last day's 4,320 sends, all counted; the window is full (241 buckets: 240 widths plus
  // the one that leaves at `end`) and stays full, never larger, as sends go on.
  const int64_t end = kT0 + 3 * kDayMs;
  EXPECT_EQ(ledger.usage(end).used, 4'320u);
  EXPECT_EQ(ledger.rollingWindow().bucketCount(), RollingWindow::kMaxBuckets);
  ledger.charge(end, 1);
  EXPECT_EQ(ledger.rollingWindow().bucketCount(), RollingWindow::kMaxBuckets);
  EXPECT_EQ(ledger.usage(end).used, 4'321u);
}

TEST(Ledger, LargeLimitsAndTimesDoNotOverflow) {
  LedgerLimits limits;
  limits.recipients_per_window = UINT32_MAX;
  limits.window = std::chrono::hours(24 * 31);
  limits.messages_per_minute = UINT32_MAX;
  limits.recipients_per_message = UINT32_MAX;
  limits.max_message_bytes = UINT64_MAX;
  limits.reserve_percent = 99;
  Ledger ledger("k", limits);
  constexpr int64_t kLate = std::numeric_limits<int64_t>::max() - 1000;
  EXPECT_EQ(ledger.check(kLate, UINT32_MAX, UINT64_MAX, Priority::kPersonal).verdict,
            Verdict::kSend);
  ledger.charge(kLate, UINT32_MAX);
  const LedgerCheck c = ledger.check(kLate, 1, 0, Priority::kPersonal);
  EXPECT_NE(c.verdict, Verdict::kSend);
  EXPECT_FALSE(c.reason.empty());
  ledger.markExhausted(kLate, 1h);
  EXPECT_TRUE(ledger.exhaustedUntil(kLate).has_value());
}

TEST(Priority, ParsesAndPrints) {
  EXPECT_EQ(toString(Priority::kBulk), "bulk");
  EXPECT_EQ(toString(Priority::kPersonal), "personal");
  EXPECT_EQ(parsePriority("bulk"), Priority::kBulk);
  EXPECT_EQ(parsePriority(" Personal\t"), Priority::kPersonal);
  EXPECT_EQ(parsePriority("BULK"), Priority::kBulk);
  EXPECT_EQ(parsePriority(""), std::nullopt);
  EXPECT_EQ(parsePriority("  "), std::nullopt);
  EXPECT_EQ(parsePriority("urgent"), std::nullopt);
  EXPECT_EQ(parsePriority("personally"), std::nullopt);
  EXPECT_EQ(parsePriority("per sonal"), std::nullopt);
}

} // namespace
} // namespace mailgate::relay::route

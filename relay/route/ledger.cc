#include "relay/route/ledger.h"

#include <algorithm>
#include <cctype>
#include <fmt/format.h>
#include <limits>
#include <utility>

namespace mailgate::relay::route {

namespace {

constexpr int64_t kMaxI64 = std::numeric_limits<int64_t>::max();
constexpr int64_t kMinI64 = std::numeric_limits<int64_t>::min();
constexpr uint64_t kMaxU64 = std::numeric_limits<uint64_t>::max();
constexpr int64_t kSecondMs = 1000;
constexpr int64_t kMinuteUs = 60'000'000;

// Saturating arithmetic: times near the ends of int64 (or absurd stored counts) clamp instead of
// wrapping, so a corrupt value can only make the ledger more careful, never undefined.
int64_t addSat(int64_t a, int64_t b) {
  if (b > 0 && a > kMaxI64 - b) {
    return kMaxI64;
  }
  if (b < 0 && a < kMinI64 - b) {
    return kMinI64;
  }
  return a + b;
}

uint64_t addSat(uint64_t a, uint64_t b) {
  return a > kMaxU64 - b ? kMaxU64 : a + b;
}

int64_t msToUs(int64_t ms) {
  if (ms > kMaxI64 / 1000) {
    return kMaxI64;
  }
  if (ms < kMinI64 / 1000) {
    return kMinI64;
  }
  return ms * 1000;
}

// Rounds towards +infinity; b > 0.
int64_t ceilDiv(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && a > 0) ? q + 1 : q;
}

// 10000 → "10,000".
std::string grouped(uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  out.reserve(digits.size() + digits.size() / 3);
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) {
      out += ',';
    }
    out += digits[i];
  }
  return out;
}

// "24 h", "30 min", "90 s", "1500 ms".
std::string durationText(int64_t ms) {
  if (ms > 0 && ms % 3'600'000 == 0) {
    return fmt::format("{} h", ms / 3'600'000);
  }
  if (ms > 0 && ms % 60'000 == 0) {
    return fmt::format("{} min", ms / 60'000);
  }
  if (ms % 1000 == 0) {
    return fmt::format("{} s", ms / 1000);
  }
  return fmt::format("{} ms", ms);
}

// "in 3 h 12 min", "in 45 s", rounded up to the second.
std::string relativeText(int64_t delta_ms) {
  if (delta_ms <= 0) {
    return "now";
  }
  const int64_t s = ceilDiv(delta_ms, 1000);
  if (s < 60) {
    return fmt::format("in {} s", s);
  }
  if (s < 3600) {
    return fmt::format("in {} min {} s", s / 60, s % 60);
  }
  if (s < 86400) {
    return fmt::format("in {} h {} min", s / 3600, (s % 3600) / 60);
  }
  return fmt::format("in {} d {} h", s / 86400, (s % 86400) / 3600);
}

// "2026-11-23T10:00:00Z (in 3 h 12 min)": absolute for logs read later, relative for a person
// reading it now.
std::string timeText(int64_t at_ms, int64_t now_ms) {
  using namespace std::chrono;
  // Keep the calendar arithmetic inside years it can represent.
  constexpr int64_t kLimitMs = 253'402'300'799'000; // 9999-12-31T23:59:59Z
  if (at_ms < 0 || at_ms > kLimitMs) {
    return fmt::format("{} ms since the epoch", at_ms);
  }
  const sys_time<milliseconds> tp{milliseconds(at_ms)};
  const auto day = floor<days>(tp);
  const year_month_day ymd{day};
  const hh_mm_ss<milliseconds> hms{tp - day};
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z ({})", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                     hms.hours().count(), hms.minutes().count(), hms.seconds().count(),
                     relativeText(at_ms - now_ms));
}

} // namespace

std::string_view toString(Priority p) {
  switch (p) {
  case Priority::kBulk:
    return "bulk";
  case Priority::kPersonal:
    return "personal";
  }
  return "bulk";
}

std::optional<Priority> parsePriority(std::string_view text) {
  constexpr std::string_view kBlanks = " \t\r\n";
  const size_t first = text.find_first_not_of(kBlanks);
  if (first == std::string_view::npos) {
    return std::nullopt;
  }
  text = text.substr(first, text.find_last_not_of(kBlanks) - first + 1);
  const auto equalsIgnoringCase = [text](std::string_view word) {
    return std::ranges::equal(text, word, [](char a, char b) {
      return std::tolower(static_cast<unsigned char>(a)) == b;
    });
  };
  if (equalsIgnoringCase("bulk")) {
    return Priority::kBulk;
  }
  if (equalsIgnoringCase("personal")) {
    return Priority::kPersonal;
  }
  return std::nullopt;
}

std::chrono::milliseconds bucketWidth(std::chrono::milliseconds window) {
  return std::max(std::chrono::milliseconds(kSecondMs), window / 240);
}

// --- RollingWindow ---------------------------------------------------------------------------

RollingWindow::RollingWindow(std::chrono::milliseconds window)
    : window_(std::max(window, std::chrono::milliseconds(0))), width_(bucketWidth(window_)) {}

int64_t RollingWindow::bucketOf(int64_t at_ms) const {
  const int64_t w = width_.count();
  const int64_t r = at_ms % w;
  // at_ms - r rounds towards zero; a negative remainder means one more step down.
  return r < 0 ? addSat(at_ms - r, -w) : at_ms - r;
}

namespace {

// When a bucket stops being counted: its whole width has left the window.
int64_t bucketEnd(int64_t start_ms, int64_t width_ms, int64_t window_ms) {
  return addSat(addSat(start_ms, width_ms), window_ms);
}

} // namespace

void RollingWindow::add(int64_t bucket_ms, int64_t count, int64_t now_ms) {
  if (count == 0) {
    return;
  }
  const int64_t start = bucketOf(bucket_ms);
  if (now_ms >= bucketEnd(start, width_.count(), window_.count())) {
    return;
  }
  prune(now_ms);
  auto it = std::ranges::lower_bound(buckets_, start, {}, &Bucket::start_ms);
  if (it != buckets_.end() && it->start_ms == start) {
    if (count > 0) {
      it->count = addSat(it->count, static_cast<uint64_t>(count));
      return;
    }
    // -(count + 1) + 1 avoids negating INT64_MIN.
    const uint64_t give = static_cast<uint64_t>(-(count + 1)) + 1;
    it->count = it->count > give ? it->count - give : 0;
    if (it->count == 0) {
      buckets_.erase(it);
    }
    return;
  }
  if (count < 0) {
    return; // nothing counted there to give back
  }
  if (buckets_.size() == buckets_.capacity()) {
    // Grow by hand so a full window never holds more capacity than kMaxBuckets + 1.
    const auto index = it - buckets_.begin();
    const size_t grown = std::max<size_t>(8, buckets_.capacity() * 2);
    buckets_.reserve(std::min(grown, kMaxBuckets + 1));
    it = buckets_.begin() + index;
  }
  buckets_.insert(it, Bucket{start, static_cast<uint64_t>(count)});
  if (buckets_.size() > kMaxBuckets) {
    // Only reachable when buckets lie ahead of now_ms (the clock went back): fold the oldest into
    // the next one, which is counted longer.
    buckets_[1].count = addSat(buckets_[1].count, buckets_[0].count);
    buckets_.erase(buckets_.begin());
  }
}

uint64_t RollingWindow::used(int64_t now_ms) const {
  uint64_t total = 0;
  for (const Bucket& b : buckets_) {
    if (now_ms < bucketEnd(b.start_ms, width_.count(), window_.count())) {
      total = addSat(total, b.count);
    }
  }
  return total;
}

std::optional<int64_t> RollingWindow::fitsAt(int64_t now_ms, uint64_t limit, uint64_t need) const {
  if (need > limit) {
    return std::nullopt;
  }
  const auto fits = [limit, need](uint64_t used) { return used <= limit && limit - used >= need; };
  uint64_t used = this->used(now_ms);
  if (fits(used)) {
    return now_ms;
  }
  // Buckets leave the window in start order; the first end after which enough is free.
  int64_t last_end = now_ms;
  for (const Bucket& b : buckets_) {
    const int64_t end = bucketEnd(b.start_ms, width_.count(), window_.count());
    if (now_ms >= end) {
      continue;
    }
    used = used > b.count ? used - b.count : 0;
    last_end = end;
    if (fits(used)) {
      return end;
    }
  }
  return last_end; // everything counted has left by then (reached only with saturated counts)
}

std::optional<int64_t> RollingWindow::oldestFreesAt(int64_t now_ms) const {
  for (const Bucket& b : buckets_) {
    const int64_t end = bucketEnd(b.start_ms, width_.count(), window_.count());
    if (now_ms < end) {
      return end;
    }
  }
  return std::nullopt;
}

void RollingWindow::prune(int64_t now_ms) {
  const auto first_counted = std::ranges::find_if(buckets_, [&](const Bucket& b) {
    return now_ms < bucketEnd(b.start_ms, width_.count(), window_.count());
  });
  buckets_.erase(buckets_.begin(), first_counted);
  // A busy day followed by a quiet one should not keep a full day's capacity per mailbox.
  if (buckets_.capacity() > 16 && buckets_.size() * 4 < buckets_.capacity()) {
    buckets_.shrink_to_fit();
  }
}

RollingWindow RollingWindow::withWindow(std::chrono::milliseconds window, int64_t now_ms) const {
  RollingWindow out(window);
  for (const Bucket& b : buckets_) {
    if (now_ms < bucketEnd(b.start_ms, width_.count(), window_.count())) {
      out.add(b.start_ms, static_cast<int64_t>(std::min<uint64_t>(b.count, kMaxI64)), now_ms);
    }
  }
  return out;
}

// --- Pacer -----------------------------------------------------------------------------------

// The interval is rounded up to the microsecond, so per_minute + 1 starts always span at least
// 60 s. per_minute == 0 allows no start at all (configuration never gives 0).
Pacer::Pacer(uint32_t per_minute)
    : interval_us_(per_minute == 0 ? kMaxI64 : ceilDiv(kMinuteUs, per_minute)),
      next_us_(per_minute == 0 ? kMaxI64 : 0) {}

int64_t Pacer::nextAt(int64_t now_ms) const {
  // Rounded up to the millisecond: a start at the returned time is never early. A saturated
  // schedule means "not within int64 time" in milliseconds too.
  if (next_us_ == kMaxI64) {
    return kMaxI64;
  }
  return std::max(now_ms, ceilDiv(next_us_, 1000));
}

// The start is placed at the earliest microsecond it may stand for: no earlier than the slot it
// was allowed at, and inside the millisecond it happened in, (now_ms - 1 ms, now_ms]. Spacing
// slots by interval_us_ then keeps any per_minute + 1 starts more than 60 s - 1 ms apart, so
// (times being whole milliseconds) at least 60 s, without losing a fraction of a millisecond per
// start to rounding.
void Pacer::take(int64_t now_ms) {
  const int64_t slot = std::max(addSat(msToUs(now_ms), -999), next_us_);
  next_us_ = addSat(slot, interval_us_);
}

void Pacer::setRate(uint32_t per_minute) {
  const int64_t interval = per_minute == 0 ? kMaxI64 : ceilDiv(kMinuteUs, per_minute);
  if (interval == kMaxI64) {
    next_us_ = kMaxI64;
  } else if (interval_us_ == kMaxI64) {
    next_us_ = 0; // nothing started under the old rate
  } else if (next_us_ != 0) {
    next_us_ = addSat(addSat(next_us_, -interval_us_), interval); // last start + new interval
  }
  interval_us_ = interval;
}

// --- Ledger ----------------------------------------------------------------------------------

Ledger::Ledger(std::string key, LedgerLimits limits)
    : key_(std::move(key)), limits_(std::move(limits)), window_(limits_.window) {
  if (limits_.messages_per_minute) {
    pacer_.emplace(*limits_.messages_per_minute);
  }
}

std::optional<uint64_t> Ledger::budgetFor(Priority priority) const {
  if (!limits_.recipients_per_window) {
    return std::nullopt;
  }
  const uint64_t limit = *limits_.recipients_per_window;
  if (priority == Priority::kPersonal) {
    return limit;
  }
  const uint64_t reserve = std::min<uint32_t>(limits_.reserve_percent, 100);
  return limit * (100 - reserve) / 100; // limit < 2^32: no overflow
}

LedgerCheck Ledger::check(int64_t now_ms, uint32_t recipients, uint64_t bytes,
                          Priority priority) const {
  if (limits_.max_message_bytes && bytes > *limits_.max_message_bytes) {
    return {Verdict::kTooLarge, 0,
            fmt::format("the message is {} bytes; this route takes at most {} bytes",
                        grouped(bytes), grouped(*limits_.max_message_bytes))};
  }
  if (limits_.recipients_per_message && recipients > *limits_.recipients_per_message) {
    return {Verdict::kTooManyRecipients, 0,
            fmt::format("the message has {} recipients; this route takes at most {} per message",
                        grouped(recipients), grouped(*limits_.recipients_per_message))};
  }
  const std::optional<uint64_t> budget = budgetFor(priority);
  // Reasons are built only when the answer is not kSend: check() runs for every message.
  const auto budget_owner = [&] {
    return priority == Priority::kBulk && limits_.reserve_percent > 0
               ? fmt::format(" for bulk mail ({}% kept for personal mail)",
                             std::min<uint32_t>(limits_.reserve_percent, 100))
               : std::string();
  };
  if (budget && recipients > *budget) {
    return {Verdict::kTooManyRecipients, 0,
            fmt::format("the message has {} recipients; this route's whole budget{} is {} per {}",
                        grouped(recipients), budget_owner(), grouped(*budget),
                        durationText(limits_.window.count()))};
  }
  if (const std::optional<int64_t> until = exhaustedUntil(now_ms)) {
    return {Verdict::kExhausted, *until,
            fmt::format("the upstream reported its sending quota spent; this route takes nothing "
                        "until {}",
                        timeText(*until, now_ms))};
  }
  if (budget) {
    const int64_t at = window_.fitsAt(now_ms, *budget, recipients).value_or(now_ms);
    if (at > now_ms) {
      return {Verdict::kOverBudget, at,
              fmt::format("{} of {} recipients{} used in the last {}; room for {} more at {}",
                          grouped(window_.used(now_ms)), grouped(*budget), budget_owner(),
                          durationText(limits_.window.count()), grouped(recipients),
                          timeText(at, now_ms))};
    }
  }
  if (pacer_) {
    const int64_t at = pacer_->nextAt(now_ms);
    if (at > now_ms) {
      return {Verdict::kWait, at,
              fmt::format("paced to {} message{} per minute; the next may start at {}",
                          grouped(*limits_.messages_per_minute),
                          *limits_.messages_per_minute == 1 ? "" : "s", timeText(at, now_ms))};
    }
  }
  return {};
}

LedgerCharge Ledger::charge(int64_t now_ms, uint32_t recipients) {
  const int64_t bucket = window_.bucketOf(now_ms);
  window_.add(bucket, recipients, now_ms);
  if (pacer_) {
    pacer_->take(now_ms);
  }
  return LedgerCharge{key_, bucket, static_cast<int64_t>(recipients)};
}

LedgerCharge Ledger::refund(const LedgerCharge& charge, uint32_t recipients, int64_t now_ms) {
  // Never give back more than the charge took.
  const int64_t back = std::min<int64_t>(recipients, std::max<int64_t>(charge.count, 0));
  window_.add(charge.bucket_ms, -back, now_ms);
  return LedgerCharge{key_, charge.bucket_ms, -back};
}

void Ledger::restore(int64_t bucket_ms, int64_t count, int64_t now_ms) {
  window_.add(bucket_ms, count, now_ms);
}

void Ledger::setLimits(LedgerLimits limits, int64_t now_ms) {
  if (limits.window != limits_.window) {
    window_ = window_.withWindow(limits.window, now_ms);
  }
  if (!limits.messages_per_minute) {
    pacer_.reset();
  } else if (pacer_) {
    pacer_->setRate(*limits.messages_per_minute);
  } else {
    pacer_.emplace(*limits.messages_per_minute);
  }
  limits_ = std::move(limits);
}

void Ledger::markExhausted(int64_t now_ms, std::chrono::milliseconds min_wait) {
  const int64_t until =
      window_.oldestFreesAt(now_ms).value_or(addSat(now_ms, int64_t{min_wait.count()}));
  exhausted_until_ms_ = std::max(until, addSat(now_ms, kSecondMs));
}

void Ledger::restoreExhausted(int64_t until_ms) {
  exhausted_until_ms_ = until_ms;
}

std::optional<int64_t> Ledger::exhaustedUntil(int64_t now_ms) const {
  if (exhausted_until_ms_ > now_ms) {
    return exhausted_until_ms_;
  }
  return std::nullopt;
}

void Ledger::clearExhausted() {
  exhausted_until_ms_ = 0;
}

LedgerUsage Ledger::usage(int64_t now_ms) const {
  LedgerUsage u;
  u.used = window_.used(now_ms);
  if (limits_.recipients_per_window) {
    u.limit = *limits_.recipients_per_window;
    u.remaining = *u.limit > u.used ? *u.limit - u.used : 0;
  }
  u.frees_at_ms = window_.oldestFreesAt(now_ms);
  u.exhausted_until_ms = exhaustedUntil(now_ms);
  return u;
}

} // namespace mailgate::relay::route

// Sending budgets of one route (a mailbox's Microsoft 365 submission, or a custom relay), as
// plain arithmetic: the caller passes the time (wall-clock ms since the epoch) and persists what
// charge() returns. No I/O, no clock, no threads; one Ledger per route, used from one thread.
//
// What is counted and how (docs/routing.md has the operator's view):
//  - Recipients on a rolling window (`recipients_per_window` over `window`): every recipient of
//    every message counts when the attempt starts. Sends are kept in buckets of
//    bucketWidth(window) = max(1 s, window / 240): a send is freed when its whole bucket has left
//    the window, so budget comes back up to one bucket width later than the exact rolling window
//    would give it, never earlier. That bounds the memory of a ledger to 241 buckets.
//  - Messages per minute (Pacer): at most `messages_per_minute` starts in any 60-second span,
//    spread evenly, so the upstream's own throttle is never the one that says no.
//  - Recipients per message and message size: a message over either cannot use this route at
//    all (Verdict::kTooManyRecipients / kTooLarge); it goes to the next route whole.
//  - A reserve of `reserve_percent` of the window budget that only Priority::kPersonal mail may
//    use: bulk mail sees a budget of floor(limit * (100 - reserve) / 100) and fails over first.
//  - markExhausted(): the upstream said its quota is spent before this ledger expected it (the
//    mailbox also sends from Outlook, say). The route takes nothing until the oldest recorded
//    send leaves the window, or `min_wait` from now when nothing is recorded; then one message
//    probes again.
#pragma once

#include "relay/queue_store.h"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::relay::route {

enum class Priority { kBulk, kPersonal };

// "bulk" / "personal".
[[nodiscard]] std::string_view toString(Priority p);
// Case-insensitive "bulk" or "personal", surrounding blanks ignored; nullopt for anything else.
[[nodiscard]] std::optional<Priority> parsePriority(std::string_view text);

// Unset optionals: no limit of that kind.
struct LedgerLimits {
  std::optional<uint32_t> recipients_per_window;
  std::chrono::milliseconds window{std::chrono::hours(24)};
  std::optional<uint32_t> messages_per_minute;
  std::optional<uint32_t> recipients_per_message;
  std::optional<uint64_t> max_message_bytes;
  uint32_t reserve_percent = 0; // 0..100
};

[[nodiscard]] std::chrono::milliseconds bucketWidth(std::chrono::milliseconds window);

// Recipient counts per bucket over a rolling window.
class RollingWindow {
public:
  explicit RollingWindow(std::chrono::milliseconds window);

  // The start of the bucket that holds `at_ms`.
  [[nodiscard]] int64_t bucketOf(int64_t at_ms) const;
  // Adds `count` (negative: gives back, never below zero) to the bucket starting at bucket_ms
  // (rounded down to a bucket start, should the window have changed since it was stored).
  // Buckets may arrive in any order (restore from the store); a bucket already outside the
  // window is ignored.
  void add(int64_t bucket_ms, int64_t count, int64_t now_ms);
  // Recipients counted in buckets that have not yet left the window at now_ms.
  [[nodiscard]] uint64_t used(int64_t now_ms) const;
  // The earliest time >= now_ms at which used() + need <= limit; nullopt when need > limit.
  [[nodiscard]] std::optional<int64_t> fitsAt(int64_t now_ms, uint64_t limit, uint64_t need) const;
  // When the oldest counted bucket leaves the window; nullopt when nothing is counted.
  [[nodiscard]] std::optional<int64_t> oldestFreesAt(int64_t now_ms) const;
  // Drops buckets that have left the window (bounded memory).
  void prune(int64_t now_ms);
  // The same counts over another window (a reload): each counted bucket is added again, rounded
  // down to the new bucket width; those already outside the new window are dropped.
  [[nodiscard]] RollingWindow withWindow(std::chrono::milliseconds window, int64_t now_ms) const;
  // A window holds at most this many buckets: 240 widths of window plus the current one. Buckets
  // beyond it (only when the clock went back) are merged into the next later one, which frees them
  // later, never earlier.
  static constexpr size_t kMaxBuckets = 241;
  [[nodiscard]] std::chrono::milliseconds window() const { return window_; }
  [[nodiscard]] size_t bucketCount() const { return buckets_.size(); }

private:
  struct Bucket {
    int64_t start_ms;
    uint64_t count;
  };
  std::chrono::milliseconds window_;
  std::chrono::milliseconds width_;
  std::vector<Bucket> buckets_; // ascending start_ms; at most 241 (no allocation while empty)
};

// At most `per_minute` message starts in any 60-second span, evenly spaced: one start every
// 60 s / per_minute, with no burst beyond one. Not persisted: after a restart the first message
// may start at once.
class Pacer {
public:
  explicit Pacer(uint32_t per_minute);
  // When the next start is allowed (<= now_ms: now).
  [[nodiscard]] int64_t nextAt(int64_t now_ms) const;
  void take(int64_t now_ms);
  // Another rate (a reload): the last start stays where it was and the next one may come the new
  // interval after it.
  void setRate(uint32_t per_minute);

private:
  int64_t interval_us_;
  int64_t next_us_ = 0;
};

enum class Verdict {
  kSend,              // the route takes it now
  kWait,              // pacing: try again at until_ms (the route is not exhausted)
  kOverBudget,        // the window budget (for this priority) is spent until until_ms
  kExhausted,         // markExhausted() is in force until until_ms
  kTooManyRecipients, // never on this route
  kTooLarge,          // never on this route
};

struct LedgerCheck {
  Verdict verdict = Verdict::kSend;
  int64_t until_ms = 0; // kWait, kOverBudget, kExhausted: when it may change
  std::string reason;   // one sentence for logs and events, e.g. "9,950 of 10,000 recipients ..."
};

struct LedgerUsage {
  uint64_t used = 0;
  std::optional<uint64_t> limit;      // unset: no window limit
  std::optional<uint64_t> remaining;  // limit - used, floor 0
  std::optional<int64_t> frees_at_ms; // when the oldest counted send leaves the window
  std::optional<int64_t> exhausted_until_ms;
};

class Ledger {
public:
  // `key` names the ledger in the store ("m365:rep1@acme.example", "relay:default").
  Ledger(std::string key, LedgerLimits limits);

  [[nodiscard]] const std::string& key() const { return key_; }
  [[nodiscard]] const LedgerLimits& limits() const { return limits_; }

  // Could a message with `recipients` recipients and `bytes` bytes start now? Checks, in this
  // order: size, recipients per message, exhausted, window budget for the priority, pacing.
  // More recipients than the whole window budget for the priority is kTooManyRecipients too (it
  // would never fit). `reason` is empty for kSend.
  [[nodiscard]] LedgerCheck check(int64_t now_ms, uint32_t recipients, uint64_t bytes,
                                  Priority priority) const;
  // Records a start: counts the recipients and takes a pacing slot. Returns what to persist
  // (QueueStore::markSending's AttemptStart::charges).
  LedgerCharge charge(int64_t now_ms, uint32_t recipients);
  // Gives recipients back to the bucket of an earlier charge (an attempt that reached nobody);
  // returns the persisted form (a negative count).
  LedgerCharge refund(const LedgerCharge& charge, uint32_t recipients, int64_t now_ms);
  // A stored bucket, at start-up.
  void restore(int64_t bucket_ms, int64_t count, int64_t now_ms);
  // New limits for what is already counted (a reload): every send still in the window keeps
  // counting against the new budget (re-bucketed when the window changed), an exhausted mark
  // stays, and pacing keeps the last start and spaces the next by the new rate.
  void setLimits(LedgerLimits limits, int64_t now_ms);

  void markExhausted(int64_t now_ms, std::chrono::milliseconds min_wait);
  // At start-up, from the stored route state.
  void restoreExhausted(int64_t until_ms);
  [[nodiscard]] std::optional<int64_t> exhaustedUntil(int64_t now_ms) const;
  void clearExhausted();

  [[nodiscard]] LedgerUsage usage(int64_t now_ms) const;
  // The recipient window itself (inspection, tests).
  [[nodiscard]] const RollingWindow& rollingWindow() const { return window_; }

  // The share of the window budget bulk mail may use.
  [[nodiscard]] std::optional<uint64_t> budgetFor(Priority priority) const;

private:
  std::string key_;
  LedgerLimits limits_;
  RollingWindow window_;
  std::optional<Pacer> pacer_;
  int64_t exhausted_until_ms_ = 0;
};

} // namespace mailgate::relay::route

// When to retry a deferred message and when to give up on it. Pure arithmetic on milliseconds:
// no clock, no state, safe to share between threads.
#pragma once

#include "base/error.h"

#include <cstdint>
#include <string_view>

namespace mailgate::relay {

struct RetryOptions {
  int64_t initial_delay_ms = 5 * 60 * 1000;        // after the first failed attempt
  double multiplier = 2.0;                         // growth per further attempt
  int64_t max_delay_ms = 60 * 60 * 1000;           // the delay never grows past this
  int64_t lifetime_ms = 5LL * 24 * 60 * 60 * 1000; // from creation to bounce
  // 0 disables jitter. With f > 0 a delay d becomes a value in [d * (1 - f), d], chosen by a hash
  // of (seed, key, attempts): the same inputs always give the same time, and messages that
  // failed together spread out instead of retrying in one burst.
  double jitter_fraction = 0.0;
  uint64_t jitter_seed = 0;
};

class RetryPolicy {
public:
  RetryPolicy() = default;
  // `options` should have passed validate(); out-of-range values are clamped, never trusted.
  explicit RetryPolicy(RetryOptions options);

  // Every problem with `options`, as code "config.retry" (the first one found).
  [[nodiscard]] static Result<void> validate(const RetryOptions& options);

  // The wait after `attempts` failed attempts (attempts < 1 counts as 1), before jitter:
  // initial, initial*multiplier, ... capped at max_delay_ms.
  [[nodiscard]] int64_t delayMs(int attempts) const;

  // now_ms + the (jittered) delay. `key` (normally the message id) only feeds the jitter.
  [[nodiscard]] int64_t nextAttempt(int attempts, int64_t now_ms, std::string_view key = {}) const;

  [[nodiscard]] int64_t expiresAt(int64_t created_ms) const;
  // True once the lifetime is over: now_ms >= created_ms + lifetime_ms.
  [[nodiscard]] bool expired(int64_t created_ms, int64_t now_ms) const;

  [[nodiscard]] const RetryOptions& options() const { return options_; }

private:
  RetryOptions options_;
};

} // namespace mailgate::relay

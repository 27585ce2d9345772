#include "relay/queue/retry_policy.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace mailgate::relay {
namespace {

constexpr int64_t kMaxMs = std::numeric_limits<int64_t>::max() / 4;

// splitmix64 finaliser: a well-mixed 64-bit value from any input, portable and stable across
// builds (std::hash is neither).
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t hashKey(uint64_t seed, std::string_view key, int attempts) {
  uint64_t h = mix(seed ^ 0x6d61696c67617465ULL);
  for (unsigned char c : key) {
    h = mix(h ^ c);
  }
  return mix(h ^ static_cast<uint64_t>(attempts));
}

int64_t saturatingAdd(int64_t a, int64_t b) {
  if (b > 0 && a > std::numeric_limits<int64_t>::max() - b) {
    return std::numeric_limits<int64_t>::max();
  }
  return a + b;
}

RetryOptions clamp(RetryOptions o) {
  o.initial_delay_ms = std::clamp<int64_t>(o.initial_delay_ms, 1, kMaxMs);
  o.max_delay_ms = std::clamp<int64_t>(o.max_delay_ms, o.initial_delay_ms, kMaxMs);
  if (!(o.multiplier >= 1.0)) { // also catches NaN
    o.multiplier = 1.0;
  }
  o.lifetime_ms = std::clamp<int64_t>(o.lifetime_ms, 0, kMaxMs);
  if (!(o.jitter_fraction >= 0.0)) {
    o.jitter_fraction = 0.0;
  }
  o.jitter_fraction = std::min(o.jitter_fraction, 1.0);
  return o;
}

} // namespace

RetryPolicy::RetryPolicy(RetryOptions options) : options_(clamp(options)) {}

Result<void> RetryPolicy::validate(const RetryOptions& o) {
  if (o.initial_delay_ms <= 0) {
    return fail("config.retry", "initial retry delay must be positive");
  }
  if (o.max_delay_ms < o.initial_delay_ms) {
    return fail("config.retry", "maximum retry delay is shorter than the initial delay");
  }
  if (!(o.multiplier >= 1.0) || !std::isfinite(o.multiplier)) {
    return fail("config.retry", "retry multiplier must be a finite number >= 1");
  }
  if (o.lifetime_ms <= 0) {
    return fail("config.retry", "message lifetime must be positive");
  }
  if (!(o.jitter_fraction >= 0.0 && o.jitter_fraction <= 1.0)) {
    return fail("config.retry", "retry jitter must be between 0 and 1");
  }
  return {};
}

int64_t RetryPolicy::delayMs(int attempts) const {
  // Multiply step by step so huge attempt counts stop at the cap instead of overflowing.
  double delay = static_cast<double>(options_.initial_delay_ms);
  const auto cap = static_cast<double>(options_.max_delay_ms);
  for (int i = 1; i < attempts && delay < cap; ++i) {
    delay *= options_.multiplier;
  }
  return static_cast<int64_t>(std::min(delay, cap));
}

int64_t RetryPolicy::nextAttempt(int attempts, int64_t now_ms, std::string_view key) const {
  int64_t delay = delayMs(attempts);
  if (options_.jitter_fraction > 0.0) {
    // 53 random bits → a uniform double in [0, 1).
    const double unit =
        static_cast<double>(hashKey(options_.jitter_seed, key, attempts) >> 11) * 0x1.0p-53;
    delay -= static_cast<int64_t>(static_cast<double>(delay) * options_.jitter_fraction * unit);
  }
  return saturatingAdd(now_ms, delay);
}

int64_t RetryPolicy::expiresAt(int64_t created_ms) const {
  return saturatingAdd(created_ms, options_.lifetime_ms);
}

bool RetryPolicy::expired(int64_t created_ms, int64_t now_ms) const {
  return now_ms >= expiresAt(created_ms);
}

} // namespace mailgate::relay

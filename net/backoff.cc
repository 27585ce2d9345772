#include "net/backoff.h"

#include <algorithm>

namespace mailgate::net {

Backoff::Backoff(BackoffOptions options) : options_(options) {
  options_.factor = std::max(options_.factor, 1.0);
  options_.jitter = std::clamp(options_.jitter, 0.0, 1.0);
  if (options_.max.count() < 0) {
    options_.max = std::chrono::milliseconds(0);
  }
  options_.initial = std::clamp(options_.initial, std::chrono::milliseconds(0), options_.max);
  if (options_.seed) {
    rng_.seed(*options_.seed);
  } else {
    std::random_device device;
    rng_.seed((static_cast<uint64_t>(device()) << 32) ^ device());
  }
  base_ms_ = static_cast<double>(options_.initial.count());
}

std::chrono::milliseconds Backoff::next() {
  const double max_ms = static_cast<double>(options_.max.count());
  // 53 random bits -> [0, 1): the same numbers on every standard library for a given seed, which
  // std::uniform_real_distribution does not promise.
  const double unit = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  const double spread = (unit * 2.0 - 1.0) * options_.jitter;
  const double delay = std::clamp(base_ms_ * (1.0 + spread), 0.0, max_ms);
  base_ms_ = std::min(base_ms_ * options_.factor, max_ms);
  ++attempts_;
  return std::chrono::milliseconds(static_cast<int64_t>(delay));
}

void Backoff::reset() {
  base_ms_ = static_cast<double>(options_.initial.count());
  attempts_ = 0;
}

} // namespace mailgate::net

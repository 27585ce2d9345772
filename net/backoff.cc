#include "net/backoff.h"

#include <algorithm>
#include <random>

namespace mailgate::net {

Backoff::Backoff(BackoffOptions options) : options_(options) {
  options_.factor = std::max(options_.factor, 1.0);
  options_.jitter = std::clamp(options_.jitter, 0.0, 1.0);
  if (options_.max.count() < 0) {
    options_.max = std::chrono::milliseconds(0);
  }
  options_.initial = std::clamp(options_.initial, std::chrono::milliseconds(0), options_.max);
  if (options_.seed) {
    rng_state_ = *options_.seed;
  } else {
    std::random_device device;
    rng_state_ = (static_cast<uint64_t>(device()) << 32) ^ device();
  }
  base_ms_ = static_cast<double>(options_.initial.count());
}

std::chrono::milliseconds Backoff::next() {
  const double max_ms = static_cast<double>(options_.max.count());
  // 53 random bits -> [0, 1): the same numbers on every standard library for a given seed, which
  // std::uniform_real_distribution does not promise.
  const double unit = static_cast<double>(nextRandom() >> 11) * 0x1.0p-53;
  const double spread = (unit * 2.0 - 1.0) * options_.jitter;
  const double delay = std::clamp(base_ms_ * (1.0 + spread), 0.0, max_ms);
  base_ms_ = std::min(base_ms_ * options_.factor, max_ms);
  ++attempts_;
  return std::chrono::milliseconds(static_cast<int64_t>(delay));
}

uint64_t Backoff::nextRandom() {
  uint64_t z = (rng_state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void Backoff::reset() {
  base_ms_ = static_cast<double>(options_.initial.count());
  attempts_ = 0;
}

} // namespace mailgate::net

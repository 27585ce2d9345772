// Jittered exponential backoff for reconnects and retries. Plain value type, no I/O, any thread
// (but one object is not safe to share between threads).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace mailgate::net {

struct BackoffOptions {
  std::chrono::milliseconds initial{1000}; // first delay before jitter
  std::chrono::milliseconds max{300000};   // no delay ever exceeds this, jitter included
  double factor = 2.0;                     // growth per attempt; values below 1 count as 1
  double jitter = 0.2; // each delay is drawn uniformly from base*(1-jitter) .. base*(1+jitter);
                       // clamped to 0..1
  std::optional<uint64_t> seed{}; // fixed seed: the same sequence every time (tests); else random
};

class Backoff {
public:
  explicit Backoff(BackoffOptions options = {});

  // The delay to wait before the next attempt. The base grows initial, initial*factor, ... up to
  // max; the returned value is the base with jitter applied, never above max nor below 0.
  std::chrono::milliseconds next();

  // Back to the initial delay (call after a success).
  void reset();

  // How many times next() was called since construction or reset().
  [[nodiscard]] uint32_t attempts() const { return attempts_; }

private:
  BackoffOptions options_;
  double base_ms_;
  uint32_t attempts_ = 0;
  // SplitMix64: 8 bytes of state. Jitter needs no better randomness, and mailboxes each keep a
  // backoff, so std::mt19937_64's 2.5 KB per object would dominate their memory.
  uint64_t rng_state_ = 0;
  uint64_t nextRandom();
};

} // namespace mailgate::net

// Unique ids for messages and events: 26 characters of Crockford base32 (URL-safe, no
// look-alike letters), a 48-bit millisecond time followed by 80 random bits, as in ULID. Ids from
// one generator sort in creation order, even within one millisecond or when the clock steps back.
#pragma once

#include <cstdint>
#include <random>
#include <string>

namespace mailgate::store {

class IdGenerator {
public:
  // Seeds itself from std::random_device. Not thread-safe: one generator per thread.
  IdGenerator();
  explicit IdGenerator(uint64_t seed);

  [[nodiscard]] std::string next(int64_t now_ms);

private:
  void randomize();

  std::mt19937_64 rng_;
  int64_t last_ms_ = -1;
  uint16_t rand_hi_ = 0; // the 80 random bits: 16 high ...
  uint64_t rand_lo_ = 0; // ... and 64 low
};

} // namespace mailgate::store

#include "gateway/store/id_generator.h"

#include <algorithm>

namespace mailgate::store {
namespace {

constexpr char kAlphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

uint64_t seedFromDevice() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

} // namespace

IdGenerator::IdGenerator() : IdGenerator(seedFromDevice()) {}

IdGenerator::IdGenerator(uint64_t seed) : rng_(seed) {}

void IdGenerator::randomize() {
  rand_lo_ = rng_();
  // Leave the top bit clear so incrementing within one millisecond cannot wrap in practice.
  rand_hi_ = static_cast<uint16_t>(rng_() & 0x7fff);
}

std::string IdGenerator::next(int64_t now_ms) {
  now_ms = std::clamp<int64_t>(now_ms, 0, (int64_t{1} << 48) - 1);
  if (now_ms > last_ms_) {
    last_ms_ = now_ms;
    randomize();
  } else {
    // Same millisecond (or the clock went back): keep the time, step the random part.
    if (++rand_lo_ == 0) {
      ++rand_hi_;
    }
  }
  std::string out(26, '0');
  const auto time = static_cast<uint64_t>(last_ms_);
  for (int i = 0; i < 10; ++i) {
    out[9 - i] = kAlphabet[(time >> (5 * i)) & 31];
  }
  // 80 bits = 16 base32 digits; walk them from the least significant end.
  uint64_t lo = rand_lo_;
  uint64_t hi = rand_hi_;
  for (int i = 0; i < 16; ++i) {
    out[25 - i] = kAlphabet[lo & 31];
    lo = (lo >> 5) | ((hi & 31) << 59);
    hi >>= 5;
  }
  return out;
}

} // namespace mailgate::store

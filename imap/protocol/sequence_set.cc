#include "imap/protocol/sequence_set.h"

#include <algorithm>
#include <utility>

namespace mailgate::imap::protocol {
namespace {

// One seq-number: "*" or 1..4294967295 without leading zeros' overflow. Advances `pos`.
bool parseNumber(std::string_view text, std::size_t& pos, uint32_t& out) {
  if (pos < text.size() && text[pos] == '*') {
    ++pos;
    out = SequenceSet::kStar;
    return true;
  }
  uint64_t value = 0;
  const std::size_t start = pos;
  while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
    value = value * 10 + static_cast<uint64_t>(text[pos] - '0');
    if (value > UINT32_MAX) {
      return false;
    }
    ++pos;
  }
  if (pos == start || value == 0) {
    return false;
  }
  out = static_cast<uint32_t>(value);
  return true;
}

// The ranges sorted and merged (overlapping or adjacent ones joined).
std::vector<SequenceSet::Range> merged(std::vector<SequenceSet::Range> ranges) {
  std::sort(ranges.begin(), ranges.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<SequenceSet::Range> out;
  for (const auto& r : ranges) {
    if (!out.empty() &&
        static_cast<uint64_t>(r.first) <= static_cast<uint64_t>(out.back().last) + 1) {
      out.back().last = std::max(out.back().last, r.last);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

} // namespace

Result<SequenceSet> SequenceSet::parse(std::string_view text) {
  SequenceSet set;
  std::size_t pos = 0;
  while (true) {
    uint32_t first = 0;
    if (!parseNumber(text, pos, first)) {
      return fail("imap.syntax", "malformed sequence set");
    }
    uint32_t last = first;
    if (pos < text.size() && text[pos] == ':') {
      ++pos;
      if (!parseNumber(text, pos, last)) {
        return fail("imap.syntax", "malformed sequence set range");
      }
    }
    set.add(first, last);
    if (pos == text.size()) {
      return set;
    }
    if (text[pos] != ',') {
      return fail("imap.syntax", "malformed sequence set");
    }
    ++pos;
  }
}

SequenceSet SequenceSet::fromNumbers(std::vector<uint32_t> numbers) {
  std::sort(numbers.begin(), numbers.end());
  numbers.erase(std::unique(numbers.begin(), numbers.end()), numbers.end());
  SequenceSet set;
  for (const uint32_t n : numbers) {
    if (!set.ranges_.empty() && set.ranges_.back().last != kStar &&
        set.ranges_.back().last + 1 == n) {
      set.ranges_.back().last = n;
    } else {
      set.ranges_.push_back(Range{n, n});
    }
  }
  return set;
}

void SequenceSet::add(uint32_t first, uint32_t last) {
  if (first > last) {
    std::swap(first, last);
  }
  ranges_.push_back(Range{first, last});
}

bool SequenceSet::contains(uint32_t n) const {
  return std::any_of(ranges_.begin(), ranges_.end(),
                     [n](const Range& r) { return r.first <= n && n <= r.last; });
}

uint64_t SequenceSet::size() const {
  uint64_t total = 0;
  for (const auto& r : merged(ranges_)) {
    total += static_cast<uint64_t>(r.last) - r.first + 1;
  }
  return total;
}

Result<std::vector<uint32_t>> SequenceSet::expand(uint64_t limit) const {
  const auto ranges = merged(ranges_);
  uint64_t total = 0;
  for (const auto& r : ranges) {
    total += static_cast<uint64_t>(r.last) - r.first + 1;
  }
  if (total > limit) {
    return fail("imap.limit", "sequence set covers " + std::to_string(total) +
                                  " numbers, more than " + std::to_string(limit));
  }
  std::vector<uint32_t> out;
  out.reserve(static_cast<std::size_t>(total));
  for (const auto& r : ranges) {
    for (uint64_t n = r.first; n <= r.last; ++n) {
      out.push_back(static_cast<uint32_t>(n));
    }
  }
  return out;
}

std::string SequenceSet::format() const {
  std::string out;
  auto put = [&out](uint32_t n) {
    if (n == kStar) {
      out += '*';
    } else {
      out += std::to_string(n);
    }
  };
  for (const auto& r : ranges_) {
    if (!out.empty()) {
      out += ',';
    }
    put(r.first);
    if (r.last != r.first) {
      out += ':';
      put(r.last);
    }
  }
  return out;
}

} // namespace mailgate::imap::protocol

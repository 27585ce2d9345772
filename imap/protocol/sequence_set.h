// IMAP sequence sets ("1:4,7,9:*", RFC 9051 section 9 "sequence-set"), for UIDs and message
// numbers. Plain value type, no I/O.
#pragma once

#include "base/error.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::imap::protocol {

class SequenceSet {
public:
  // "*" in a parsed set (the largest number in use) is stored as kStar.
  static constexpr uint32_t kStar = UINT32_MAX;
  struct Range {
    uint32_t first = 0, last = 0; // first <= last after normalisation
  };

  SequenceSet() = default;
  // Parses "1:4,7,9:*". Numbers are 1..4294967295 (0 is refused), "*" becomes kStar. Ranges are
  // normalised (4:1 is 1:4) but kept in the order and overlap given. Fails with "imap.syntax".
  static Result<SequenceSet> parse(std::string_view text);
  // A set from numbers in any order: sorted, deduplicated, runs merged into ranges.
  static SequenceSet fromNumbers(std::vector<uint32_t> numbers);

  void add(uint32_t first, uint32_t last);
  [[nodiscard]] bool empty() const { return ranges_.empty(); }
  [[nodiscard]] const std::vector<Range>& ranges() const { return ranges_; }
  [[nodiscard]] bool contains(uint32_t n) const;
  // Total numbers covered, counting overlaps once; a range ending in kStar counts to kStar.
  [[nodiscard]] uint64_t size() const;
  // The numbers, ascending and unique; fails with "imap.limit" above `limit` numbers.
  [[nodiscard]] Result<std::vector<uint32_t>> expand(uint64_t limit) const;
  // "1:4,7,9:*": the wire form, always valid in a command when the set is not empty ("" if it
  // is: CommandBuilder::sequence() refuses an empty set).
  [[nodiscard]] std::string format() const;

private:
  std::vector<Range> ranges_;
};

} // namespace mailgate::imap::protocol

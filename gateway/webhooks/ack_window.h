// The contiguous-acknowledgement window of one webhook: which outbox events it still owes, and
// how far its cursor may move. Pure value type, no I/O; the dispatcher (dispatcher.h) drives it.
//
// Events enter in seq order, each either skipped (the hook does not want it: done at once) or
// opened (a request is owed). An opened event stays open until it is acknowledged (a 2xx), however
// many attempts that takes. The cursor is the highest seq such that every event at or below it is
// acknowledged or skipped, so a restart from the cursor loses nothing; events acknowledged above
// the first open one are sent again after a restart (at-least-once).
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>

namespace mailgate::webhooks {

class AckWindow {
public:
  // `cursor`: every seq <= cursor is done. `capacity`: open events at most (>= 1).
  explicit AckWindow(int64_t cursor, std::size_t capacity = 8);

  // Every seq <= cursor() is acknowledged or skipped. Never decreases.
  [[nodiscard]] int64_t cursor() const;
  // The highest seq that entered (skipped or opened); cursor() when none did.
  [[nodiscard]] int64_t last() const { return last_; }
  [[nodiscard]] std::size_t openCount() const { return open_.size(); }
  [[nodiscard]] bool full() const { return open_.size() >= capacity_; }
  [[nodiscard]] bool isOpen(int64_t seq) const { return open_.contains(seq); }

  // An event the hook does not want. Returns false (and changes nothing) unless seq > last().
  bool skip(int64_t seq);
  // An event a request is now owed for. Returns false (and changes nothing) unless seq > last()
  // and the window is not full.
  bool open(int64_t seq);
  // The event was delivered. Returns false for a seq that is not open (a late duplicate).
  bool ack(int64_t seq);

private:
  std::set<int64_t> open_;
  int64_t last_;
  std::size_t capacity_;
};

} // namespace mailgate::webhooks

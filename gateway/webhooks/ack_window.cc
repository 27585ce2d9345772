#include "gateway/webhooks/ack_window.h"

#include <algorithm>

namespace mailgate::webhooks {

AckWindow::AckWindow(int64_t cursor, std::size_t capacity)
    : last_(cursor), capacity_(std::max<std::size_t>(capacity, 1)) {}

int64_t AckWindow::cursor() const {
  // Everything at or below last_ that is not open is done, so the prefix ends just below the
  // oldest open event.
  return open_.empty() ? last_ : *open_.begin() - 1;
}

bool AckWindow::skip(int64_t seq) {
  if (seq <= last_) {
    return false;
  }
  last_ = seq;
  return true;
}

bool AckWindow::open(int64_t seq) {
  if (seq <= last_ || full()) {
    return false;
  }
  open_.insert(seq);
  last_ = seq;
  return true;
}

bool AckWindow::ack(int64_t seq) {
  return open_.erase(seq) == 1;
}

} // namespace mailgate::webhooks

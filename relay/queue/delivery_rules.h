// How one delivery attempt, or the end of a lifetime, changes a queued message. Pure functions
// over relay::QueuedMessage so every QueueStore back end decides the same way; the store only
// persists the result and reports it as events.
#pragma once

#include "relay/queue_store.h"

#include <cstddef>
#include <string>
#include <vector>

namespace mailgate::relay {

// What a call changed, as indexes into QueuedMessage::recipients (in RCPT order).
struct DeliveryEffects {
  std::vector<size_t> touched;   // every recipient this call gave a result or a new reply
  std::vector<size_t> rejected;  // failed permanently (5xx) in this call
  std::vector<size_t> expired;   // failed in this call because the lifetime ended
  std::vector<size_t> sent;      // delivered in this call
  std::vector<size_t> cancelled; // failed in this call because an operator cancelled the message
};

// Applies `outcome` to `msg`, which the caller has checked is in state sending (see
// QueueStore::recordAttempt for the rules). Sets recipients, state, next_attempt_ms (clamped to
// expires_at_ms) and last_reply. Does not check outcome.id.
DeliveryEffects applyAttempt(QueuedMessage& msg, const AttemptOutcome& outcome);

// Ends the lifetime of `msg`: pending recipients fail as expired; the state becomes sent if some
// recipient was delivered, else failed.
DeliveryEffects applyExpiry(QueuedMessage& msg, int64_t now_ms);

// Cancels `msg` (queued or deferred, checked by the caller): pending recipients fail with
// `reply`; the state becomes sent if some recipient was delivered, else failed.
DeliveryEffects applyCancel(QueuedMessage& msg, int64_t now_ms, const std::string& reply);

} // namespace mailgate::relay

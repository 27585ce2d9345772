#include "relay/queue/delivery_rules.h"

#include <algorithm>
#include <string>

namespace mailgate::relay {
namespace {

void failExpired(QueuedMessage& msg, DeliveryEffects& fx) {
  for (size_t i = 0; i < msg.recipients.size(); ++i) {
    auto& r = msg.recipients[i];
    if (r.status != RecipientStatus::kPending) {
      continue;
    }
    r.status = RecipientStatus::kFailed;
    r.last_reply = r.last_reply.empty()
                       ? std::string("message lifetime ended before delivery")
                       : "message lifetime ended before delivery; last reply: " + r.last_reply;
    fx.expired.push_back(i);
    if (std::find(fx.touched.begin(), fx.touched.end(), i) == fx.touched.end()) {
      fx.touched.push_back(i);
    }
  }
  std::sort(fx.touched.begin(), fx.touched.end());
}

// Once nothing is pending the message is finished: sent if anyone got it.
void settleFinished(QueuedMessage& msg) {
  const bool any_sent =
      std::any_of(msg.recipients.begin(), msg.recipients.end(),
                  [](const auto& r) { return r.status == RecipientStatus::kSent; });
  msg.state = any_sent ? MessageState::kSent : MessageState::kFailed;
}

} // namespace

DeliveryEffects applyAttempt(QueuedMessage& msg, const AttemptOutcome& outcome) {
  DeliveryEffects fx;
  std::vector<bool> answered(msg.recipients.size(), false);
  if (!outcome.whole_message_temp_failure) {
    for (const auto& o : outcome.recipients) {
      // The first pending recipient with this address that has no answer yet: duplicates in the
      // envelope get one outcome each.
      size_t i = 0;
      for (; i < msg.recipients.size(); ++i) {
        const auto& r = msg.recipients[i];
        if (!answered[i] && r.status == RecipientStatus::kPending && r.address == o.address) {
          break;
        }
      }
      if (i == msg.recipients.size()) {
        continue;
      }
      answered[i] = true;
      auto& r = msg.recipients[i];
      r.last_reply = o.reply;
      switch (o.result) {
      case DeliveryResult::kSent:
        r.status = RecipientStatus::kSent;
        fx.sent.push_back(i);
        break;
      case DeliveryResult::kPermFail:
        r.status = RecipientStatus::kFailed;
        fx.rejected.push_back(i);
        break;
      case DeliveryResult::kTempFail:
        break;
      }
    }
  }
  for (size_t i = 0; i < msg.recipients.size(); ++i) {
    auto& r = msg.recipients[i];
    if (answered[i]) {
      fx.touched.push_back(i);
    } else if (r.status == RecipientStatus::kPending) {
      if (!outcome.reply.empty()) {
        r.last_reply = outcome.reply;
      }
      fx.touched.push_back(i);
    }
  }

  if (!outcome.reply.empty()) {
    msg.last_reply = outcome.reply;
  } else {
    for (size_t i : fx.touched) {
      if (!msg.recipients[i].last_reply.empty()) {
        msg.last_reply = msg.recipients[i].last_reply;
        break;
      }
    }
  }

  if (msg.pendingRecipients() > 0 && outcome.now_ms >= msg.expires_at_ms) {
    failExpired(msg, fx);
  }
  if (msg.pendingRecipients() > 0) {
    msg.state = MessageState::kDeferred;
    msg.next_attempt_ms = std::min(outcome.next_attempt_ms, msg.expires_at_ms);
  } else {
    settleFinished(msg);
  }
  return fx;
}

DeliveryEffects applyCancel(QueuedMessage& msg, int64_t now_ms, const std::string& reply) {
  DeliveryEffects fx;
  for (size_t i = 0; i < msg.recipients.size(); ++i) {
    auto& r = msg.recipients[i];
    if (r.status == RecipientStatus::kPending) {
      r.status = RecipientStatus::kFailed;
      r.last_reply = reply;
      fx.cancelled.push_back(i);
      fx.touched.push_back(i);
    }
  }
  msg.last_reply = reply;
  settleFinished(msg);
  msg.next_attempt_ms = now_ms;
  return fx;
}

DeliveryEffects applyExpiry(QueuedMessage& msg, int64_t now_ms) {
  DeliveryEffects fx;
  failExpired(msg, fx);
  settleFinished(msg);
  msg.next_attempt_ms = now_ms;
  return fx;
}

} // namespace mailgate::relay

#include "relay/queue/delivery_rules.h"

#include <gtest/gtest.h>
#include <string>
#include <vector>

namespace mailgate::relay {
namespace {

constexpr int64_t kT0 = 1'000'000;

QueuedMessage sending(std::vector<std::string> rcpts, int64_t expires = kT0 + 100'000) {
  QueuedMessage m;
  m.id = "ID";
  m.state = MessageState::kSending;
  m.attempts = 1;
  m.created_ms = kT0;
  m.expires_at_ms = expires;
  for (auto& r : rcpts) {
    m.recipients.push_back(RecipientState{std::move(r), RecipientStatus::kPending, ""});
  }
  return m;
}

AttemptOutcome outcome(std::vector<RecipientOutcome> rs, int64_t now = kT0 + 10) {
  AttemptOutcome o;
  o.id = "ID";
  o.recipients = std::move(rs);
  o.now_ms = now;
  o.next_attempt_ms = now + 1000;
  return o;
}

TEST(DeliveryRulesTest, EveryRecipientSentMeansSent) {
  auto m = sending({"a", "b"});
  auto fx = applyAttempt(
      m, outcome({{"a", DeliveryResult::kSent, "250 a"}, {"b", DeliveryResult::kSent, "250 b"}}));
  EXPECT_EQ(m.state, MessageState::kSent);
  EXPECT_EQ(fx.sent, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(fx.touched, (std::vector<size_t>{0, 1}));
  EXPECT_TRUE(fx.rejected.empty());
  EXPECT_EQ(m.last_reply, "250 a"); // no message-level reply: the first recipient's
}

TEST(DeliveryRulesTest, MixedResultsDeferOnlyThePending) {
  auto m = sending({"a", "b", "c"});
  auto o = outcome({{"a", DeliveryResult::kSent, "250"},
                    {"b", DeliveryResult::kTempFail, "450"},
                    {"c", DeliveryResult::kPermFail, "550"}});
  o.reply = "250 data ok";
  auto fx = applyAttempt(m, o);
  EXPECT_EQ(m.state, MessageState::kDeferred);
  EXPECT_EQ(m.next_attempt_ms, o.next_attempt_ms);
  EXPECT_EQ(m.recipients[1].status, RecipientStatus::kPending);
  EXPECT_EQ(m.recipients[1].last_reply, "450");
  EXPECT_EQ(fx.rejected, (std::vector<size_t>{2}));
  EXPECT_EQ(m.last_reply, "250 data ok");
}

TEST(DeliveryRulesTest, UnmentionedPendingRecipientsKeepTheMessageReply) {
  auto m = sending({"a", "b"});
  auto o = outcome({{"a", DeliveryResult::kSent, "250"}});
  o.reply = "421 closing";
  applyAttempt(m, o);
  EXPECT_EQ(m.state, MessageState::kDeferred);
  EXPECT_EQ(m.recipients[1].status, RecipientStatus::kPending);
  EXPECT_EQ(m.recipients[1].last_reply, "421 closing");
}

TEST(DeliveryRulesTest, DuplicateRecipientsGetOneOutcomeEach) {
  auto m = sending({"a", "a"});
  applyAttempt(m, outcome({{"a", DeliveryResult::kSent, "250 first"},
                           {"a", DeliveryResult::kPermFail, "550 second"}}));
  EXPECT_EQ(m.recipients[0].status, RecipientStatus::kSent);
  EXPECT_EQ(m.recipients[1].status, RecipientStatus::kFailed);
  EXPECT_EQ(m.state, MessageState::kSent);
}

TEST(DeliveryRulesTest, OutcomesForUnknownOrFinishedRecipientsAreIgnored) {
  auto m = sending({"a", "b"});
  m.recipients[0].status = RecipientStatus::kSent;
  m.recipients[0].last_reply = "250 earlier";
  auto fx = applyAttempt(m, outcome({{"a", DeliveryResult::kPermFail, "550"},
                                     {"zz", DeliveryResult::kPermFail, "550"},
                                     {"b", DeliveryResult::kSent, "250 now"}}));
  EXPECT_EQ(m.recipients[0].status, RecipientStatus::kSent);
  EXPECT_EQ(m.recipients[0].last_reply, "250 earlier");
  EXPECT_TRUE(fx.rejected.empty());
  EXPECT_EQ(fx.touched, (std::vector<size_t>{1}));
  EXPECT_EQ(m.state, MessageState::kSent);
}

TEST(DeliveryRulesTest, AllRejectedMeansFailed) {
  auto m = sending({"a"});
  auto fx = applyAttempt(m, outcome({{"a", DeliveryResult::kPermFail, "550"}}));
  EXPECT_EQ(m.state, MessageState::kFailed);
  EXPECT_EQ(fx.rejected, (std::vector<size_t>{0}));
}

TEST(DeliveryRulesTest, WholeMessageFailureIgnoresRecipientResults) {
  auto m = sending({"a", "b"});
  auto o = outcome({{"a", DeliveryResult::kSent, "250"}});
  o.whole_message_temp_failure = true;
  o.reply = "connection refused";
  auto fx = applyAttempt(m, o);
  EXPECT_EQ(m.state, MessageState::kDeferred);
  EXPECT_EQ(m.pendingRecipients(), 2u);
  EXPECT_EQ(m.recipients[0].last_reply, "connection refused");
  EXPECT_TRUE(fx.sent.empty());
}

TEST(DeliveryRulesTest, NextAttemptNeverPassesTheLifetime) {
  auto m = sending({"a"}, kT0 + 500);
  auto o = outcome({{"a", DeliveryResult::kTempFail, "451"}});
  o.next_attempt_ms = kT0 + 10'000;
  applyAttempt(m, o);
  EXPECT_EQ(m.state, MessageState::kDeferred);
  EXPECT_EQ(m.next_attempt_ms, kT0 + 500);
}

TEST(DeliveryRulesTest, TemporaryFailureAtTheEndOfTheLifetimeExpires) {
  auto m = sending({"a", "b"}, kT0 + 500);
  auto fx = applyAttempt(m, outcome({{"a", DeliveryResult::kTempFail, "451 later"},
                                     {"b", DeliveryResult::kTempFail, "451 later"}},
                                    kT0 + 500));
  EXPECT_EQ(m.state, MessageState::kFailed);
  EXPECT_EQ(fx.expired, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(m.recipients[0].status, RecipientStatus::kFailed);
  EXPECT_NE(m.recipients[0].last_reply.find("451 later"), std::string::npos);
  EXPECT_NE(m.recipients[0].last_reply.find("lifetime"), std::string::npos);
}

TEST(DeliveryRulesTest, ExpiryKeepsDeliveredRecipientsAndFinishesAsSent) {
  auto m = sending({"a", "b"});
  m.state = MessageState::kDeferred;
  m.recipients[0].status = RecipientStatus::kSent;
  auto fx = applyExpiry(m, kT0 + 200'000);
  EXPECT_EQ(m.state, MessageState::kSent);
  EXPECT_EQ(fx.expired, (std::vector<size_t>{1}));
  EXPECT_EQ(fx.touched, (std::vector<size_t>{1}));
  EXPECT_EQ(m.recipients[1].last_reply, "message lifetime ended before delivery");

  auto none = sending({"a"});
  none.state = MessageState::kQueued;
  applyExpiry(none, kT0);
  EXPECT_EQ(none.state, MessageState::kFailed);
}

} // namespace
} // namespace mailgate::relay

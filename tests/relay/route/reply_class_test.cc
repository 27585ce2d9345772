// The Microsoft 365 reply table (../shared/MICROSOFT365.md), row by row, with its exact texts.
#include "relay/route/reply_class.h"

#include <algorithm>
#include <cctype>
#include <gtest/gtest.h>
#include <set>
#include <string>
#include <vector>

namespace mailgate::relay::route {
namespace {

struct Sample {
  int code;
  std::string text; // after the code
  std::string_view rule;
  ReplyAction action;
};

// Every line of the reply table, with its variants. The texts are the ones in MICROSOFT365.md;
// where the table elides ("...") both the elided form and a filled-in form are listed.
const std::vector<Sample>& samples() {
  static const std::vector<Sample> kSamples = {
      {554, "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
       "quota_exceeded", ReplyAction::kFailOver},
      {554,
       "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process "
       "message due to a permanent exception with message Cannot submit message.\n"
       "[Hostname=AM0PR01MB0001.eurprd01.prod.exchangelabs.com]",
       "quota_exceeded", ReplyAction::kFailOver},
      {554, "5.2.0 STOREDRV.Submission.Exception:OutboundSpamException ... RefuseQuota",
       "outbound_spam", ReplyAction::kFailOverAlert},
      {554,
       "5.2.0 STOREDRV.Submission.Exception:OutboundSpamException; Failed to process message due "
       "to a permanent exception with message\n[BeginDiagnosticData]WASCL UserAction verdict is "
       "not None. Actual verdict is RefuseQuota, ShowTierUpgrade.[EndDiagnosticData]",
       "outbound_spam", ReplyAction::kFailOverAlert},
      {550, "5.1.90 Your message can't be sent because you've reached your daily limit",
       "quota_exceeded_ndr", ReplyAction::kFailOver},
      {554, "5.2.2 Submission quota exceeded", "quota_exceeded_ndr", ReplyAction::kFailOver},
      {432, "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", "connection_limit",
       ReplyAction::kFewerConnections},
      {432, "4.3.2 Concurrent connections limit exceeded.", "connection_limit",
       ReplyAction::kFewerConnections},
      {450, "4.7.0 Message submission rate for this client has exceeded the configured limit",
       "rate_limited", ReplyAction::kPace},
      {451, "4.7.500 Server busy, rate limit reached", "rate_limited", ReplyAction::kPace},
      {421, "4.7.0 Too many messages in this session", "rate_limited", ReplyAction::kPace},
      {452, "4.3.1 Sender throttled, try again later", "rate_limited", ReplyAction::kPace},
      {550, "5.2.251 Sender throttled due to continuous ... errors", "sender_throttled",
       ReplyAction::kPauseRoute},
      {550, "5.2.252 Sender throttled due to continuous send as denied errors", "sender_throttled",
       ReplyAction::kPauseRoute},
      {550, "5.2.253 Sender throttled due to continuous ... errors", "sender_throttled",
       ReplyAction::kPauseRoute},
      {550, "5.2.254 Sender throttled due to continuous ... errors", "sender_throttled",
       ReplyAction::kPauseRoute},
      {550, "5.2.255 Sender throttled due to continuous ... errors", "sender_throttled",
       ReplyAction::kPauseRoute},
      {535,
       "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant",
       "smtp_auth_disabled", ReplyAction::kDisconnect},
      {535,
       "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox",
       "smtp_auth_disabled", ReplyAction::kDisconnect},
      {535,
       "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. "
       "Visit https://aka.ms/smtp_auth_disabled for more information.\n"
       "[AM0PR01CA0001.eurprd01.prod.exchangelabs.com]",
       "smtp_auth_disabled", ReplyAction::kDisconnect},
      {535, "5.7.139 Authentication unsuccessful, basic authentication is disabled.",
       "basic_auth_disabled", ReplyAction::kDisconnect},
      {535,
       "5.7.139 Authentication unsuccessful, user is locked by your organization's security "
       "defaults policy. Contact your administrator.",
       "basic_auth_disabled", ReplyAction::kDisconnect},
      {550, "5.7.30 Basic authentication is not supported for Client Submission.",
       "basic_auth_retired", ReplyAction::kDisconnect},
      {535, "5.7.3 Authentication unsuccessful", "auth_failed", ReplyAction::kDisconnect},
      {535, "5.7.139 Authentication unsuccessful, the user credentials were incorrect.",
       "auth_failed", ReplyAction::kDisconnect},
      {530, "5.7.57 Client not authenticated to send mail", "auth_failed",
       ReplyAction::kDisconnect},
      {550, "5.7.57 Client not authenticated to send mail. [BN1PR01CA0001]", "auth_failed",
       ReplyAction::kDisconnect},
      {550, "5.7.60 SMTP; Client does not have permissions to send as this sender",
       "send_as_denied", ReplyAction::kReject},
      {550, "5.1.8 Access denied, bad outbound sender", "bad_outbound_sender",
       ReplyAction::kDisconnect},
  };
  return kSamples;
}

std::string upper(std::string s) {
  std::ranges::transform(s, s.begin(), [](unsigned char c) { return std::toupper(c); });
  return s;
}

std::string lower(std::string s) {
  std::ranges::transform(s, s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

TEST(ReplyClass, EveryTableTextClassifiesToItsRow) {
  for (const Sample& s : samples()) {
    for (const std::string& text : {s.text, upper(s.text), lower(s.text)}) {
      SCOPED_TRACE(std::to_string(s.code) + " " + text);
      const ReplyRule* rule = classifyReply(s.code, text);
      ASSERT_NE(rule, nullptr);
      EXPECT_EQ(rule->name, s.rule);
      EXPECT_EQ(rule->action, s.action);
    }
  }
}

TEST(ReplyClass, EveryRowIsReachedByATableText) {
  std::set<std::string_view> reached;
  for (const Sample& s : samples()) {
    if (const ReplyRule* rule = classifyReply(s.code, s.text)) {
      reached.insert(rule->name);
    }
  }
  for (const ReplyRule& rule : replyRules()) {
    EXPECT_TRUE(reached.contains(rule.name)) << rule.name;
  }
}

TEST(ReplyClass, RowsHaveUniqueNamesAndHints) {
  std::set<std::string_view> names;
  for (const ReplyRule& rule : replyRules()) {
    EXPECT_FALSE(rule.name.empty());
    EXPECT_TRUE(names.insert(rule.name).second) << "duplicate " << rule.name;
    EXPECT_FALSE(rule.hint.empty()) << rule.name;
    EXPECT_TRUE(rule.code_class == 0 || rule.code_class == 4 || rule.code_class == 5);
    const bool has_needle =
        std::ranges::any_of(rule.all_of, [](std::string_view n) { return !n.empty(); }) ||
        std::ranges::any_of(rule.any_of, [](std::string_view n) { return !n.empty(); });
    EXPECT_TRUE(has_needle) << rule.name << " would match every reply";
  }
}

TEST(ReplyClass, AlertsAndSlowRetryWhereTheTableSaysSo) {
  const auto flags = [](int code, std::string_view text) {
    const ReplyRule* rule = classifyReply(code, text);
    EXPECT_NE(rule, nullptr) << text;
    return rule == nullptr ? std::pair{false, false} : std::pair{rule->alert, rule->slow_retry};
  };
  EXPECT_EQ(flags(554, "5.2.0 STOREDRV.Submission.Exception:OutboundSpamException ... RefuseQuota"),
            std::pair(true, false));
  EXPECT_EQ(flags(550, "5.2.251 Sender throttled due to continuous ... errors"),
            std::pair(true, false));
  EXPECT_EQ(flags(550, "5.1.8 Access denied, bad outbound sender"), std::pair(true, false));
  EXPECT_EQ(flags(535, "5.7.3 Authentication unsuccessful"), std::pair(false, true));
  EXPECT_EQ(flags(530, "5.7.57 Client not authenticated to send mail"), std::pair(false, true));
  EXPECT_EQ(flags(554, "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException"),
            std::pair(false, false));
  EXPECT_EQ(flags(535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
                       "for the Tenant"),
            std::pair(false, false));
  EXPECT_EQ(flags(550, "5.7.60 SMTP; Client does not have permissions to send as this sender"),
            std::pair(false, false));
}

TEST(ReplyClass, HintsSayWhatToDo) {
  const ReplyRule* smtp_auth = classifyReply(
      535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
           "Mailbox");
  ASSERT_NE(smtp_auth, nullptr);
  EXPECT_NE(smtp_auth->hint.find("Set-CASMailbox"), std::string_view::npos);
  EXPECT_NE(smtp_auth->hint.find("-SmtpClientAuthenticationDisabled $false"),
            std::string_view::npos);
  for (std::string_view text : {"5.7.139 Authentication unsuccessful, basic authentication is "
                                "disabled.",
                                "5.7.30 Basic authentication is not supported for Client "
                                "Submission."}) {
    const ReplyRule* rule = classifyReply(text.starts_with("5.7.30") ? 550 : 535, text);
    ASSERT_NE(rule, nullptr);
    EXPECT_NE(rule->hint.find("OAuth2"), std::string_view::npos) << text;
  }
  const ReplyRule* bad_password = classifyReply(535, "5.7.3 Authentication unsuccessful");
  ASSERT_NE(bad_password, nullptr);
  EXPECT_NE(bad_password->hint.find("hours"), std::string_view::npos);
  const ReplyRule* send_as =
      classifyReply(550, "5.7.60 SMTP; Client does not have permissions to send as this sender");
  ASSERT_NE(send_as, nullptr);
  EXPECT_NE(send_as->hint.find("primary address"), std::string_view::npos);
  const ReplyRule* blocked = classifyReply(550, "5.1.8 Access denied, bad outbound sender");
  ASSERT_NE(blocked, nullptr);
  EXPECT_NE(blocked->hint.find("Defender"), std::string_view::npos);
}

TEST(ReplyClass, NoAuthAfterStartTlsIsSmtpAuthDisabled) {
  const ReplyRule* rule = classifyError("smtp.auth_unavailable");
  ASSERT_NE(rule, nullptr);
  EXPECT_EQ(rule->name, "smtp_auth_disabled");
  EXPECT_EQ(rule->action, ReplyAction::kDisconnect);
  const ReplyRule* by_reply = classifyReply(
      535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
           "Tenant");
  EXPECT_EQ(rule, by_reply);
  EXPECT_EQ(classifyError("smtp.tls"), nullptr);
  EXPECT_EQ(classifyError(""), nullptr);
  EXPECT_EQ(classifyError("SMTP.AUTH_UNAVAILABLE "), nullptr);
}

TEST(ReplyClass, OrdinaryRepliesMatchNoRow) {
  EXPECT_EQ(classifyReply(550, "5.1.1 User unknown"), nullptr);
  EXPECT_EQ(classifyReply(451, "4.3.0 try later"), nullptr);
  EXPECT_EQ(classifyReply(421, "4.4.2 Connection dropped due to SocketError"), nullptr);
  EXPECT_EQ(classifyReply(552, "5.2.2 Mailbox full"), nullptr);
  EXPECT_EQ(classifyReply(554, "5.6.0 Corrupt message content"), nullptr);
  EXPECT_EQ(classifyReply(550, ""), nullptr);
  EXPECT_EQ(classifyReply(451, ""), nullptr);
}

TEST(ReplyClass, PositiveRepliesAreNeverClassified) {
  EXPECT_EQ(classifyReply(250, "2.0.0 OK rate limit 30 per minute"), nullptr);
  EXPECT_EQ(classifyReply(235, "2.7.0 Authentication successful"), nullptr);
  EXPECT_EQ(
      classifyReply(250, "2.6.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException"),
      nullptr);
  EXPECT_EQ(classifyReply(354, "Start mail input; too many messages"), nullptr);
}

TEST(ReplyClass, CodeClassSeparatesPacingFromPausing) {
  // "Sender throttled" is a pause on 5xx and plain pacing on 4xx.
  const ReplyRule* perm = classifyReply(550, "5.2.251 Sender throttled due to continuous errors");
  const ReplyRule* temp = classifyReply(451, "4.7.0 Sender throttled due to continuous errors");
  ASSERT_NE(perm, nullptr);
  ASSERT_NE(temp, nullptr);
  EXPECT_EQ(perm->action, ReplyAction::kPauseRoute);
  EXPECT_EQ(temp->action, ReplyAction::kPace);
  // A 5xx rate text is not pacing (the message failed for good); no row claims it.
  EXPECT_EQ(classifyReply(550, "5.7.1 too many messages from your IP"), nullptr);
  // Authentication rows are 5xx only.
  EXPECT_EQ(classifyReply(454, "4.7.0 Authentication unsuccessful, try later"), nullptr);
}

TEST(ReplyClass, StatusCodesAreNotFoundInsideLongerNumbers) {
  EXPECT_EQ(classifyReply(550, "5.0.0 Build 15.1.90 rejected the message"), nullptr);
  EXPECT_EQ(classifyReply(550, "5.0.0 relay 10.5.2.251 refused"), nullptr);
  EXPECT_EQ(classifyReply(550, "5.0.0 error 25.7.57"), nullptr);
  const ReplyRule* rule = classifyReply(550, "[5.1.90] limit reached");
  ASSERT_NE(rule, nullptr);
  EXPECT_EQ(rule->name, "quota_exceeded_ndr");
}

TEST(ReplyClass, SpecificRowsWinOverGeneralOnes) {
  // Both contain "Authentication unsuccessful"; the 5.7.139 rows come first.
  EXPECT_EQ(classifyReply(535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is "
                               "disabled for the Tenant")
                ->name,
            "smtp_auth_disabled");
  EXPECT_EQ(classifyReply(535, "5.7.3 Authentication unsuccessful")->name, "auth_failed");
  // An outbound spam verdict that also mentions the quota exception still alerts.
  EXPECT_EQ(
      classifyReply(554, "5.2.0 OutboundSpamException\nSubmissionQuotaExceededException")->action,
      ReplyAction::kFailOverAlert);
  // "SendAsDenied" under a 5.2.25x code is the From problem, not a throttle.
  EXPECT_EQ(classifyReply(550, "5.2.252 SendAsDenied; rep@acme.example not allowed to send as "
                               "boss@acme.example")
                ->name,
            "send_as_denied");
  // A throttle caused by failed logins pauses (and alerts) rather than waiting for a password.
  EXPECT_EQ(classifyReply(550,
                          "5.2.253 Sender throttled due to continuous authentication unsuccessful "
                          "errors")
                ->name,
            "sender_throttled");
  // Concurrency is not pacing although both are 4xx limits.
  EXPECT_EQ(classifyReply(432, "4.3.2 Concurrent connections limit exceeded. rate limit")->action,
            ReplyAction::kFewerConnections);
}

TEST(ReplyClass, ActionNames) {
  EXPECT_EQ(toString(ReplyAction::kFailOver), "fail_over");
  EXPECT_EQ(toString(ReplyAction::kFailOverAlert), "fail_over_alert");
  EXPECT_EQ(toString(ReplyAction::kFewerConnections), "fewer_connections");
  EXPECT_EQ(toString(ReplyAction::kPace), "pace");
  EXPECT_EQ(toString(ReplyAction::kPauseRoute), "pause_route");
  EXPECT_EQ(toString(ReplyAction::kDisconnect), "disconnect");
  EXPECT_EQ(toString(ReplyAction::kReject), "reject");
}

} // namespace
} // namespace mailgate::relay::route

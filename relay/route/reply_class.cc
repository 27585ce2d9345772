#include "relay/route/reply_class.h"

#include <array>
#include <cctype>

namespace mailgate::relay::route {

namespace {

constexpr std::string_view kSmtpAuthHint =
    "An administrator must enable Authenticated SMTP for this mailbox: Set-CASMailbox -Identity "
    "<address> -SmtpClientAuthenticationDisabled $false (tenant-wide: Set-TransportConfig "
    "-SmtpClientAuthenticationDisabled $false).";
constexpr std::string_view kQuotaHint =
    "The mailbox's rolling 24 h recipient limit is spent (mail sent from Outlook or other clients "
    "counts too); mail goes through the fallback relay until the window frees.";
constexpr std::string_view kOAuthHint =
    "Basic authentication (App Passwords) no longer works for this mailbox: connect it with OAuth2 "
    "(auth.method: oauth2).";

// Matching order: a row whose text also fits a later, more general row comes first (the 5.7.139
// rows before the generic "Authentication unsuccessful" one; SendAsDenied before the 5.2.25x
// throttling codes; sender throttling before any authentication row, so a throttle caused by
// failed logins still pauses the route and alerts).
constexpr std::array kRules = {
    ReplyRule{
        .name = "outbound_spam",
        .any_of = {"OutboundSpamException", "RefuseQuota"},
        .action = ReplyAction::kFailOverAlert,
        .alert = true,
        .hint =
            "Microsoft 365 refused the mailbox's mail as outbound spam or over quota; mail goes "
            "through the fallback relay. Check the account is not compromised and review "
            "recent bulk sends.",
    },
    ReplyRule{
        .name = "quota_exceeded",
        .all_of = {"SubmissionQuotaExceededException"},
        .action = ReplyAction::kFailOver,
        .hint = kQuotaHint,
    },
    ReplyRule{
        .name = "quota_exceeded_ndr",
        .any_of = {"5.1.90", "submission quota exceeded"},
        .action = ReplyAction::kFailOver,
        .hint = kQuotaHint,
    },
    ReplyRule{
        .name = "connection_limit",
        .any_of = {"sender thread limit exceeded", "concurrent connections limit exceeded"},
        .action = ReplyAction::kFewerConnections,
        .hint = "Microsoft 365 allows 3 concurrent SMTP connections per mailbox, other clients of "
                "the mailbox included; lower max_connections if this repeats.",
    },
    ReplyRule{
        .name = "rate_limited",
        .code_class = 4,
        .any_of = {"submission rate", "rate limit", "throttl", "too many messages"},
        .action = ReplyAction::kPace,
        .hint = "Microsoft 365 allows 30 messages per minute per mailbox, other clients of the "
                "mailbox included; lower messages_per_minute if this repeats.",
    },
    ReplyRule{
        .name = "send_as_denied",
        .code_class = 5,
        .any_of = {"5.7.60", "permissions to send as", "SendAsDenied"},
        .action = ReplyAction::kReject,
        .hint = "The From address must be the mailbox itself or an alias it may send as; check "
                "that the configured username is the mailbox's primary address.",
    },
    ReplyRule{
        .name = "sender_throttled",
        .code_class = 5,
        .any_of = {"5.2.25", "sender throttled"},
        .action = ReplyAction::kPauseRoute,
        .alert = true,
        .hint = "Microsoft 365 throttled the mailbox after continuous errors; the route pauses. "
                "Look at the failures that preceded it (rejected senders, logins, recipients).",
    },
    ReplyRule{
        .name = "bad_outbound_sender",
        .code_class = 5,
        .any_of = {"bad outbound sender"},
        .action = ReplyAction::kDisconnect,
        .alert = true,
        .hint = "Microsoft 365 blocked the mailbox for sending spam: an administrator must release "
                "it in the Microsoft Defender portal (Restricted entities) after securing the "
                "account.",
    },
    ReplyRule{
        .name = "smtp_auth_disabled",
        .code_class = 5,
        .all_of = {"SmtpClientAuthentication is disabled"},
        .action = ReplyAction::kDisconnect,
        .hint = kSmtpAuthHint,
    },
    ReplyRule{
        .name = "basic_auth_disabled",
        .code_class = 5,
        .any_of = {"basic authentication is disabled", "security defaults"},
        .action = ReplyAction::kDisconnect,
        .hint = kOAuthHint,
    },
    ReplyRule{
        .name = "basic_auth_retired",
        .code_class = 5,
        .any_of = {"basic authentication is not supported"},
        .action = ReplyAction::kDisconnect,
        .hint = kOAuthHint,
    },
    ReplyRule{
        .name = "auth_failed",
        .code_class = 5,
        .any_of = {"authentication unsuccessful", "client not authenticated", "5.7.57"},
        .action = ReplyAction::kDisconnect,
        .slow_retry = true,
        .hint = "Check the mailbox's password (App Password); a new App Password can take hours "
                "to start working, so the login is retried over hours.",
    },
};

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

char lower(char c) {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

// Case-insensitive (ASCII) substring search; a needle that starts with a digit is a status code
// and must not continue a longer number on its left.
bool contains(std::string_view text, std::string_view needle) {
  if (needle.size() > text.size()) {
    return false;
  }
  const bool code_like = isDigit(needle.front());
  for (size_t i = 0; i + needle.size() <= text.size(); ++i) {
    if (code_like && i > 0 && (isDigit(text[i - 1]) || text[i - 1] == '.')) {
      continue;
    }
    bool same = true;
    for (size_t j = 0; j < needle.size() && same; ++j) {
      same = lower(text[i + j]) == lower(needle[j]);
    }
    if (same) {
      return true;
    }
  }
  return false;
}

bool matches(const ReplyRule& rule, int code_class, std::string_view text) {
  if (rule.code_class != 0 && rule.code_class != code_class) {
    return false;
  }
  for (std::string_view needle : rule.all_of) {
    if (!needle.empty() && !contains(text, needle)) {
      return false;
    }
  }
  bool any_listed = false;
  for (std::string_view needle : rule.any_of) {
    if (needle.empty()) {
      continue;
    }
    any_listed = true;
    if (contains(text, needle)) {
      return true;
    }
  }
  return !any_listed;
}

const ReplyRule* ruleNamed(std::string_view name) {
  for (const ReplyRule& rule : kRules) {
    if (rule.name == name) {
      return &rule;
    }
  }
  return nullptr;
}

} // namespace

std::string_view toString(ReplyAction a) {
  switch (a) {
  case ReplyAction::kFailOver:
    return "fail_over";
  case ReplyAction::kFailOverAlert:
    return "fail_over_alert";
  case ReplyAction::kFewerConnections:
    return "fewer_connections";
  case ReplyAction::kPace:
    return "pace";
  case ReplyAction::kPauseRoute:
    return "pause_route";
  case ReplyAction::kDisconnect:
    return "disconnect";
  case ReplyAction::kReject:
    return "reject";
  }
  return "unknown";
}

std::span<const ReplyRule> replyRules() {
  return kRules;
}

const ReplyRule* classifyReply(int code, std::string_view text) {
  // Only failures are classified: a positive reply that mentions a limit is still a success.
  if (code < 400 || code > 599) {
    return nullptr;
  }
  for (const ReplyRule& rule : kRules) {
    if (matches(rule, code / 100, text)) {
      return &rule;
    }
  }
  return nullptr;
}

const ReplyRule* classifyError(std::string_view error_code) {
  if (error_code == "smtp.auth_unavailable") {
    return ruleNamed("smtp_auth_disabled");
  }
  return nullptr;
}

} // namespace mailgate::relay::route

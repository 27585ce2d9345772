// What a reply from Microsoft 365's SMTP submission means for the route, as a table: one row
// per line of the reply table in ../shared/MICROSOFT365.md (docs/routing.md repeats it for
// operators). Matching is by reply code class and by case-insensitive substrings of the reply
// text (enhanced status code included), because Microsoft varies the wording; the first row that
// matches wins. A needle that starts with a digit ("5.1.90") matches only where no digit or '.'
// comes before it, so a status code is not found inside a longer number ("15.1.90"). Replies that
// match no row, and 2xx/3xx replies, get the ordinary SMTP handling (4xx retry, 5xx fail).
#pragma once

#include <span>
#include <string_view>

namespace mailgate::relay::route {

enum class ReplyAction {
  kFailOver,         // the window quota is spent: this message and the following ones go to the
                     // fallback chain until the ledger's window frees
  kFailOverAlert,    // the same, plus an alert (outbound spam verdict)
  kFewerConnections, // concurrency limit: one connection fewer for the mailbox, retry soon
  kPace,             // per-minute rate: slow down to the paced rate, retry the message
  kPauseRoute,       // sender throttled: pause the mailbox's route for a while, alert
  kDisconnect,       // authentication or policy: the route is disconnected until a login works
  kReject,           // this message cannot go from this sender: fail it with the hint
};

[[nodiscard]] std::string_view toString(ReplyAction a);

struct ReplyRule {
  std::string_view name; // stable identifier for events and metrics: "quota_exceeded", ...
  // 0: any code; 4 or 5: that class only.
  int code_class = 0;
  // The text must contain every non-empty needle (case-insensitive)...
  std::string_view all_of[2] = {};
  // ...and, when any is non-empty, at least one of these.
  std::string_view any_of[4] = {};
  ReplyAction action = ReplyAction::kReject;
  bool alert = false;      // worth an alert-level event for the operator
  bool slow_retry = false; // kDisconnect: retry the login over hours (a new App Password can
                           // take hours to start working), not minutes
  std::string_view hint;   // what an administrator can do, one or two sentences
};

// Every row, in matching order.
[[nodiscard]] std::span<const ReplyRule> replyRules();

// The rule for a reply (code 200..599; `text` is everything after the code, enhanced status code
// included, lines joined with '\n'), or nullptr.
[[nodiscard]] const ReplyRule* classifyReply(int code, std::string_view text);

// The rule for a session that ended before it could send, by the client's error code:
// "smtp.auth_unavailable" (no AUTH in EHLO after STARTTLS) is SMTP AUTH disabled. nullptr for
// anything else (then the reply that came with it, if any, goes through classifyReply).
[[nodiscard]] const ReplyRule* classifyError(std::string_view error_code);

} // namespace mailgate::relay::route

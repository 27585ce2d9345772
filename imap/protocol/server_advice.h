// What a server's status response asks of the client, beyond the command's own outcome:
// Microsoft 365's throttling and availability texts (../shared/MICROSOFT365.md), RFC 5530 response
// codes, and authentication failures. Pure functions over parsed responses.
#pragma once

#include "imap/protocol/response.h"

#include <chrono>
#include <optional>
#include <string>

namespace mailgate::imap::protocol {

struct Advice {
  enum class Kind {
    kNone,          // nothing beyond the command's result
    kThrottled,     // "Request is throttled. Suggested Backoff Time: N milliseconds", [THROTTLED]
    kUnavailable,   // "Server Unavailable. 15", [UNAVAILABLE], "* BYE Connection closed. 14"
    kAuthFailed,    // NO [AUTHENTICATIONFAILED], "AUTHENTICATE failed", "LOGIN failed"
    kAuthTrouble,   // "User is authenticated but not connected." (too many logins)
    kLoginDisabled, // LOGINDISABLED, [PRIVACYREQUIRED], "basic authentication is disabled"
  };
  Kind kind = Kind::kNone;
  // kThrottled: the server's suggestion when it gave one (N ms, capped at 1 hour).
  std::optional<std::chrono::milliseconds> backoff;
  // For operators, in plain words (no credential): what to do, e.g. "check the App Password ...".
  std::string hint;
};

// Classifies a status response (tagged or untagged, BYE included). Matches substrings
// case-insensitively, as Microsoft's texts vary.
[[nodiscard]] Advice adviceFor(const StatusResponse& status);

} // namespace mailgate::imap::protocol

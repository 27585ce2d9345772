#include "imap/protocol/server_advice.h"

#include "imap/protocol/ascii.h"

#include <algorithm>
#include <initializer_list>

namespace mailgate::imap::protocol {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kMaxBackoff = std::chrono::hours(1);

bool codeIs(const StatusResponse& s, std::initializer_list<std::string_view> names) {
  if (!s.code) {
    return false;
  }
  return std::any_of(names.begin(), names.end(),
                     [&](std::string_view n) { return ascii::iequals(s.code->name, n); });
}

bool textHas(const StatusResponse& s, std::initializer_list<std::string_view> needles) {
  return std::any_of(needles.begin(), needles.end(), [&](std::string_view n) {
    return ascii::icontains(s.text, n) || (s.code && ascii::icontains(s.code->raw, n));
  });
}

// "... Suggested Backoff Time: 51234 milliseconds": the number after the colon, capped.
std::optional<milliseconds> suggestedBackoff(std::string_view text) {
  const std::string lowered = ascii::lower(text);
  const std::size_t at = lowered.find("suggested backoff time");
  if (at == std::string::npos) {
    return std::nullopt;
  }
  std::size_t pos = at + std::string_view("suggested backoff time").size();
  while (pos < lowered.size() && (lowered[pos] == ' ' || lowered[pos] == ':')) {
    ++pos;
  }
  const std::size_t start = pos;
  uint64_t value = 0;
  while (pos < lowered.size() && ascii::isDigit(lowered[pos])) {
    value = std::min<uint64_t>(value * 10 + static_cast<uint64_t>(lowered[pos] - '0'),
                               static_cast<uint64_t>(kMaxBackoff.count()));
    ++pos;
  }
  if (pos == start) {
    return std::nullopt;
  }
  // Microsoft writes milliseconds; a bare number is taken as milliseconds too.
  while (pos < lowered.size() && lowered[pos] == ' ') {
    ++pos;
  }
  if (lowered.compare(pos, 7, "second") == 0 || lowered.compare(pos, 3, "sec") == 0) {
    value = std::min<uint64_t>(value * 1000, static_cast<uint64_t>(kMaxBackoff.count()));
  }
  return milliseconds(static_cast<int64_t>(value));
}

Advice make(Advice::Kind kind, std::string hint, std::optional<milliseconds> backoff = {}) {
  Advice a;
  a.kind = kind;
  a.hint = std::move(hint);
  a.backoff = backoff;
  return a;
}

constexpr std::string_view kThrottledHint =
    "the server is throttling this mailbox: wait before sending more commands and keep fewer "
    "sessions open";
constexpr std::string_view kUnavailableHint =
    "the server is temporarily unavailable: reconnect later, with backoff";
constexpr std::string_view kAuthFailedHint =
    "the server refused the credentials: check the user name and the App Password, or reconnect "
    "the mailbox (its OAuth2 grant may have expired or been revoked)";
constexpr std::string_view kAuthTroubleHint =
    "authenticated but not connected: usually too many concurrent logins to this mailbox; close "
    "other sessions, lower the pool size, and retry later";
constexpr std::string_view kLoginDisabledHint =
    "the server does not accept password logins (basic authentication is disabled): use OAuth2 "
    "(XOAUTH2)";

} // namespace

Advice adviceFor(const StatusResponse& status) {
  // OK and PREAUTH say the command (or the connection) went through; only a throttling mark
  // (Gmail appends "[THROTTLED]" to an OK's text) still asks something of the client.
  if (status.status == Status::kOk || status.status == Status::kPreauth) {
    if (codeIs(status, {"THROTTLED"}) || textHas(status, {"[throttled]"})) {
      return make(Advice::Kind::kThrottled, std::string(kThrottledHint));
    }
    return {};
  }
  const bool refused = status.status == Status::kNo || status.status == Status::kBad;
  if (refused && textHas(status, {"request is throttled"})) {
    return make(Advice::Kind::kThrottled, std::string(kThrottledHint),
                suggestedBackoff(status.text));
  }
  if (codeIs(status, {"THROTTLED", "LIMIT", "INUSE"}) || textHas(status, {"[throttled]"})) {
    return make(Advice::Kind::kThrottled, std::string(kThrottledHint),
                suggestedBackoff(status.text));
  }
  if (textHas(status, {"user is authenticated but not connected"})) {
    return make(Advice::Kind::kAuthTrouble, std::string(kAuthTroubleHint));
  }
  if (codeIs(status, {"PRIVACYREQUIRED"}) ||
      textHas(status, {"basic authentication is disabled", "logindisabled", "login disabled",
                       "basicauthblocked", "basic auth is disabled"})) {
    return make(Advice::Kind::kLoginDisabled, std::string(kLoginDisabledHint));
  }
  if (codeIs(status, {"AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED", "EXPIRED"}) ||
      textHas(status, {"authenticate failed", "login failed"})) {
    return make(Advice::Kind::kAuthFailed, std::string(kAuthFailedHint));
  }
  if (codeIs(status, {"UNAVAILABLE"}) || textHas(status, {"server unavailable"}) ||
      (status.status == Status::kBye && textHas(status, {"connection closed"}))) {
    return make(Advice::Kind::kUnavailable, std::string(kUnavailableHint));
  }
  return {};
}

} // namespace mailgate::imap::protocol

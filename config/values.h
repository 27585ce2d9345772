// Value types of the configuration and their text forms: durations ("30s", "5m", "1h30m"),
// listen addresses ("127.0.0.1:2525", "[::1]:8025"), host names and URLs. Pure functions; the
// loader turns their errors into FILE:LINE:COL diagnostics.
#pragma once

#include "base/error.h"

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace mailgate::config {

using Duration = std::chrono::milliseconds;

// One or more NUMBER UNIT pairs, units ms, s, m, h, d: "250ms", "30s", "5m", "1h30m", "5d".
// A bare number has no unit and is refused (is 300 seconds or milliseconds?). Code
// "config.duration".
[[nodiscard]] Result<Duration> parseDuration(std::string_view text);
// The shortest text parseDuration() reads back to the same value, e.g. "1h30m", "250ms".
[[nodiscard]] std::string formatDuration(Duration d);

// A socket address to listen on: an IP literal and a port (0 lets the kernel choose, which tests
// use). IPv6 is written in brackets: "[::1]:8025".
struct Endpoint {
  std::string host; // IP literal, without brackets
  std::uint16_t port = 0;

  // "127.0.0.1:2525" or "[::1]:8025".
  [[nodiscard]] std::string str() const;
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

// Code "config.endpoint"; host names are refused (a listener binds an address, and resolving at
// load time would make the result depend on DNS).
[[nodiscard]] Result<Endpoint> parseEndpoint(std::string_view text);

// A DNS name (letters, digits, '-', '.', labels of 1..63, total <= 253) or an IP literal.
[[nodiscard]] bool isHostName(std::string_view text);

// An absolute URL whose scheme is one of `schemes` and which has a non-empty host. Code
// "config.url". The URL text is not repeated in the message (it may carry credentials).
[[nodiscard]] Result<void> checkUrl(std::string_view url,
                                    std::initializer_list<std::string_view> schemes);

// A plausible mail address: one '@', non-empty local part and a host name after it, no spaces
// or angle brackets. Not a full RFC 5321 parser; it catches typos in the configuration.
[[nodiscard]] bool isMailAddress(std::string_view text);

// Lower-cased copy, ASCII only; addresses and aliases are compared this way.
[[nodiscard]] std::string lowerAscii(std::string_view text);
// True when `text` holds an ASCII upper-case letter (lowerAscii would change it).
[[nodiscard]] bool hasUpperAscii(std::string_view text);

} // namespace mailgate::config

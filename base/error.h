// Errors as values. Every I/O and parse path returns Result<T>; nothing throws across the loop.
#pragma once

#include <expected>
#include <string>
#include <utility>

namespace mailgate {

// What went wrong, for code (code), for logs (message) and for the operator (hint).
// `code` is a short stable identifier such as "tls.handshake" or "config.unknown_key".
struct Error {
  std::string code;
  std::string message;
  std::string hint;

  Error() = default;
  Error(std::string c, std::string m, std::string h = {})
      : code(std::move(c)), message(std::move(m)), hint(std::move(h)) {}

  // "code: message (hint)" for logs. Never holds secrets: callers must not put them in.
  [[nodiscard]] std::string describe() const {
    std::string out = code;
    out += ": ";
    out += message;
    if (!hint.empty()) {
      out += " (hint: ";
      out += hint;
      out += ")";
    }
    return out;
  }
};

template <typename T> using Result = std::expected<T, Error>;

// Shorthand for a failed Result: `return fail("net.connect", "refused");`
inline std::unexpected<Error> fail(std::string code, std::string message, std::string hint = {}) {
  return std::unexpected<Error>(Error(std::move(code), std::move(message), std::move(hint)));
}

} // namespace mailgate

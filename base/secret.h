// A Secret holds a password, token or key. It can be read deliberately with reveal(), and formats
// as "***" everywhere else, so that no log line can ever print it by accident.
#pragma once

#include <fmt/format.h>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>

namespace mailgate {

class Secret {
public:
  Secret() = default;
  explicit Secret(std::string value) : value_(std::move(value)) {}

  // The only way to the cleartext. Call it where the secret is used on the wire, never in a log.
  [[nodiscard]] const std::string& reveal() const { return value_; }
  [[nodiscard]] bool empty() const { return value_.empty(); }

  friend bool operator==(const Secret&, const Secret&) = default;
  friend std::ostream& operator<<(std::ostream& os, const Secret&) { return os << "***"; }

private:
  std::string value_;
};

// Compares in time that depends only on the lengths, not on where the first difference is.
[[nodiscard]] inline bool constantTimeEquals(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::size_t n = a.size() < b.size() ? a.size() : b.size();
  for (std::size_t i = 0; i < n; ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

} // namespace mailgate

template <> struct fmt::formatter<mailgate::Secret> : fmt::formatter<std::string_view> {
  template <typename FormatContext> auto format(const mailgate::Secret&, FormatContext& ctx) const {
    return fmt::formatter<std::string_view>::format("***", ctx);
  }
};

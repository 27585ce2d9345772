// ASCII helpers shared by the IMAP sources (imap/protocol/ and the drivers in imap/; nothing
// outside imap/ includes it): IMAP keywords are ASCII and case-insensitive, and nothing here may
// depend on the C locale.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mailgate::imap::protocol::ascii {

constexpr char toUpper(char c) {
  return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
}
constexpr char toLower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}
constexpr bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

inline std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = toUpper(c);
  }
  return out;
}

inline std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = toLower(c);
  }
  return out;
}

constexpr bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (toUpper(a[i]) != toUpper(b[i])) {
      return false;
    }
  }
  return true;
}

// Case-insensitive substring search; `needle` must already be lower-case.
inline bool icontains(std::string_view haystack, std::string_view needle) {
  if (needle.size() > haystack.size()) {
    return false;
  }
  for (std::size_t i = 0; i + needle.size() <= haystack.size(); ++i) {
    std::size_t k = 0;
    while (k < needle.size() && toLower(haystack[i + k]) == needle[k]) {
      ++k;
    }
    if (k == needle.size()) {
      return true;
    }
  }
  return false;
}

} // namespace mailgate::imap::protocol::ascii

#include "relay/smtp/protocol/address.h"

#include <algorithm>
#include <cstdint>

namespace mailgate::relay::smtp {
namespace {

bool isAlpha(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool isDigit(unsigned char c) {
  return c >= '0' && c <= '9';
}
bool isHex(unsigned char c) {
  return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool isHigh(unsigned char c) {
  return c >= 0x80;
}

bool isAtext(unsigned char c) {
  if (isAlpha(c) || isDigit(c)) {
    return true;
  }
  constexpr std::string_view kSpecials = "!#$%&'*+-/=?^_`{|}~";
  return kSpecials.find(static_cast<char>(c)) != std::string_view::npos;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
           return lower(x) == lower(y);
         });
}

// Dot-string = Atom *("." Atom)
bool isDotString(std::string_view s, bool allow_utf8) {
  if (s.empty() || s.front() == '.' || s.back() == '.') {
    return false;
  }
  char prev = 0;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (ch == '.') {
      if (prev == '.') {
        return false;
      }
    } else if (!isAtext(c) && !(allow_utf8 && isHigh(c))) {
      return false;
    }
    prev = ch;
  }
  return true;
}

// Quoted-string = DQUOTE *QcontentSMTP DQUOTE, whole of `s`.
bool isQuotedString(std::string_view s, bool allow_utf8) {
  if (s.size() < 2 || s.front() != '"' || s.back() != '"') {
    return false;
  }
  for (std::size_t i = 1; i + 1 < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\\') {
      if (i + 2 >= s.size()) {
        return false; // the backslash would escape the closing quote
      }
      const auto q = static_cast<unsigned char>(s[++i]);
      if (q < 32 || q > 126) {
        return false;
      }
    } else if (c == '"') {
      return false;
    } else if (!((c >= 32 && c <= 126) || (allow_utf8 && isHigh(c)))) {
      return false;
    }
  }
  return true;
}

// Length of the Quoted-string at the start of `s` (including both quotes), or 0.
std::size_t quotedLength(std::string_view s) {
  if (s.empty() || s.front() != '"') {
    return 0;
  }
  for (std::size_t i = 1; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
    } else if (s[i] == '"') {
      return i + 1;
    }
  }
  return 0;
}

bool isIpv4(std::string_view s) {
  int parts = 0;
  std::size_t pos = 0;
  while (true) {
    std::size_t n = 0;
    int value = 0;
    while (pos + n < s.size() && isDigit(static_cast<unsigned char>(s[pos + n])) && n < 4) {
      value = value * 10 + (s[pos + n] - '0');
      ++n;
    }
    if (n == 0 || n > 3 || value > 255) {
      return false;
    }
    pos += n;
    ++parts;
    if (parts == 4) {
      return pos == s.size();
    }
    if (pos >= s.size() || s[pos] != '.') {
      return false;
    }
    ++pos;
  }
}

bool isIpv6(std::string_view s) {
  // Up to eight 16-bit groups, at most one "::", optionally ending in a dotted IPv4 address that
  // counts as two groups.
  int groups = 0;
  bool compressed = false;
  std::size_t pos = 0;
  if (s.starts_with("::")) {
    compressed = true;
    pos = 2;
    if (pos == s.size()) {
      return true;
    }
  } else if (s.starts_with(":")) {
    return false;
  }
  while (pos < s.size()) {
    std::size_t n = 0;
    while (pos + n < s.size() && isHex(static_cast<unsigned char>(s[pos + n]))) {
      ++n;
    }
    if (pos + n < s.size() && s[pos + n] == '.') {
      if (!isIpv4(s.substr(pos))) {
        return false;
      }
      groups += 2;
      pos = s.size();
      break;
    }
    if (n == 0 || n > 4) {
      return false;
    }
    ++groups;
    pos += n;
    if (pos == s.size()) {
      break;
    }
    if (s[pos] != ':') {
      return false;
    }
    ++pos;
    if (pos < s.size() && s[pos] == ':') {
      if (compressed) {
        return false;
      }
      compressed = true;
      ++pos;
      if (pos == s.size()) {
        break;
      }
    } else if (pos == s.size()) {
      return false; // a trailing single ':'
    }
  }
  return compressed ? groups <= 7 : groups == 8;
}

// address-literal = "[" ( IPv4-address-literal / IPv6-address-literal / General-address-literal )
// "]"
bool isAddressLiteral(std::string_view s) {
  if (s.size() < 3 || s.front() != '[' || s.back() != ']') {
    return false;
  }
  const std::string_view inner = s.substr(1, s.size() - 2);
  if (isIpv4(inner)) {
    return true;
  }
  const std::size_t colon = inner.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return false;
  }
  const std::string_view tag = inner.substr(0, colon);
  const std::string_view rest = inner.substr(colon + 1);
  if (equalsIgnoreCase(tag, "IPv6")) {
    return isIpv6(rest);
  }
  // Standardized-tag = Ldh-str; dcontent = %d33-90 / %d94-126
  if (!isValidDomain(tag, false) || tag.find('.') != std::string_view::npos || rest.empty()) {
    return false;
  }
  return std::all_of(rest.begin(), rest.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return (c >= 33 && c <= 90) || (c >= 94 && c <= 126);
  });
}

bool isValidMailboxImpl(std::string_view mailbox, bool allow_utf8) {
  if (mailbox.find('\0') != std::string_view::npos) {
    return false;
  }
  if (allow_utf8 && !isValidUtf8(mailbox)) {
    return false;
  }
  std::size_t local_len = 0;
  if (!mailbox.empty() && mailbox.front() == '"') {
    local_len = quotedLength(mailbox);
    if (local_len == 0 || !isQuotedString(mailbox.substr(0, local_len), allow_utf8)) {
      return false;
    }
  } else {
    local_len = mailbox.find('@');
    if (local_len == std::string_view::npos ||
        !isDotString(mailbox.substr(0, local_len), allow_utf8)) {
      return false;
    }
  }
  if (local_len > kMaxLocalPartOctets || local_len >= mailbox.size() || mailbox[local_len] != '@') {
    return false;
  }
  const std::string_view domain = mailbox.substr(local_len + 1);
  if (!domain.empty() && domain.front() == '[') {
    return isAddressLiteral(domain);
  }
  return isValidDomain(domain, allow_utf8);
}

} // namespace

bool isValidUtf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t n = 0;
    std::uint32_t cp = 0;
    std::uint32_t min = 0;
    if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
      cp = c & 0x1f;
      min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      cp = c & 0x0f;
      min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      cp = c & 0x07;
      min = 0x10000;
    } else {
      return false;
    }
    if (i + n >= text.size()) {
      return false;
    }
    for (std::size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xc0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

bool isValidDomain(std::string_view domain, bool allow_utf8) {
  if (domain.empty() || domain.size() > kMaxDomainOctets) {
    return false;
  }
  if (allow_utf8 && !isValidUtf8(domain)) {
    return false;
  }
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = domain.find('.', start);
    const std::string_view label =
        domain.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (const char ch : label) {
      const auto c = static_cast<unsigned char>(ch);
      if (!(isAlpha(c) || isDigit(c) || c == '-' || (allow_utf8 && isHigh(c)))) {
        return false;
      }
    }
    if (dot == std::string_view::npos) {
      return true;
    }
    start = dot + 1;
  }
}

bool isValidMailbox(std::string_view mailbox, bool allow_utf8) {
  return isValidMailboxImpl(mailbox, allow_utf8);
}

Result<ParsedPath> parsePath(std::string_view text, PathKind kind) {
  const char* what =
      kind == PathKind::kReversePath ? "Bad sender address syntax" : "Bad recipient address syntax";
  if (text.size() < 2 || text.front() != '<' || text.back() != '>') {
    return fail("smtp.address", what);
  }
  if (text.size() > kMaxPathOctets) {
    return fail("smtp.address", "Address too long");
  }
  std::string_view inner = text.substr(1, text.size() - 2);
  ParsedPath path;
  if (inner.empty()) {
    if (kind == PathKind::kReversePath) {
      return path;
    }
    return fail("smtp.address", what);
  }
  if (kind == PathKind::kForwardPath && equalsIgnoreCase(inner, "postmaster")) {
    path.address = "postmaster";
    path.is_postmaster = true;
    return path;
  }
  // A-d-l = At-domain *( "," At-domain ) ":"; each At-domain = "@" Domain.
  if (inner.front() == '@') {
    const std::size_t colon = inner.find(':');
    if (colon == std::string_view::npos) {
      return fail("smtp.address", what);
    }
    std::string_view route = inner.substr(0, colon);
    while (!route.empty()) {
      const std::size_t comma = route.find(',');
      const std::string_view hop = route.substr(0, comma);
      if (hop.size() < 2 || hop.front() != '@' || !isValidDomain(hop.substr(1), true)) {
        return fail("smtp.address", what);
      }
      route = comma == std::string_view::npos ? std::string_view{} : route.substr(comma + 1);
      if (comma != std::string_view::npos && route.empty()) {
        return fail("smtp.address", what);
      }
    }
    inner = inner.substr(colon + 1);
  }
  const bool non_ascii = std::any_of(inner.begin(), inner.end(),
                                     [](char c) { return isHigh(static_cast<unsigned char>(c)); });
  if (!isValidMailboxImpl(inner, non_ascii)) {
    return fail("smtp.address", what);
  }
  path.address = std::string(inner);
  path.non_ascii = non_ascii;
  return path;
}

} // namespace mailgate::relay::smtp

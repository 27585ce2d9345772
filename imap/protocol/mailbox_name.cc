#include "imap/protocol/mailbox_name.h"

#include "imap/protocol/ascii.h"

#include <array>
#include <cstdint>
#include <vector>

namespace mailgate::imap::protocol {
namespace {

// RFC 3501 5.1.3: RFC 2152's base64 with ',' in place of '/', never padded.
constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

constexpr std::array<int8_t, 256> makeTable() {
  std::array<int8_t, 256> table{};
  for (auto& v : table) {
    v = -1;
  }
  for (std::size_t i = 0; i < kAlphabet.size(); ++i) {
    table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int8_t>(i);
  }
  return table;
}
constexpr std::array<int8_t, 256> kTable = makeTable();

bool printableAscii(unsigned char c) {
  return c >= 0x20 && c <= 0x7e;
}

// Decodes one UTF-8 code point at `pos` (strict: no overlong forms, no surrogates, at most
// U+10FFFF). Advances `pos`; false on invalid input.
bool nextCodePoint(std::string_view s, std::size_t& pos, uint32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  std::size_t len = 0;
  uint32_t min = 0;
  if (b0 < 0x80) {
    cp = b0;
    ++pos;
    return true;
  }
  if ((b0 & 0xe0) == 0xc0) {
    len = 2;
    cp = b0 & 0x1f;
    min = 0x80;
  } else if ((b0 & 0xf0) == 0xe0) {
    len = 3;
    cp = b0 & 0x0f;
    min = 0x800;
  } else if ((b0 & 0xf8) == 0xf0) {
    len = 4;
    cp = b0 & 0x07;
    min = 0x10000;
  } else {
    return false;
  }
  if (pos + len > s.size()) {
    return false;
  }
  for (std::size_t i = 1; i < len; ++i) {
    const auto b = static_cast<unsigned char>(s[pos + i]);
    if ((b & 0xc0) != 0x80) {
      return false;
    }
    cp = (cp << 6) | (b & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
    return false;
  }
  pos += len;
  return true;
}

bool validUtf8(std::string_view s) {
  std::size_t pos = 0;
  uint32_t cp = 0;
  while (pos < s.size()) {
    if (!nextCodePoint(s, pos, cp)) {
      return false;
    }
  }
  return true;
}

void appendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

// Modified base64 of UTF-16BE units, closed by '-'.
void appendShifted(std::string& out, const std::vector<uint16_t>& units) {
  out += '&';
  uint32_t bits = 0;
  int count = 0;
  for (const uint16_t u : units) {
    bits = (bits << 16) | u;
    count += 16;
    while (count >= 6) {
      count -= 6;
      out += kAlphabet[(bits >> count) & 0x3f];
    }
    bits &= (1u << count) - 1;
  }
  if (count > 0) {
    out += kAlphabet[(bits << (6 - count)) & 0x3f];
  }
  out += '-';
}

Error nameError(std::string message) {
  return Error("imap.mailbox_name", std::move(message));
}

} // namespace

Result<std::string> encodeMailboxName(std::string_view utf8) {
  std::string out;
  out.reserve(utf8.size());
  std::vector<uint16_t> units;
  std::size_t pos = 0;
  while (pos < utf8.size()) {
    uint32_t cp = 0;
    if (!nextCodePoint(utf8, pos, cp)) {
      return std::unexpected(nameError("mailbox name is not valid UTF-8"));
    }
    if (cp < 0x80 && printableAscii(static_cast<unsigned char>(cp))) {
      if (!units.empty()) {
        appendShifted(out, units);
        units.clear();
      }
      out += static_cast<char>(cp);
      if (cp == '&') {
        out += '-';
      }
      continue;
    }
    if (cp >= 0x10000) {
      const uint32_t v = cp - 0x10000;
      units.push_back(static_cast<uint16_t>(0xd800 | (v >> 10)));
      units.push_back(static_cast<uint16_t>(0xdc00 | (v & 0x3ff)));
    } else {
      units.push_back(static_cast<uint16_t>(cp));
    }
  }
  if (!units.empty()) {
    appendShifted(out, units);
  }
  return out;
}

Result<std::string> decodeMailboxName(std::string_view mutf7) {
  bool eight_bit = false;
  for (const char c : mutf7) {
    eight_bit = eight_bit || static_cast<unsigned char>(c) >= 0x80;
  }
  if (eight_bit) {
    // Raw UTF-8 from a server that ignores RFC 3501 (only unambiguous without '&').
    if (mutf7.find('&') == std::string_view::npos && validUtf8(mutf7)) {
      return std::string(mutf7);
    }
    return std::unexpected(nameError("mailbox name mixes 8-bit bytes and modified UTF-7"));
  }
  std::string out;
  out.reserve(mutf7.size());
  std::size_t pos = 0;
  while (pos < mutf7.size()) {
    const auto c = static_cast<unsigned char>(mutf7[pos]);
    if (!printableAscii(c)) {
      return std::unexpected(nameError("control character in mailbox name"));
    }
    ++pos;
    if (c != '&') {
      out += static_cast<char>(c);
      continue;
    }
    if (pos < mutf7.size() && mutf7[pos] == '-') {
      out += '&';
      ++pos;
      continue;
    }
    uint32_t bits = 0;
    int count = 0;
    uint32_t high = 0; // a pending high surrogate
    bool any = false;
    while (true) {
      if (pos >= mutf7.size()) {
        return std::unexpected(nameError("unterminated '&' shift in mailbox name"));
      }
      const char d = mutf7[pos++];
      if (d == '-') {
        break;
      }
      const int8_t v = kTable[static_cast<unsigned char>(d)];
      if (v < 0) {
        return std::unexpected(nameError("invalid character in a '&' shift of a mailbox name"));
      }
      bits = (bits << 6) | static_cast<uint32_t>(v);
      count += 6;
      if (count < 16) {
        continue;
      }
      count -= 16;
      const uint32_t unit = (bits >> count) & 0xffff;
      bits &= (1u << count) - 1;
      any = true;
      if (high != 0) {
        if (unit < 0xdc00 || unit > 0xdfff) {
          return std::unexpected(nameError("unpaired surrogate in mailbox name"));
        }
        appendUtf8(out, 0x10000 + ((high - 0xd800) << 10) + (unit - 0xdc00));
        high = 0;
      } else if (unit >= 0xd800 && unit <= 0xdbff) {
        high = unit;
      } else if (unit >= 0xdc00 && unit <= 0xdfff) {
        return std::unexpected(nameError("unpaired surrogate in mailbox name"));
      } else if (unit < 0x80 && printableAscii(static_cast<unsigned char>(unit))) {
        // RFC 3501: printable ASCII must represent itself; a second spelling of a name is refused.
        return std::unexpected(nameError("printable ASCII inside a '&' shift of a mailbox name"));
      } else {
        appendUtf8(out, unit);
      }
    }
    if (!any || high != 0 || count >= 6 || bits != 0) {
      return std::unexpected(nameError("malformed '&' shift in mailbox name"));
    }
  }
  return out;
}

bool sameMailbox(std::string_view a, std::string_view b) {
  if (ascii::iequals(a, "INBOX") && ascii::iequals(b, "INBOX")) {
    return true;
  }
  return a == b;
}

} // namespace mailgate::imap::protocol

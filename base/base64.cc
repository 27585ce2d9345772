#include "base/base64.h"

#include <array>
#include <cstdint>

namespace mailgate {
namespace {

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<std::int8_t, 256> makeTable() {
  std::array<std::int8_t, 256> table{};
  for (auto& v : table) {
    v = -1;
  }
  for (std::size_t i = 0; i < kAlphabet.size(); ++i) {
    table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::int8_t>(i);
  }
  return table;
}

constexpr std::array<std::int8_t, 256> kTable = makeTable();

} // namespace

std::string base64Encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v = (static_cast<unsigned char>(bytes[i]) << 16) |
                            (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                            static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    const std::uint32_t v = static_cast<unsigned char>(bytes[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (rest == 2) {
    const std::uint32_t v = (static_cast<unsigned char>(bytes[i]) << 16) |
                            (static_cast<unsigned char>(bytes[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

Result<std::string> base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) {
    return fail("base64.invalid", "base64 length is not a multiple of four");
  }
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last_group = i + 4 == text.size();
    int pad = 0;
    if (last_group) {
      if (text[i + 3] == '=') {
        pad = text[i + 2] == '=' ? 2 : 1;
      }
    }
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      if (static_cast<int>(k) >= 4 - pad) {
        v <<= 6;
        continue;
      }
      const std::int8_t d = kTable[static_cast<unsigned char>(text[i + k])];
      if (d < 0) {
        return fail("base64.invalid", "invalid base64 character");
      }
      v = (v << 6) | static_cast<std::uint32_t>(d);
    }
    out += static_cast<char>((v >> 16) & 0xff);
    if (pad == 2) {
      if ((v & 0xffff) != 0) {
        return fail("base64.invalid", "non-canonical base64 padding bits");
      }
      break;
    }
    out += static_cast<char>((v >> 8) & 0xff);
    if (pad == 1) {
      if ((v & 0xff) != 0) {
        return fail("base64.invalid", "non-canonical base64 padding bits");
      }
      break;
    }
    out += static_cast<char>(v & 0xff);
  }
  return out;
}

} // namespace mailgate

#include "gateway/message/base64.h"

#include <array>
#include <cstdint>

namespace mailgate::message::detail {

namespace {

constexpr int kSkip = -2;
constexpr int kBad = -1;

constexpr std::array<int, 256> makeTable() {
  std::array<int, 256> table{};
  table.fill(kBad);
  constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (std::size_t i = 0; i < kAlphabet.size(); ++i) {
    table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int>(i);
  }
  for (const char c : {' ', '\t', '\r', '\n'}) {
    table[static_cast<unsigned char>(c)] = kSkip;
  }
  return table;
}

constexpr std::array<int, 256> kTable = makeTable();

} // namespace

std::expected<std::string, Base64Error> decodeBase64(std::string_view text) {
  std::string out;
  out.reserve(decodedSizeBound(text));
  uint32_t group = 0;
  int count = 0;       // characters in `group`
  bool padded = false; // an '=' was seen: only more '=' and white space may follow
  std::size_t padding = 0;
  std::size_t last_data = 0; // offset of the last data character
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const int value = kTable[static_cast<unsigned char>(c)];
    if (value == kSkip) {
      continue;
    }
    if (c == '=') {
      // Padding completes a group of two or three characters, to four.
      if (count < 2 || count + static_cast<int>(padding) >= 4) {
        return std::unexpected(Base64Error{i, false});
      }
      padded = true;
      ++padding;
      continue;
    }
    if (value == kBad || padded) {
      return std::unexpected(Base64Error{i, c == '-' || c == '_'});
    }
    last_data = i;
    group = (group << 6) | static_cast<uint32_t>(value);
    if (++count == 4) {
      out.push_back(static_cast<char>((group >> 16) & 0xff));
      out.push_back(static_cast<char>((group >> 8) & 0xff));
      out.push_back(static_cast<char>(group & 0xff));
      group = 0;
      count = 0;
    }
  }
  if (count == 1) {
    return std::unexpected(Base64Error{last_data, false});
  }
  if (count == 2) {
    out.push_back(static_cast<char>((group >> 4) & 0xff));
  } else if (count == 3) {
    out.push_back(static_cast<char>((group >> 10) & 0xff));
    out.push_back(static_cast<char>((group >> 2) & 0xff));
  }
  return out;
}

std::size_t decodedSizeBound(std::string_view text) {
  return text.size() / 4 * 3 + 3;
}

} // namespace mailgate::message::detail

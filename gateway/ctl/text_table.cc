#include "gateway/ctl/text_table.h"

#include <algorithm>
#include <cstdint>

namespace mailgate::ctl {

namespace {

constexpr std::size_t kLastColumnDefault = 60;
constexpr std::size_t kLastColumnMin = 10;
constexpr std::string_view kEllipsis = "\u2026";
constexpr std::string_view kGap = "  ";

// Length of the UTF-8 sequence starting at s[i], or 0 when it is not valid UTF-8.
std::size_t utf8Length(std::string_view s, std::size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  std::size_t n = 0;
  uint32_t cp = 0;
  if (b < 0x80) {
    return 1;
  }
  if ((b & 0xE0) == 0xC0) {
    n = 2;
    cp = b & 0x1F;
  } else if ((b & 0xF0) == 0xE0) {
    n = 3;
    cp = b & 0x0F;
  } else if ((b & 0xF8) == 0xF0) {
    n = 4;
    cp = b & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) {
    return 0;
  }
  for (std::size_t k = 1; k < n; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) {
      return 0;
    }
    cp = (cp << 6) | (c & 0x3F);
  }
  // Overlong forms, surrogates and values past U+10FFFF are not valid UTF-8.
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return n;
}

} // namespace

std::string sanitizeCell(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const auto b = static_cast<unsigned char>(text[i]);
    const std::size_t n = utf8Length(text, i);
    if (n == 0) {
      out.push_back('?');
      ++i;
      continue;
    }
    if (n == 1) {
      if (b == '\r' || b == '\n' || b == '\t') {
        out.push_back(' ');
      } else if (b < 0x20 || b == 0x7F) {
        out.push_back('?');
      } else {
        out.push_back(static_cast<char>(b));
      }
    } else if (n == 2 && b == 0xC2 && static_cast<unsigned char>(text[i + 1]) < 0xA0) {
      out.push_back('?'); // C1 controls, U+0080..U+009F (CSI among them)
    } else {
      out.append(text.substr(i, n));
    }
    i += n;
  }
  return out;
}

std::size_t displayWidth(std::string_view text) {
  std::size_t w = 0;
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t n = utf8Length(text, i);
    i += n == 0 ? 1 : n;
    ++w;
  }
  return w;
}

std::string truncateDisplay(std::string_view text, std::size_t width) {
  if (displayWidth(text) <= width) {
    return std::string(text);
  }
  if (width == 0) {
    return {};
  }
  std::size_t i = 0;
  for (std::size_t w = 0; w + 1 < width && i < text.size(); ++w) {
    const std::size_t n = utf8Length(text, i);
    i += n == 0 ? 1 : n;
  }
  std::string out(text.substr(0, i));
  out += kEllipsis;
  return out;
}

TextTable::TextTable(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void TextTable::addRow(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  for (auto& c : cells) {
    c = sanitizeCell(c);
  }
  rows_.push_back(std::move(cells));
}

std::string TextTable::render(std::size_t line_width) const {
  const std::size_t columns = headers_.size();
  if (columns == 0) {
    return {};
  }
  std::vector<std::size_t> widths(columns, 0);
  const auto measure = [&](const std::vector<std::string>& row) {
    for (std::size_t c = 0; c + 1 < columns; ++c) {
      widths[c] = std::max(widths[c], displayWidth(row[c]));
    }
  };
  measure(headers_);
  for (const auto& row : rows_) {
    measure(row);
  }
  std::size_t last_start = 0;
  for (std::size_t c = 0; c + 1 < columns; ++c) {
    last_start += widths[c] + kGap.size();
  }
  std::size_t last_max = kLastColumnDefault;
  if (line_width > 0) {
    last_max = line_width > last_start ? line_width - last_start : 0;
    last_max = std::max(last_max, kLastColumnMin);
  }
  std::string out;
  const auto emit = [&](const std::vector<std::string>& row) {
    std::string line;
    for (std::size_t c = 0; c + 1 < columns; ++c) {
      line += row[c];
      line.append(widths[c] - displayWidth(row[c]) + kGap.size(), ' ');
    }
    line += truncateDisplay(row[columns - 1], last_max);
    while (!line.empty() && line.back() == ' ') {
      line.pop_back();
    }
    out += line;
    out += '\n';
  };
  emit(headers_);
  for (const auto& row : rows_) {
    emit(row);
  }
  return out;
}

void KeyValueBlock::add(std::string key, std::string value) {
  lines_.emplace_back(std::move(key), sanitizeCell(value));
}

std::string KeyValueBlock::render() const {
  std::size_t width = 0;
  for (const auto& [k, v] : lines_) {
    width = std::max(width, displayWidth(k) + 1);
  }
  std::string out;
  for (const auto& [k, v] : lines_) {
    std::string line = k + ":";
    line.append(width - displayWidth(k) - 1 + 1, ' ');
    line += v;
    while (!line.empty() && line.back() == ' ') {
      line.pop_back();
    }
    out += line;
    out += '\n';
  }
  return out;
}

} // namespace mailgate::ctl

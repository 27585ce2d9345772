// Plain-text layout for mailgatectl's human output: aligned tables and "key: value" blocks.
// Every cell is made safe for a terminal first: text from the server (upstream SMTP replies)
// could hold escape sequences or line breaks.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mailgate::ctl {

// One line of terminal-safe text: CR, LF and TAB become spaces, other C0/C1 control characters
// and DEL become '?', invalid UTF-8 bytes become '?'.
std::string sanitizeCell(std::string_view text);

// Display width, counted in code points (what a terminal shows for the texts mailgate handles).
std::size_t displayWidth(std::string_view text);

// `text` cut to at most `width` code points, the last one an ellipsis when something was cut.
std::string truncateDisplay(std::string_view text, std::size_t width);

class TextTable {
public:
  explicit TextTable(std::vector<std::string> headers);

  // Cells beyond the header count are dropped, missing ones are empty.
  void addRow(std::vector<std::string> cells);
  [[nodiscard]] bool empty() const { return rows_.empty(); }

  // Columns two spaces apart, each padded to its widest cell; no trailing spaces. The last
  // column is cut so each line fits in `line_width` code points (never below 10 for that
  // column); line_width 0 means: cut the last column at 60.
  [[nodiscard]] std::string render(std::size_t line_width) const;

private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

class KeyValueBlock {
public:
  void add(std::string key, std::string value);

  // "key:" padded so every value starts in the same column, one line per key.
  [[nodiscard]] std::string render() const;

private:
  std::vector<std::pair<std::string, std::string>> lines_;
};

} // namespace mailgate::ctl

#include "relay/smtp/protocol/reply.h"

#include <utility>

namespace mailgate::relay::smtp {
namespace {

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

// Digits after a dot: one to three of them.
std::size_t digitRun(std::string_view s, std::size_t pos) {
  std::size_t n = 0;
  while (pos + n < s.size() && isDigit(s[pos + n])) {
    ++n;
  }
  return n;
}

} // namespace

std::string Reply::text() const {
  std::string out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      out += '\n';
    }
    out += lines[i];
  }
  return out;
}

std::string Reply::describe() const {
  std::string out = std::to_string(code);
  if (!enhanced.empty()) {
    out += ' ';
    out += enhanced;
  }
  for (std::size_t i = 0; i < lines.size(); ++i) {
    out += i == 0 ? " " : " / ";
    out += lines[i];
  }
  return out;
}

std::size_t enhancedCodeLength(std::string_view text) {
  if (text.size() < 5 || (text[0] != '2' && text[0] != '4' && text[0] != '5') || text[1] != '.') {
    return 0;
  }
  const std::size_t subject = digitRun(text, 2);
  if (subject == 0 || subject > 3 || 2 + subject >= text.size() || text[2 + subject] != '.') {
    return 0;
  }
  const std::size_t detail_at = 3 + subject;
  const std::size_t detail = digitRun(text, detail_at);
  if (detail == 0 || detail > 3) {
    return 0;
  }
  const std::size_t end = detail_at + detail;
  if (end < text.size() && text[end] != ' ') {
    return 0;
  }
  return end;
}

std::string formatReply(int code, std::string_view enhanced, std::string_view text) {
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  while (true) {
    const std::size_t nl = text.find('\n', start);
    lines.push_back(text.substr(start, nl == std::string_view::npos ? nl : nl - start));
    if (nl == std::string_view::npos) {
      break;
    }
    start = nl + 1;
  }
  const std::string code_text = std::to_string(code);
  std::string out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    out += code_text;
    out += i + 1 == lines.size() ? ' ' : '-';
    if (!enhanced.empty()) {
      out += enhanced;
      if (!lines[i].empty()) {
        out += ' ';
      }
    }
    for (const char c : lines[i]) {
      const auto u = static_cast<unsigned char>(c);
      out += (u < 0x20 || u == 0x7f) ? ' ' : c;
    }
    out += "\r\n";
  }
  return out;
}

void ReplyParser::feed(std::string_view bytes) {
  std::size_t pos = 0;
  while (pos < bytes.size() && !discarding_) {
    const std::size_t nl = bytes.find('\n', pos);
    const std::string_view piece =
        bytes.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    // One more byte than the limit is allowed in the buffer for the CR of the line end.
    if (line_.size() + piece.size() > limits_.max_line_length + 1) {
      failWith(
          Error("smtp.reply.too_long",
                "reply line longer than " + std::to_string(limits_.max_line_length) + " bytes"));
      return;
    }
    line_.append(piece);
    if (nl == std::string_view::npos) {
      return;
    }
    pos = nl + 1;
    std::string_view line = line_;
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (line.size() > limits_.max_line_length) {
      failWith(
          Error("smtp.reply.too_long",
                "reply line longer than " + std::to_string(limits_.max_line_length) + " bytes"));
      return;
    }
    takeLine(line);
    line_.clear();
  }
}

void ReplyParser::takeLine(std::string_view line) {
  // Reply-line = *( Reply-code "-" [ textstring ] CRLF ) Reply-code [ SP textstring ] CRLF
  if (line.size() < 3 || !isDigit(line[0]) || !isDigit(line[1]) || !isDigit(line[2]) ||
      line[0] < '2' || line[0] > '5' || line[1] > '5' ||
      (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
    failWith(Error("smtp.reply.syntax", "malformed reply line from server"));
    return;
  }
  const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  const bool last = line.size() == 3 || line[3] == ' ';
  if (current_.code != 0 && current_.code != code) {
    failWith(Error("smtp.reply.syntax", "reply lines with different codes in one reply"));
    return;
  }
  if (current_.lines.size() >= limits_.max_lines) {
    failWith(Error("smtp.reply.too_many_lines",
                   "reply longer than " + std::to_string(limits_.max_lines) + " lines"));
    return;
  }
  current_.code = code;
  std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view{};
  const std::size_t ec = enhancedCodeLength(text);
  if (ec != 0 && text[0] == line[0]) {
    if (current_.lines.empty()) {
      current_.enhanced = std::string(text.substr(0, ec));
    }
    text.remove_prefix(ec);
    if (!text.empty()) {
      text.remove_prefix(1);
    }
  }
  current_.lines.emplace_back(text);
  if (last) {
    ready_.push_back(std::move(current_));
    current_ = Reply{};
  }
}

void ReplyParser::failWith(Error error) {
  error_ = std::move(error);
  discarding_ = true;
  line_.clear();
  line_.shrink_to_fit();
  current_ = Reply{};
}

Result<std::optional<Reply>> ReplyParser::next() {
  if (!ready_.empty()) {
    Reply reply = std::move(ready_.front());
    ready_.pop_front();
    return reply;
  }
  if (error_) {
    return std::unexpected(*error_);
  }
  return std::optional<Reply>{};
}

void ReplyParser::reset() {
  line_.clear();
  current_ = Reply{};
  ready_.clear();
  error_.reset();
  discarding_ = false;
}

} // namespace mailgate::relay::smtp

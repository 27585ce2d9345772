#include "imap/protocol/command_builder.h"

#include "base/base64.h"
#include "imap/protocol/ascii.h"
#include "imap/protocol/mailbox_name.h"

#include <utility>

namespace mailgate::imap::protocol {
namespace {

// Longest string sent quoted; longer ones go as literals, which servers size their buffers for.
constexpr std::size_t kMaxQuoted = 1024;
// RFC 7888 section 5: LITERAL- allows non-synchronizing literals up to 4096 bytes.
constexpr std::size_t kMaxLiteralMinus = 4096;

bool tagChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || ascii::isDigit(c) || c == '.' ||
         c == '-';
}

// RFC 9051 ATOM-CHAR: any CHAR except atom-specials ( ) { SP CTL % * " \ ].
bool atomChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u <= 0x20 || u >= 0x7f) {
    return false;
  }
  switch (c) {
  case '(':
  case ')':
  case '{':
  case '%':
  case '*':
  case '"':
  case '\\':
  case ']':
    return false;
  default:
    return true;
  }
}

bool isAtom(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (const char c : s) {
    if (!atomChar(c)) {
      return false;
    }
  }
  return true;
}

// ASTRING-CHAR = ATOM-CHAR / resp-specials (']').
bool isAstringAtom(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (const char c : s) {
    if (!atomChar(c) && c != ']') {
      return false;
    }
  }
  return true;
}

// A quoted string may hold 7-bit printable bytes only (TEXT-CHAR without CR/LF, RFC 9051).
bool quotable(std::string_view s) {
  if (s.size() > kMaxQuoted) {
    return false;
  }
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u > 0x7e) {
      return false;
    }
  }
  return true;
}

std::string bytesNote(std::size_t n) {
  return "<" + std::to_string(n) + " bytes>";
}

} // namespace

CommandBuilder::CommandBuilder(std::string_view tag, std::string_view name, LiteralMode mode)
    : tag_(tag), name_(ascii::upper(name)), mode_(mode) {
  bool tag_ok = !tag.empty();
  for (const char c : tag) {
    tag_ok = tag_ok && tagChar(c);
  }
  // A name may be two keywords ("UID FETCH"), each an atom of tag characters.
  bool name_ok = !name.empty() && name.front() != ' ' && name.back() != ' ' &&
                 name.find("  ") == std::string_view::npos;
  for (const char c : name) {
    name_ok = name_ok && (tagChar(c) || c == ' ');
  }
  if (!tag_ok) {
    error_ = Error("imap.command", "command tag is not an atom of letters, digits, '.' and '-'");
  } else if (!name_ok) {
    error_ = Error("imap.command", "command name is not an atom of letters, digits, '.' and '-'");
  }
  std::string first = tag_ + " " + name_;
  redacted_ = first;
  chunks_.push_back(std::move(first));
}

void CommandBuilder::separator() {
  ++arguments_;
  chunks_.back() += ' ';
  redacted_ += ' ';
}

void CommandBuilder::refuse(std::string_view what) {
  if (!error_) {
    error_ = Error("imap.command", "argument " + std::to_string(arguments_ + 1) + " of " + name_ +
                                       ": " + std::string(what));
  }
}

CommandBuilder& CommandBuilder::atom(std::string_view text) {
  if (error_) {
    return *this;
  }
  const std::string_view body = !text.empty() && text.front() == '\\' ? text.substr(1) : text;
  if (!isAtom(body)) {
    refuse("not an atom");
    return *this;
  }
  separator();
  chunks_.back() += text;
  redacted_ += text;
  return *this;
}

CommandBuilder& CommandBuilder::raw(std::string_view text) {
  if (error_) {
    return *this;
  }
  if (text.empty()) {
    refuse("empty raw argument");
    return *this;
  }
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u > 0x7e) {
      refuse("raw argument holds a byte outside printable ASCII");
      return *this;
    }
  }
  separator();
  chunks_.back() += text;
  redacted_ += text;
  return *this;
}

CommandBuilder& CommandBuilder::number(uint64_t n) {
  if (error_) {
    return *this;
  }
  separator();
  const std::string digits = std::to_string(n);
  chunks_.back() += digits;
  redacted_ += digits;
  return *this;
}

CommandBuilder& CommandBuilder::sequence(const SequenceSet& set) {
  if (error_) {
    return *this;
  }
  if (set.empty()) {
    refuse("empty sequence set");
    return *this;
  }
  separator();
  const std::string text = set.format();
  chunks_.back() += text;
  redacted_ += text;
  return *this;
}

CommandBuilder& CommandBuilder::string(std::string_view text) {
  if (error_) {
    return *this;
  }
  if (!quotable(text)) {
    return appendLiteral(text, false);
  }
  separator();
  std::string& out = chunks_.back();
  out += '"';
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
    }
    out += c;
  }
  out += '"';
  redacted_ += bytesNote(text.size());
  return *this;
}

CommandBuilder& CommandBuilder::astring(std::string_view text) {
  if (error_) {
    return *this;
  }
  if (!isAstringAtom(text) || ascii::iequals(text, "NIL")) {
    return string(text);
  }
  separator();
  chunks_.back() += text;
  redacted_ += bytesNote(text.size());
  return *this;
}

CommandBuilder& CommandBuilder::mailbox(std::string_view utf8_name, bool utf8) {
  if (error_) {
    return *this;
  }
  if (ascii::iequals(utf8_name, "INBOX")) {
    return astring("INBOX");
  }
  if (utf8) {
    return astring(utf8_name);
  }
  auto encoded = encodeMailboxName(utf8_name);
  if (!encoded) {
    refuse("mailbox name is not valid UTF-8");
    return *this;
  }
  return astring(*encoded);
}

CommandBuilder& CommandBuilder::literal(std::string_view bytes, bool binary) {
  if (error_) {
    return *this;
  }
  return appendLiteral(bytes, binary);
}

CommandBuilder& CommandBuilder::appendLiteral(std::string_view bytes, bool binary) {
  // RFC 9051 CHAR8 excludes NUL: only literal8 (BINARY) may carry it.
  if (!binary && bytes.find('\0') != std::string_view::npos) {
    refuse("NUL byte in a string (only a binary literal can carry it)");
    return *this;
  }
  separator();
  const bool sync = mode_ == LiteralMode::kSync ||
                    (mode_ == LiteralMode::kMinus && bytes.size() > kMaxLiteralMinus);
  std::string& out = chunks_.back();
  if (binary) {
    out += '~';
  }
  out += '{';
  out += std::to_string(bytes.size());
  out += sync ? "}\r\n" : "+}\r\n";
  if (sync) {
    chunks_.emplace_back(bytes);
  } else {
    out += bytes;
  }
  redacted_ += bytesNote(bytes.size());
  return *this;
}

Result<Command> CommandBuilder::build() & {
  return std::move(*this).build();
}

Result<Command> CommandBuilder::build() && {
  if (error_) {
    return std::unexpected(std::move(*error_));
  }
  chunks_.back() += "\r\n";
  Command command;
  command.tag = std::move(tag_);
  command.name = std::move(name_);
  command.chunks = std::move(chunks_);
  command.redacted = std::move(redacted_);
  return command;
}

std::string saslResponseLine(std::string_view raw) {
  if (raw.empty()) {
    return "=\r\n";
  }
  return base64Encode(raw) + "\r\n";
}

} // namespace mailgate::imap::protocol

// SMTP replies: the value type shared by the client's parser and the server's formatter, and the
// streaming parser the client feeds with whatever bytes the connection delivered.
#pragma once

#include "base/error.h"

#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::relay::smtp {

// One complete (possibly multi-line) reply.
struct Reply {
  int code = 0;
  // RFC 3463 "class.subject.detail" taken from the first line, or empty when the server sent none.
  std::string enhanced;
  // The text of each line, with the code, the separator and the enhanced code removed.
  std::vector<std::string> lines;

  // 2xx and 3xx: the command went through (3xx asks for more input).
  [[nodiscard]] bool isPositive() const { return code >= 200 && code < 400; }
  // 4xx: try again later.
  [[nodiscard]] bool isTransient() const { return code >= 400 && code < 500; }
  // 5xx: do not retry as is.
  [[nodiscard]] bool isPermanent() const { return code >= 500 && code < 600; }
  // The lines joined with "\n".
  [[nodiscard]] std::string text() const;
  // "550 5.1.1 line one / line two": one line for logs and error messages.
  [[nodiscard]] std::string describe() const;
};

// Serialises a reply for the wire. `text` may hold several lines separated by '\n'; each becomes
// one reply line ("250-..." then "250 ..."). `enhanced` (may be empty) prefixes every line. CR, NUL
// and other control bytes in `text` are replaced by spaces so a caller-supplied text can never
// inject a line of its own.
[[nodiscard]] std::string formatReply(int code, std::string_view enhanced, std::string_view text);

// Recognises "x.y.z" (x in 2/4/5, y and z one to three digits) at the start of `text`, followed
// by a space or the end. Returns its length, or 0 when there is none.
[[nodiscard]] std::size_t enhancedCodeLength(std::string_view text);

// Streaming reply parser. Bytes go in through feed() split at any point; complete replies come out
// of next(). Memory is bounded: a line longer than max_line_length or a reply with more than
// max_lines lines is an error, and no more than one partial line is ever buffered.
// Lines end in CRLF; a bare LF is also taken as a line end (being lenient here costs nothing and
// some servers do it). Not thread-safe; one parser per connection.
class ReplyParser {
public:
  struct Limits {
    std::size_t max_line_length = 4096; // bytes, without the line end
    std::size_t max_lines = 128;
  };

  ReplyParser() = default;
  explicit ReplyParser(Limits limits) : limits_(limits) {}

  // Takes bytes. Errors are reported by next(), in order after the replies that preceded them.
  void feed(std::string_view bytes);

  // Returns the next complete reply, std::nullopt when more bytes are needed, or an error
  // ("smtp.reply.syntax", "smtp.reply.too_long", "smtp.reply.too_many_lines"). After an error
  // the parser stays failed: the connection cannot be resynchronised and must be closed.
  [[nodiscard]] Result<std::optional<Reply>> next();

  // Drops buffered bytes and any reply in progress (after STARTTLS: nothing sent in plaintext
  // before the handshake may be read as if it came over TLS). Clears a failure too.
  void reset();

  // True when bytes of an unfinished reply are buffered.
  [[nodiscard]] bool hasPartialInput() const { return !line_.empty() || current_.code != 0; }

private:
  void takeLine(std::string_view line);
  void failWith(Error error);

  Limits limits_;
  std::string line_; // the partial line, at most max_line_length + 1 bytes
  Reply current_;    // the reply being assembled (code 0 while none)
  std::deque<Reply> ready_;
  std::optional<Error> error_;
  bool discarding_ = false; // after an error: drop everything
};

} // namespace mailgate::relay::smtp

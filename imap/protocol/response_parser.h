// Streaming IMAP response parser. Bytes go in through feed() split at any point (a literal's
// announcement, its bytes and the rest of its line may come in separate reads); whole responses
// come out of next(), in order. Sans-IO: no sockets, no clocks, no callbacks.
//
// Framing: a response is a line ending in CRLF (a bare LF is accepted), extended by every literal
// it announces ("{n}\r\n" + n bytes, "{n+}", and RFC 3516 literal8 "~{n}"), until a line ends
// without one. Binary-safe: literals may hold any byte, NUL included.
//
// Memory is bounded by Limits: a line longer than max_line_bytes, a literal longer than
// max_literal_bytes (refused from its announcement, before any of it is buffered: a server that
// claims 2 GB costs nothing), a response larger than max_response_bytes, nesting deeper than
// max_depth, or more than max_values values fails with "imap.limit". Buffered bytes never exceed
// max_response_bytes plus one read.
//
// Errors are final: after next() returned an error, the stream is not IMAP any more (the session
// closes the connection) and every later call returns the same error. Codes: "imap.limit" (a bound
// above), "imap.syntax" (bytes that are not a response: the message names what and where, never
// quotes more than 64 bytes of the input).
//
// Leniency, because servers in the field do these things: lower-case keywords, a missing text
// after a status, a missing space before CRLF, atoms with ']' inside BODY[...], Microsoft 365's
// untagged responses to unknown commands. Unknown untagged responses become OtherData, never an
// error (when their arguments do not parse as values, the rest of the line is kept as one atom).
// A status or continuation text is the rest of its first line; should it end like a literal
// announcement, that "literal" is framed (and counted against the limits) but not kept.
//
// Not thread-safe; one parser per connection.
#pragma once

#include "base/error.h"
#include "imap/protocol/response.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace mailgate::imap::protocol {

struct ParserLimits {
  std::size_t max_line_bytes = 64 * 1024;             // one line, literals excluded
  uint64_t max_literal_bytes = 160ull * 1024 * 1024;  // Microsoft 365 takes 150 MB messages
  uint64_t max_response_bytes = 192ull * 1024 * 1024; // lines and literals of one response
  uint32_t max_depth = 16;                            // nested parentheses
  uint32_t max_values = 1'000'000;                    // values in one response (SEARCH hits)
};

class ResponseParser {
public:
  explicit ResponseParser(ParserLimits limits = {});

  // Appends bytes read from the server. Cheap: the work happens in next().
  void feed(std::span<const char> data);

  // The next complete response; nullopt when more bytes are needed. An error is final (above).
  Result<std::optional<Response>> next();

  // Bytes fed but not yet returned as responses.
  [[nodiscard]] std::size_t bufferedBytes() const;

  // Drops every buffered byte (after STARTTLS: bytes that came in cleartext after the tagged OK
  // must never be taken as protected, RFC 9051 section 6.2.1).
  void discardBuffered();

private:
  // Frames the buffered bytes from scan_ on: true when [consumed_, response_end) holds one whole
  // response; false when more bytes are needed or framing failed (failed_ set).
  bool frame(std::size_t& response_end);
  void failWith(Error error);

  ParserLimits limits_;
  // buffer_[consumed_, size) is unconsumed. The consumed prefix is dropped in feed() once it is
  // at least half the buffer, so compaction costs O(1) amortised per byte.
  std::string buffer_;
  std::size_t consumed_ = 0;
  std::size_t scan_ = 0;       // how far buffer_ has been framed (absolute offset)
  std::size_t line_start_ = 0; // start of the line being framed (absolute offset)
  std::optional<Error> failed_;
  // Framing state of the response being assembled (the parser resumes here on the next feed).
  uint64_t literal_remaining_ = 0; // bytes of the current literal not yet framed
  bool in_literal_ = false;
  uint64_t response_bytes_ = 0; // framed bytes of the current response, lines and literals
};

} // namespace mailgate::imap::protocol

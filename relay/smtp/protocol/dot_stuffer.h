// Client side of the DATA phase (RFC 5321 section 4.5.2): turns a message into the bytes sent
// after the 354 reply.
#pragma once

#include <string>
#include <string_view>

namespace mailgate::relay::smtp {

// Streaming encoder. Every line ending in the input (CRLF, bare LF, bare CR) becomes CRLF, a line
// that starts with '.' gets a second one, and finish() adds a CRLF when the message does not end
// with one, then the ".\r\n" terminator. Because every line end is normalised before stuffing, no
// input can produce a premature end of data at the receiver, whatever its line ends look like.
// Input may be split anywhere between feed() calls.
class DotStuffer {
public:
  // Appends the encoded form of `in` to `out`.
  void feed(std::string_view in, std::string& out);
  // Appends what is pending, the final CRLF if needed and ".\r\n". The stuffer is then reset.
  void finish(std::string& out);

private:
  bool line_start_ = true;
  bool pending_cr_ = false;
};

// One-shot form: the whole DATA payload including the terminator.
[[nodiscard]] std::string dotStuff(std::string_view message);

} // namespace mailgate::relay::smtp

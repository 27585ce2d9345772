// Server side of the DATA phase: finds the end of data, undoes dot-stuffing, and bounds memory.
// The policy on bare CR, bare LF and NUL is in docs/smtp-policy.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace mailgate::relay::smtp {

class DataDecoder {
public:
  // `max_bytes` bounds the stored message (after unstuffing and line-end normalisation).
  explicit DataDecoder(std::uint64_t max_bytes) : max_bytes_(max_bytes) {}

  // Consumes bytes up to and including the terminating CRLF "." CRLF, and returns how many it
  // consumed: all of `in` while the end has not been seen, fewer once it has (the rest belongs to
  // the commands that follow). After done(), feed() consumes nothing.
  //
  // The end of data is only ever CRLF "." CRLF, where the first CRLF may be the one that ended the
  // DATA command. A bare LF or bare CR is a line end for storage (it is stored as CRLF) but never
  // for finding the end: "\n.\n", "\r\n.\n" and "\n.\r\n" are message content (SMTP smuggling).
  // A '.' at the start of a CRLF-started line is removed. Past max_bytes the decoder keeps
  // consuming and counting but stores nothing more (and frees what it stored), so that the session
  // can answer 552 after the end of data without buffering the excess.
  std::size_t feed(std::string_view in);

  [[nodiscard]] bool done() const { return state_ == State::kDone; }
  // The unstuffed message with CRLF line ends. Empty when overflowed().
  [[nodiscard]] const std::string& data() const { return data_; }
  [[nodiscard]] std::string takeData() { return std::move(data_); }
  // Size of the unstuffed message, counted in full even past the limit.
  [[nodiscard]] std::uint64_t size() const { return size_; }
  [[nodiscard]] bool overflowed() const { return size_ > max_bytes_; }
  [[nodiscard]] bool sawNul() const { return saw_nul_; }
  [[nodiscard]] bool sawBareLf() const { return saw_bare_lf_; }
  [[nodiscard]] bool sawBareCr() const { return saw_bare_cr_; }

private:
  enum class State {
    kLineStart, // after a CRLF (or at the start): a '.' here is special
    kText,
    kTextCr, // a CR whose LF has not been seen yet
    kDot,    // a '.' at the start of a line
    kDotCr,  // ".\r" at the start of a line: one LF away from the end
    kDone,
  };

  void put(std::string_view bytes);

  std::uint64_t max_bytes_;
  std::uint64_t size_ = 0;
  std::string data_;
  State state_ = State::kLineStart;
  bool saw_nul_ = false;
  bool saw_bare_lf_ = false;
  bool saw_bare_cr_ = false;
};

} // namespace mailgate::relay::smtp

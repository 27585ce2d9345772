#include "relay/smtp/protocol/data_decoder.h"

namespace mailgate::relay::smtp {

void DataDecoder::put(std::string_view bytes) {
  size_ += bytes.size();
  if (size_ > max_bytes_) {
    if (!data_.empty() || data_.capacity() > 0) {
      std::string().swap(data_);
    }
    return;
  }
  data_.append(bytes);
}

std::size_t DataDecoder::feed(std::string_view in) {
  std::size_t i = 0;
  while (i < in.size() && state_ != State::kDone) {
    const char c = in[i];
    switch (state_) {
    case State::kDot:
      if (c == '\r') {
        state_ = State::kDotCr;
        ++i;
        continue;
      }
      // The leading dot was stuffing: drop it and read `c` as ordinary text.
      state_ = State::kText;
      continue;
    case State::kDotCr:
      if (c == '\n') {
        state_ = State::kDone;
        ++i;
        continue;
      }
      // ".\r" then something else: the dot was stuffing and the CR is bare.
      state_ = State::kTextCr;
      continue;
    case State::kTextCr:
      if (c == '\n') {
        put("\r\n");
        state_ = State::kLineStart;
        ++i;
        continue;
      }
      saw_bare_cr_ = true;
      put("\r\n");
      state_ = State::kText;
      continue;
    case State::kLineStart:
      if (c == '.') {
        state_ = State::kDot;
        ++i;
        continue;
      }
      state_ = State::kText;
      continue;
    case State::kText: {
      // Copy the run of ordinary bytes in one go.
      std::size_t end = i;
      while (end < in.size() && in[end] != '\r' && in[end] != '\n' && in[end] != '\0') {
        ++end;
      }
      if (end > i) {
        put(in.substr(i, end - i));
        i = end;
        continue;
      }
      if (c == '\r') {
        state_ = State::kTextCr;
      } else if (c == '\n') {
        saw_bare_lf_ = true;
        put("\r\n"); // stored as a line end, but the next line is not CRLF-started
      } else {
        saw_nul_ = true; // not stored; the session rejects the message
      }
      ++i;
      continue;
    }
    case State::kDone:
      break;
    }
  }
  return i;
}

} // namespace mailgate::relay::smtp

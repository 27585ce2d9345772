#include "relay/smtp/protocol/dot_stuffer.h"

namespace mailgate::relay::smtp {

void DotStuffer::feed(std::string_view in, std::string& out) {
  out.reserve(out.size() + in.size() + in.size() / 64 + 8);
  std::size_t run_start = 0; // start of bytes copied through unchanged
  auto flush = [&](std::size_t end) { out.append(in.substr(run_start, end - run_start)); };
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (pending_cr_) {
      pending_cr_ = false;
      out += "\r\n";
      line_start_ = true;
      if (c == '\n') {
        run_start = i + 1;
        continue;
      }
      run_start = i;
    }
    if (c == '\r') {
      flush(i);
      pending_cr_ = true;
      run_start = i + 1;
    } else if (c == '\n') {
      flush(i);
      out += "\r\n";
      line_start_ = true;
      run_start = i + 1;
    } else {
      if (line_start_ && c == '.') {
        flush(i);
        out += '.';
        run_start = i;
      }
      line_start_ = false;
    }
  }
  flush(in.size());
}

void DotStuffer::finish(std::string& out) {
  if (pending_cr_ || !line_start_) {
    out += "\r\n";
  }
  out += ".\r\n";
  line_start_ = true;
  pending_cr_ = false;
}

std::string dotStuff(std::string_view message) {
  DotStuffer stuffer;
  std::string out;
  stuffer.feed(message, out);
  stuffer.finish(out);
  return out;
}

} // namespace mailgate::relay::smtp

// Fuzzes message::summarize (gateway/message/summary.h), which reads the header block of every
// ingested BCC copy. Checks, beside "no crash, no sanitizer report":
// - the documented bounds: at most kMaxSummaryAddresses addresses per field;
// - message_id is empty or one "<...>" token that stands in the input as written;
// - addresses hold no control character but tab (the shared reader refuses the rest);
// - the same input gives the same summary (no state between calls).
#include "gateway/message/summary.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace message = mailgate::message;

namespace {

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

void checkAddress(std::string_view a) {
  for (const char c : a) {
    const auto u = static_cast<unsigned char>(c);
    check((u >= 0x20 || c == '\t') && u != 0x7f);
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view raw(reinterpret_cast<const char*>(data), size);
  const message::MessageSummary s = message::summarize(raw);
  check(s.to.size() <= message::kMaxSummaryAddresses);
  check(s.cc.size() <= message::kMaxSummaryAddresses);
  if (!s.message_id.empty()) {
    check(s.message_id.size() >= 2 && s.message_id.front() == '<' && s.message_id.back() == '>');
    check(raw.find(s.message_id) != std::string_view::npos);
  }
  checkAddress(s.from);
  for (const auto& a : s.to) {
    checkAddress(a);
  }
  for (const auto& a : s.cc) {
    checkAddress(a);
  }
  const message::MessageSummary again = message::summarize(raw);
  check(again.message_id == s.message_id && again.from == s.from && again.to == s.to &&
        again.cc == s.cc && again.subject == s.subject && again.date == s.date);
  return 0;
}

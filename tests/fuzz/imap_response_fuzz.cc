// Fuzzes the IMAP response parser: server bytes fed in pieces whose sizes derive from the input,
// with small limits so every limit path is reachable. Invariants: buffered bytes stay within
// max_response_bytes once next() asks for more, errors are final and carry a known code and a
// short printable message, no parsed datum exceeds its limit, and the split points never change
// the outcome (same responses, same error, as one piece).
//
// Input layout: byte 0 selects the limits, byte 1 seeds the piece sizes, the rest is server bytes.
#include "imap/protocol/response_parser.h"
#include "imap/protocol/server_advice.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace proto = mailgate::imap::protocol;

namespace {

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

struct Outcome {
  std::vector<std::string> summaries; // one per response: kind, tag and variant index
  std::string error_code;
};

std::string summarize(const proto::Response& r) {
  std::string s = std::to_string(static_cast<int>(r.kind)) + "/" + r.tag + "/" +
                  std::to_string(r.data.index()) + "/" + r.status.text + "/" + r.continuation;
  if (const auto* f = std::get_if<proto::FetchData>(&r.data)) {
    s += "/" + std::to_string(f->sections.size()) + "/" + std::to_string(f->other.size());
  }
  return s;
}

void checkResponse(const proto::Response& r, const proto::ParserLimits& limits) {
  if (const auto* f = std::get_if<proto::FetchData>(&r.data)) {
    for (const auto& s : f->sections) {
      check(!s.data || s.data->size() <= limits.max_literal_bytes ||
            s.data->size() <= limits.max_line_bytes);
    }
  } else if (const auto* s = std::get_if<proto::SearchData>(&r.data)) {
    check(s->numbers.size() <= limits.max_values);
  }
  if (r.kind != proto::Response::Kind::kContinuation) {
    // Pure function over any parsed status: must not crash, and names a hint when it advises.
    const proto::Advice a = proto::adviceFor(r.status);
    check(a.kind == proto::Advice::Kind::kNone || !a.hint.empty());
    check(!a.backoff || (a.backoff->count() >= 0 && a.backoff->count() <= 3'600'000));
  }
}

Outcome run(std::string_view in, const proto::ParserLimits& limits, uint8_t seed, bool whole) {
  proto::ResponseParser parser(limits);
  Outcome out;
  uint32_t state = seed * 2654435761u + 1;
  std::size_t pos = 0;
  while (pos < in.size() && out.error_code.empty()) {
    std::size_t len = in.size() - pos;
    if (!whole) {
      state = state * 1664525u + 1013904223u;
      len = 1 + (state >> 16) % ((seed & 1) != 0 ? 7 : 300);
    }
    const std::string_view piece = in.substr(pos, len);
    parser.feed(std::span<const char>(piece.data(), piece.size()));
    pos += piece.size();
    while (true) {
      auto r = parser.next();
      if (!r) {
        const mailgate::Error& e = r.error();
        check(e.code == "imap.limit" || e.code == "imap.syntax");
        check(e.message.size() <= 512);
        for (const char c : e.message) {
          check(c >= 0x20 && c < 0x7f);
        }
        out.error_code = e.code;
        // Final: the same error again, even after more bytes, and nothing kept.
        parser.feed(std::span<const char>("* OK x\r\n", 8));
        auto again = parser.next();
        check(!again && again.error().code == e.code);
        check(parser.bufferedBytes() == 0);
        break;
      }
      if (!*r) {
        check(parser.bufferedBytes() <= limits.max_response_bytes);
        break;
      }
      checkResponse(**r, limits);
      out.summaries.push_back(summarize(**r));
    }
  }
  return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) {
    return 0;
  }
  proto::ParserLimits limits;
  if ((data[0] & 0x80) == 0) {
    limits.max_line_bytes = 40 + (data[0] & 3) * 100;
    limits.max_literal_bytes = 10 + ((data[0] >> 2) & 3) * 200;
    limits.max_response_bytes = 200 + ((data[0] >> 4) & 3) * 400;
    limits.max_depth = 2 + (data[0] & 7);
    limits.max_values = 5 + ((data[0] >> 3) & 7) * 20;
  }
  const std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
  const Outcome pieces = run(in, limits, data[1], false);
  const Outcome whole = run(in, limits, data[1], true);
  check(pieces.summaries == whole.summaries);
  check(pieces.error_code == whole.error_code);
  return 0;
}

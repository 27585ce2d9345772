// Fuzzes HttpServerSession with arbitrary client bytes in arbitrary pieces, as HTTP/1.1 or as
// HTTP/2 (with the preface prepended, or ALPN h2). Checks: no crash, output bounded by the
// input, nothing produced once the session wants to close, handlers see bounded requests.
// With flag 32 the handler answers later: every exchange is kept and answered (or streamed in
// pieces, or dropped) after the next piece of input, so held-back input, resumption and
// detached exchanges are exercised too.
//
// Input layout: byte 0 selects options, byte 1 seeds the piece sizes, the rest is client bytes.
#include "gateway/api/http_server_session.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace api = mailgate::api;

namespace {

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) {
    return 0;
  }
  const std::uint8_t flags = data[0];
  const std::uint8_t seed = data[1];
  std::string in;
  if ((flags & 1) != 0) {
    in = kPreface;
  }
  in.append(reinterpret_cast<const char*>(data) + 2, size - 2);

  api::HttpServerOptions o;
  o.tls_h2 = (flags & 2) != 0;
  if ((flags & 4) != 0) {
    o.max_header_bytes = 256;
    o.max_body_bytes = 64;
    o.max_concurrent_streams = 3;
  }
  const auto answer = [&o](const api::HttpRequest& r) {
    std::size_t head = r.method.size() + r.path.size() + r.query.size();
    for (const auto& [n, v] : r.headers) {
      head += n.size() + v.size();
    }
    check(head <= o.max_header_bytes + 16); // HTTP/1.1 does not count the method
    check(r.body.size() <= o.max_body_bytes);
    api::HttpResponse out;
    out.status = 200 + r.body.size() % 300;
    out.headers.emplace_back("x-path", r.path.substr(0, 16));
    out.body = r.body.substr(0, 32);
    return out;
  };
  const bool later = (flags & 32) != 0;
  std::vector<api::HttpExchangePtr> parked;
  api::HttpServerSession session(o, [&](const api::HttpExchangePtr& ex) {
    if (later) {
      parked.push_back(ex);
    } else {
      ex->respond(answer(ex->request()));
    }
  });
  // Answers what was parked: by the path's length, in one piece, streamed, or not at all.
  std::uint32_t turn = 0;
  const auto settle = [&] {
    auto now = std::move(parked);
    parked.clear();
    for (auto& ex : now) {
      switch ((ex->request().path.size() + turn++) % 3) {
      case 0:
        ex->respond(answer(ex->request()));
        break;
      case 1:
        ex->startStream(200, {{"content-type", "text/event-stream"}});
        ex->write(ex->request().path.substr(0, 8));
        ex->write("data\n\n");
        ex->end();
        check(!ex->open());
        break;
      default:
        break; // dropped: the session answers 500
      }
    }
  };
  std::size_t produced = 0;
  std::uint32_t state = seed * 2246822519u + 7;
  std::size_t pos = 0;
  while (pos < in.size()) {
    state = state * 1664525u + 1013904223u;
    const std::size_t len = 1 + (state >> 20) % ((seed & 1) != 0 ? 7 : 300);
    const std::string_view piece = std::string_view(in).substr(pos, len);
    const bool closing = session.wantsClose();
    session.receive(std::span<const char>(piece.data(), piece.size()));
    settle();
    const std::string out = session.takeOutput();
    check(!closing || out.empty());
    check(!closing || session.wantsClose());
    produced += out.size();
    pos += piece.size();
    if ((flags & 8) != 0 && pos > in.size() / 2 && (flags & 16) == 0) {
      session.shutdown();
    }
  }
  session.shutdown();
  settle();
  produced += session.takeOutput().size();
  settle();
  produced += session.takeOutput().size();
  // Each answer needs some input to ask for it; 64x covers a response per minimal request.
  check(produced <= 4096 + 64 * in.size());
  return 0;
}

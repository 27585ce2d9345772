// Internal to gateway/api: what HttpServerSession needs from one protocol (HTTP/1.1 or HTTP/2)
// once detection has picked it. Same contract as HttpServerSession, see there.
#pragma once

#include "gateway/api/http_types.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace mailgate::api {

struct HttpServerOptions {
  std::size_t max_header_bytes = 16 * 1024;   // request line/pseudo-headers + fields, per request
  std::size_t max_body_bytes = 1024 * 1024;   // per request, after chunked/DATA framing
  std::uint32_t max_concurrent_streams = 100; // HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS
  bool tls_h2 = false; // ALPN chose h2: the client preface must come first, no HTTP/1.1
};

class ProtocolServer {
public:
  virtual ~ProtocolServer() = default;
  virtual void receive(std::span<const char> bytes) = 0;
  // Appends every byte ready to go out to `out`.
  virtual void drainOutput(std::string& out) = 0;
  [[nodiscard]] virtual bool wantsClose() const = 0;
  virtual void shutdown() = 0;
};

using ProtocolServerPtr = std::unique_ptr<ProtocolServer>;

// Calls the handler, turning an escaped exception into a 500 so that nothing unwinds through
// http-parser or nghttp2.
HttpResponse invokeHandler(const HttpHandler& handler, const HttpRequest& request);

// Splits a request target into path and raw query ("/a?b#c" -> "/a", "b"); an absolute-form
// target ("http://h/a?b") loses its scheme and authority. False when it is not a usable target.
bool splitTarget(std::string_view target, std::string& path, std::string& query);

} // namespace mailgate::api

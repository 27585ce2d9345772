// One server-side HTTP connection without I/O: bytes in (receive), bytes out (takeOutput).
// A driver (gateway/api/api_server.h, on net::Connection) reads the socket into receive(),
// writes whatever takeOutput() returns, and closes once wantsClose() is true and the output is
// written. Answers that come later (HttpExchange) call the wake-up function; the driver then
// calls takeOutput() again in a later step of its own (never from inside the wake-up call).
//
// Protocol: with tls_h2 (ALPN chose "h2") the connection is HTTP/2 and must open with the
// client preface. Otherwise the first bytes decide: the 24-byte HTTP/2 preface means HTTP/2 with
// prior knowledge (h2c), anything else HTTP/1.1. h2c via "Upgrade: h2c" is not offered.
//
// Handlers are called inside receive() (or takeOutput(), for HTTP/1.1 input that was held back
// while an earlier request waited for its answer) and may answer then or later. Responses of
// pipelined HTTP/1.1 requests come out in request order; HTTP/2 streams are answered as each
// answer comes.
//
// Memory: at most max_header_bytes + the body limit of request per request in flight (one for
// HTTP/1.1, up to max_concurrent_streams for HTTP/2), and the responses not yet taken. Output
// accumulates until taken: the driver bounds it by not reading more input while output is
// unwritten, and a streaming writer watches HttpExchange::pendingBytes().
//
// Threading: not thread-safe; one loop thread. Not re-entrant: a handler must not call back into
// its session.
#pragma once

#include "gateway/api/http_exchange.h"
#include "gateway/api/http_types.h"
#include "gateway/api/protocol_server.h"

#include <functional>
#include <span>
#include <string>

namespace mailgate::api {

class HttpServerSession {
public:
  HttpServerSession(HttpServerOptions options, AsyncHttpHandler handler);
  HttpServerSession(HttpServerOptions options, HttpHandler handler);
  ~HttpServerSession();
  HttpServerSession(const HttpServerSession&) = delete;
  HttpServerSession& operator=(const HttpServerSession&) = delete;

  // Consumes all of `bytes` (any split, down to one byte at a time). Ignored once wantsClose().
  void receive(std::span<const char> bytes);

  // Continues work that waited for an asynchronous answer, then returns every byte ready to be
  // written, in order; empty when there is nothing. Includes the HTTP/2 server SETTINGS as soon
  // as HTTP/2 is known.
  [[nodiscard]] std::string takeOutput();

  // `fn` is called when an asynchronous answer produced output or let held input continue, so
  // that the driver calls takeOutput() again. Never called from inside receive()/takeOutput().
  void setWakeup(std::function<void()> fn);

  // False while more input would only be held back (an HTTP/1.1 request waits for its answer):
  // the driver stops reading until a wake-up.
  [[nodiscard]] bool wantsInput() const;

  // True when the connection should be closed after the pending output is written: after a fatal
  // protocol error, a response sent with "connection: close", or when HTTP/2 has nothing left to
  // do after GOAWAY.
  [[nodiscard]] bool wantsClose() const;

  // Graceful stop. HTTP/2: GOAWAY(NO_ERROR) naming the last stream taken; those still get their
  // answers. HTTP/1.1: closes after the response to a request already begun, or now if idle.
  // Before any byte: closes now.
  void shutdown();

  // Which protocol the connection turned out to speak (kUnknown until the first bytes decide).
  enum class Protocol { kUnknown, kHttp1, kHttp2 };
  [[nodiscard]] Protocol protocol() const { return protocol_; }

private:
  void start(Protocol protocol);

  HttpServerOptions options_;
  AsyncHttpHandler handler_;
  std::function<void()> wakeup_;
  Protocol protocol_ = Protocol::kUnknown;
  std::string detect_; // first bytes while they are still a prefix of the HTTP/2 preface
  ProtocolServerPtr server_;
  bool closed_ = false; // shut down before any protocol was known
};

} // namespace mailgate::api

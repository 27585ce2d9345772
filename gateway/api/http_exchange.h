// One request and its answer, as a handler sees it: the answer may come at once, later (after a
// store commit), or as a stream of pieces (the event feed). Sans-IO like the rest of the HTTP
// server code: the exchange only hands bytes to its session; the driver writes them.
//
// Threading: the session's thread only (the loop). Every method may be called at any time,
// including after the client went away, when calls do nothing. Calls never re-enter the handler
// and never parse further input: the session continues in its next receive()/takeOutput().
#pragma once

#include "gateway/api/http_types.h"

#include <cstddef>
#include <functional>
#include <memory>
#include <string_view>

namespace mailgate::api {

class HttpExchange {
public:
  HttpExchange() = default;
  virtual ~HttpExchange() = default;
  HttpExchange(const HttpExchange&) = delete;
  HttpExchange& operator=(const HttpExchange&) = delete;

  [[nodiscard]] virtual const HttpRequest& request() const = 0;

  // Answers in one piece. Only the first respond() or startStream() counts; later ones are
  // ignored. The session sets content-length and drops unsafe or framing fields (as for a
  // synchronous handler).
  virtual void respond(HttpResponse response) = 0;

  // Starts a response whose body comes in pieces: HTTP/1.1 chunked transfer coding, HTTP/2 DATA
  // frames as pieces arrive. Then write() any number of times and end() once.
  virtual void startStream(int status, HttpHeaders headers) = 0;
  // Appends to the streamed body. False (and nothing queued) when the exchange is not streaming,
  // has ended, or the client went away.
  virtual bool write(std::string_view data) = 0;
  virtual void end() = 0;

  // Body bytes written and not yet taken by the transport: the writer's backpressure signal. The
  // driver stops taking output while its socket is backed up, so a client that never reads
  // makes this grow; a streaming writer should stop (or give up) above its own bound.
  [[nodiscard]] virtual std::size_t pendingBytes() const = 0;

  // False once the client went away (connection closed, stream reset, session destroyed) or the
  // response is complete.
  [[nodiscard]] virtual bool open() const = 0;

  // `fn` runs once if the client goes away before the response is complete. It runs inside the
  // session's processing: it may drop references and stop timers, not call the session.
  virtual void onAbort(std::function<void()> fn) = 0;
};

using HttpExchangePtr = std::shared_ptr<HttpExchange>;

// Receives each complete request. Must answer it eventually (respond(), or startStream() then
// end()), now or later; an exchange dropped without an answer is answered 500 by the session.
// Must not throw: an escaped exception becomes a 500.
using AsyncHttpHandler = std::function<void(const HttpExchangePtr&)>;

// A synchronous handler as an asynchronous one.
AsyncHttpHandler fromSync(HttpHandler handler);

} // namespace mailgate::api

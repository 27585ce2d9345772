// Internal to gateway/api: what HttpServerSession needs from one protocol (HTTP/1.1 or HTTP/2)
// once detection has picked it, and the exchange object both protocols hand to handlers. Same
// contract as HttpServerSession, see there.
#pragma once

#include "gateway/api/http_exchange.h"
#include "gateway/api/http_types.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

namespace mailgate::api {

struct HttpServerOptions {
  std::size_t max_header_bytes = 16 * 1024;   // request line/pseudo-headers + fields, per request
  std::size_t max_body_bytes = 1024 * 1024;   // per request, after chunked/DATA framing
  std::uint32_t max_concurrent_streams = 100; // HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS
  bool tls_h2 = false; // ALPN chose h2: the client preface must come first, no HTTP/1.1
  // Optional: a larger (or smaller) body limit for some requests, decided from the request head
  // (method, path, query, headers; no body yet) once it is complete: POST /v1/messages carries
  // whole messages, but only for a client that presents a valid token. Returns the limit in
  // bytes; unset: max_body_bytes for every request.
  std::function<std::size_t(const HttpRequest& head)> body_limit;
  // HTTP/2: request body bytes one connection may hold at once over all its streams. A stream
  // whose body would go past it is answered 429 at once (the others go on).
  std::size_t max_connection_body_bytes = 128 * 1024 * 1024;
};

// What an exchange calls on the protocol side. `token` names the exchange within its protocol
// server (the HTTP/2 stream id; a sequence number for HTTP/1.1).
class ExchangeSink {
public:
  virtual ~ExchangeSink() = default;
  virtual void exchangeRespond(std::uint64_t token, HttpResponse response) = 0;
  virtual void exchangeStart(std::uint64_t token, int status, HttpHeaders headers) = 0;
  virtual bool exchangeWrite(std::uint64_t token, std::string_view data) = 0;
  virtual void exchangeEnd(std::uint64_t token) = 0;
  [[nodiscard]] virtual std::size_t exchangePending(std::uint64_t token) const = 0;
  // The handler let go of an exchange it never answered.
  virtual void exchangeDropped(std::uint64_t token) = 0;
};

// The HttpExchange handlers get. Owned by the handler side (shared_ptr); the protocol server
// keeps a weak_ptr and detaches it when the stream or connection ends.
class Exchange final : public HttpExchange {
public:
  Exchange(ExchangeSink& sink, std::uint64_t token, HttpRequest request);
  ~Exchange() override;

  [[nodiscard]] const HttpRequest& request() const override { return request_; }
  void respond(HttpResponse response) override;
  void startStream(int status, HttpHeaders headers) override;
  bool write(std::string_view data) override;
  void end() override;
  [[nodiscard]] std::size_t pendingBytes() const override;
  [[nodiscard]] bool open() const override { return sink_ != nullptr && !complete_; }
  void onAbort(std::function<void()> fn) override { on_abort_ = std::move(fn); }

  // Protocol side: the client went away (or the session is being destroyed). Runs the abort
  // callback if the response was not complete; every later call does nothing.
  void detach();
  // Protocol side: the response is complete as far as the handler is concerned.
  [[nodiscard]] bool answered() const { return answered_; }

private:
  ExchangeSink* sink_;
  std::uint64_t token_;
  HttpRequest request_;
  bool answered_ = false;  // respond() or startStream() was called
  bool streaming_ = false; // startStream() was called and end() not yet
  bool complete_ = false;  // respond() or end() was called
  std::function<void()> on_abort_;
};

class ProtocolServer {
public:
  virtual ~ProtocolServer() = default;
  virtual void receive(std::span<const char> bytes) = 0;
  // Continues work that waited for an asynchronous answer (input held back meanwhile).
  virtual void process() = 0;
  // Appends every byte ready to go out to `out`.
  virtual void drainOutput(std::string& out) = 0;
  [[nodiscard]] virtual bool wantsClose() const = 0;
  // False while input would only be held back (an HTTP/1.1 request waits for its answer).
  [[nodiscard]] virtual bool wantsInput() const = 0;
  virtual void shutdown() = 0;
  // Called when output or work appeared outside receive()/process() (an asynchronous answer).
  void setWakeup(std::function<void()> fn) { wakeup_ = std::move(fn); }

protected:
  void wake() {
    if (!busy_ && wakeup_) {
      wakeup_();
    }
  }
  // Set while receive()/process() run: the caller takes the output afterwards anyway.
  class Busy {
  public:
    explicit Busy(ProtocolServer& s) : s_(s), was_(s.busy_) { s_.busy_ = true; }
    ~Busy() { s_.busy_ = was_; }
    Busy(const Busy&) = delete;
    Busy& operator=(const Busy&) = delete;

  private:
    ProtocolServer& s_;
    bool was_;
  };

private:
  std::function<void()> wakeup_;
  bool busy_ = false;
};

using ProtocolServerPtr = std::unique_ptr<ProtocolServer>;

// Calls the handler with a new exchange, turning an escaped exception into a 500 so that nothing
// unwinds through http-parser or nghttp2.
void invokeHandler(const AsyncHttpHandler& handler, const HttpExchangePtr& exchange);

// Splits a request target into path and raw query ("/a?b#c" -> "/a", "b"); an absolute-form
// target ("http://h/a?b") loses its scheme and authority. False when it is not a usable target.
bool splitTarget(std::string_view target, std::string& path, std::string& query);

} // namespace mailgate::api

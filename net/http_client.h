// Outbound HTTP/1.1 and HTTP/2 requests on a Loop (webhooks, OAuth2 token endpoints, Microsoft
// Graph). Runs libcurl's multi-socket interface on the loop; no curl or libuv type shows here.
#pragma once

#include "base/error.h"

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace mailgate::net {

class Loop;
class HttpClientCore;
class HttpOp;

struct HttpClientRequest {
  std::string method = "POST"; // GET, POST, PUT, ...; an HTTP token
  std::string url;             // http:// or https:// only
  // Sent as given (name, value). A name that is not an HTTP token, or a value with CR, LF or NUL,
  // fails the request with "http.request".
  std::vector<std::pair<std::string, std::string>> headers{};
  std::string body{};
  std::chrono::milliseconds timeout{30000}; // the whole request, connect included
  std::chrono::milliseconds connect_timeout{10000};
  std::size_t max_response_bytes = 1024 * 1024; // response body; larger: "http.too_large"
  std::string ca_file{};      // PEM certificates trusted in addition to the system store
  std::string bind_address{}; // egress.bind_address (an IP literal); empty: the kernel chooses
  bool http2 = true;          // offer h2 via ALPN on https; plain http always uses HTTP/1.1
};

struct HttpClientResponse {
  long status = 0;
  std::string http_version;                                 // "1.0", "1.1", "2"
  std::vector<std::pair<std::string, std::string>> headers; // names lower-cased, in order
  std::string body;
};

// A request in flight. Destroying it cancels the request: done never fires afterwards.
// Destroying it after done fired does nothing.
class PendingHttp {
public:
  explicit PendingHttp(std::shared_ptr<HttpOp> op);
  ~PendingHttp();
  PendingHttp(const PendingHttp&) = delete;
  PendingHttp& operator=(const PendingHttp&) = delete;

private:
  std::shared_ptr<HttpOp> op_;
};
using PendingHttpPtr = std::unique_ptr<PendingHttp>;

class HttpClient;
using HttpClientPtr = std::unique_ptr<HttpClient>;

// Loop thread only. One client per loop is enough: it keeps connections alive and reuses them
// across requests (and multiplexes HTTP/2 streams). Redirects are never followed; only http and
// https are spoken; TLS 1.2 minimum, with the peer's certificate and host name always verified.
// Destroying the client cancels every request still in flight (their done never fires); so does
// stopping the loop.
class HttpClient {
public:
  // Fails with "net.loop_stopped" on a loop that has stopped, "http.init" if libcurl fails.
  static Result<HttpClientPtr> create(Loop& loop);

  explicit HttpClient(std::shared_ptr<HttpClientCore> core);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Starts `request`. `done` fires exactly once, on the loop thread, in a later turn (never inside
  // send()), unless the returned PendingHttp, or this client, is destroyed first or the loop
  // stops. Any status the server sent (a 404 or a 500 too) is a response, not an error. Errors,
  // each with a hint: "http.request" (bad method, URL or header), "http.resolve", "http.connect",
  // "http.timeout", "http.tls", "http.too_large", "http.transfer" (anything else, with curl's
  // message). Error messages never contain header values or the body.
  [[nodiscard]] PendingHttpPtr send(HttpClientRequest request,
                                    std::function<void(Result<HttpClientResponse>)> done);

  // Requests in flight (sent, not yet completed or cancelled).
  [[nodiscard]] std::size_t inFlight() const;

private:
  std::shared_ptr<HttpClientCore> core_;
};

} // namespace mailgate::net

// The API port's network driver: accepts TCP (optionally TLS with ALPN h2/http/1.1) on one
// address and binds one HttpServerSession per connection to its net::Connection. All HTTP
// knowledge is in the session; this file only moves bytes, applies backpressure, enforces the
// connection cap and the idle timeout, and drains.
//
// Backpressure: output is taken from a session only while the socket's unsent bytes are under
// the high-water mark, and input is read only while the session wants it; so a client that
// never reads holds at most the high-water mark in our socket buffer plus what its streams
// already produced (which HttpExchange::pendingBytes() shows their writers).
//
// Threading: loop thread only. Lifetime: destroying the server closes every connection at once
// (their exchanges are detached: later answers do nothing).
#pragma once

#include "base/error.h"
#include "gateway/api/http_server_session.h"
#include "net/endpoint.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace mailgate::net {
class Loop;
}

namespace mailgate::api {

struct ApiServerOptions {
  net::Endpoint address{"127.0.0.1", 0};
  std::string tls_cert; // both set: TLS, ALPN h2 then http/1.1; else cleartext h2c + HTTP/1.1
  std::string tls_key;
  HttpServerOptions http;
  std::size_t max_connections = 1024;
  // A connection with no byte read or written for this long is closed (an event stream's
  // heartbeats keep it alive).
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(5)};
  std::size_t write_high_water = 256 * 1024;
};

struct ApiServerStats {
  uint64_t accepted = 0;
  uint64_t refused = 0; // over max_connections
  std::size_t open = 0;
  std::size_t http1 = 0; // open connections by protocol (undecided ones count in neither)
  std::size_t http2 = 0;
};

class ApiServer {
public:
  // Binds and listens; loads the certificate. Errors: "net.listen", "tls.config".
  static Result<std::unique_ptr<ApiServer>> create(net::Loop& loop, ApiServerOptions options,
                                                   AsyncHttpHandler handler);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  [[nodiscard]] uint16_t port() const;
  [[nodiscard]] ApiServerStats stats() const;

  // SIGTERM: stops accepting; every session shuts down gracefully (HTTP/2 GOAWAY: streams
  // already taken are answered; HTTP/1.1: after the response in progress). `done` runs in a later
  // turn once no connection is left. Long-lived streams must be ended by their writers.
  void drain(std::function<void()> done);

  struct State; // api_server.cc
  struct PrivateTag {
    explicit PrivateTag() = default;
  };
  ApiServer(PrivateTag, std::shared_ptr<State> state);

private:
  std::shared_ptr<State> state_;
};

} // namespace mailgate::api

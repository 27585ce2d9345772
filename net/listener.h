// Accepts TCP connections (optionally implicit TLS) on one address.
#pragma once

#include "base/error.h"
#include "net/connection.h"
#include "net/endpoint.h"
#include "net/tls_context.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

namespace mailgate::net {

class Loop;
class ListenerCore;
class Listener;
using ListenerPtr = std::unique_ptr<Listener>;

// Loop thread only. Callbacks run on the loop thread, never from inside a call on the Listener.
// Destroying the Listener stops accepting and drops connections still in their TLS handshake; it
// is safe from inside its own callbacks.
class Listener {
public:
  using AcceptFn = std::function<void(ConnectionPtr)>;
  using ErrorFn = std::function<void(const Error&)>;

  // Binds and listens. `endpoint.host` must be an IP literal: "0.0.0.0" / "::" for every address
  // ("::" also takes IPv4 where the system allows dual-stack), "127.0.0.1", "::1"; "localhost"
  // means 127.0.0.1. Port 0 picks a free port (read it with port()). SO_REUSEADDR is set, so a
  // restart does not wait for old connections in TIME_WAIT. `on_accept` receives each new
  // connection, which belongs to it from then on; nothing is read until it sets a handler.
  // Errors: "net.listen" with a hint (address in use, not on this machine, needs privileges).
  static Result<ListenerPtr> listen(Loop& loop, const Endpoint& endpoint, AcceptFn on_accept);

  explicit Listener(std::shared_ptr<ListenerCore> core);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Makes this an implicit-TLS listener: each accepted connection first completes a TLS handshake
  // as server (within `handshake_timeout`) and only then reaches on_accept, with tlsActive() true.
  // Connections whose handshake fails are closed and reported to the error callback.
  void setTls(TlsContextPtr context,
              std::chrono::milliseconds handshake_timeout = std::chrono::seconds(30));

  // Called for accept failures and failed TLS handshakes (the message names the peer), for logs
  // and metrics. The listener keeps listening.
  void onError(ErrorFn on_error);

  // The bound port (the real one when listening on port 0).
  [[nodiscard]] uint16_t port() const;
  // The bound address, e.g. {"127.0.0.1", 40123}.
  [[nodiscard]] Endpoint endpoint() const;

  // Stops accepting and closes the listening socket (new connections are refused), e.g. to drain
  // on SIGTERM. Connections already accepted are not touched; those still in their TLS handshake
  // finish it and are still delivered. Idempotent.
  void stop();

private:
  std::shared_ptr<ListenerCore> core_;
};

} // namespace mailgate::net

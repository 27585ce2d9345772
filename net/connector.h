// Opening outbound connections: name resolution, source address, timeout, implicit TLS.
#pragma once

#include "base/error.h"
#include "net/connection.h"
#include "net/endpoint.h"
#include "net/tls_context.h"

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace mailgate::net {

class Loop;
class ConnectOp;

struct ConnectOptions {
  // Source address for the connection (egress.bind_address, for peers that allow-list IPs).
  // Empty, "0.0.0.0" or "::" = let the system choose. Only target addresses of the same family
  // are tried.
  std::string bind_address{};
  // Name resolution plus TCP connect, all addresses tried included. "net.connect_timeout" after.
  std::chrono::milliseconds timeout{30000};
  // Implicit TLS (e.g. IMAP 993) when set: done() receives the connection only after the
  // handshake succeeded. Must be a client context.
  TlsContextPtr tls{};
  // Name sent as SNI and checked against the certificate; empty = the endpoint's host. Also used
  // by a later startTls() with an empty SNI.
  std::string sni{};
  std::chrono::milliseconds handshake_timeout{30000};
};

// A connect in progress. Destroying it cancels the attempt: done() never fires afterwards and any
// half-open socket is closed. Destroying it after done() fired does nothing.
class PendingConnect {
public:
  explicit PendingConnect(std::shared_ptr<ConnectOp> op);
  ~PendingConnect();
  PendingConnect(const PendingConnect&) = delete;
  PendingConnect& operator=(const PendingConnect&) = delete;

private:
  std::shared_ptr<ConnectOp> op_;
};
using PendingConnectPtr = std::unique_ptr<PendingConnect>;

// Loop thread only. Resolves `endpoint.host` (IP literals skip DNS; names are looked up with
// uv_getaddrinfo, IPv4 and IPv6), tries each address in turn until one accepts, binds the source
// address when given, and completes the TLS handshake when options.tls is set. `done` fires
// exactly once, on the loop thread, in a later turn (never inside connect()), unless the returned
// PendingConnect is destroyed first or the loop stops. Errors: "net.resolve", "net.connect"
// (refused, unreachable; the last address's error), "net.connect_timeout", "net.bind", or a TLS
// error ("tls.verify", "tls.handshake", "tls.pin_mismatch", "tls.handshake_timeout"), each with a
// hint.
[[nodiscard]] PendingConnectPtr connect(Loop& loop, const Endpoint& endpoint,
                                        ConnectOptions options,
                                        std::function<void(Result<ConnectionPtr>)> done);

} // namespace mailgate::net

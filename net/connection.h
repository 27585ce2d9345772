// A bidirectional byte stream over TCP, optionally with TLS (implicit, or started later with
// startTls() for STARTTLS). Protocol code sees only cleartext.
//
// Threading: loop thread only. Callbacks: always on the loop thread, and never from inside a call
// the user made on this connection (write, close, startTls, setHandler, ...): those defer any
// callback they cause to a later turn. A callback may call any method, including destroying the
// Connection, which is always safe: no callback fires after the destructor returns.
#pragma once

#include "base/error.h"
#include "net/tls_context.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace mailgate::net {

class ConnectionCore;
class Connection;
using ConnectionPtr = std::unique_ptr<Connection>;

struct ConnectionStats {
  uint64_t bytes_read = 0;    // from the socket (ciphertext when TLS is on)
  uint64_t bytes_written = 0; // to the socket (ciphertext when TLS is on)
  uint64_t socket_writes = 0; // uv_write calls: many write()s in one turn make one
};

class Connection {
public:
  // Receives a connection's events. Not owned by the connection: it must outlive the connection,
  // or be replaced with setHandler() before it dies.
  class Handler {
  public:
    virtual ~Handler() = default;
    // Cleartext from the peer. `data` is valid only during the call. With TLS, decrypted bytes
    // arrive in pieces of at most 16 KiB.
    virtual void onRead(std::span<const char> data) = 0;
    // The connection is over and its socket closed; fires exactly once, whoever ended it (the
    // peer, an error, close(), abort()), unless the Connection was destroyed first. `reason` is
    // nullptr for an orderly end (peer's FIN or TLS close_notify, or our close()/abort()), else
    // the error (valid only during the call). A pending startTls() gets its `done` call first.
    virtual void onClose(const Error* reason) = 0;
    // Every byte written so far has been handed to the kernel (pendingWriteBytes() fell to 0).
    virtual void onWriteDrained() {}
  };

  explicit Connection(std::shared_ptr<ConnectionCore> core);
  // Stops all callbacks. If close() was called and is still flushing, the flush, the TLS
  // close_notify and the close go on in the background (bounded by the close timeout);
  // otherwise the socket is closed at once, as abort() does.
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sets (or replaces, or with nullptr removes) the handler. Reading starts when a handler is set
  // and reading is not paused; bytes that arrived before are kept (in the kernel or, under TLS, in
  // the TLS session), never dropped.
  void setHandler(Handler* handler);

  // Queues bytes for the peer (encrypted if TLS is on). Never writes synchronously: everything
  // written during one loop turn goes out in one socket write at the end of the turn. Returns
  // false, and drops the bytes, once close()/abort() was called or the connection ended.
  // While a STARTTLS handshake runs, bytes wait and are sent encrypted once it completes.
  bool write(std::string_view data);

  // Bytes accepted by write() that the kernel has not taken yet. For backpressure: stop producing
  // above your high-water mark and go on in onWriteDrained().
  [[nodiscard]] size_t pendingWriteBytes() const;

  // Stops / restarts onRead() (and reading from the socket, so the peer feels backpressure).
  // resumeRead() delivers data already buffered in a later turn, never from inside the call.
  void pauseRead();
  void resumeRead();

  // Upgrades this live plaintext connection to TLS (STARTTLS). A server context makes us the TLS
  // server, a client context the client; `sni` is the server's name for a client context (empty:
  // the host given to connect()), ignored for a server. Plaintext queued with write() before this
  // call is sent first, in cleartext (e.g. the "220 Ready to start TLS" reply); the handshake then
  // uses only bytes the socket delivers from now on.
  //
  // RULE (RFC 3207 section 4.2, and its client-side twin): bytes that were already delivered to
  // onRead() are never fed to TLS. Whatever your parser still holds after the STARTTLS command
  // (server) or after the 220 reply (client) was sent in cleartext by someone who did not wait:
  // discard it, do not process it as protected data. Call startTls() from the onRead() that
  // carried the command/reply, or pauseRead() until you do, so no later plaintext is delivered.
  //
  // `done` fires once, in a later turn: success when the handshake completed and the peer passed
  // verification and pinning; otherwise an error ("tls.handshake", "tls.verify",
  // "tls.pin_mismatch", "tls.handshake_timeout", "net.closed") and the connection then closes
  // (onClose follows with the same reason). Calling it while TLS is already on, or after close,
  // fails with "tls.state" and changes nothing. Reading runs during the handshake even if paused.
  void startTls(TlsContextPtr context, std::string sni, std::function<void(Result<void>)> done);

  // How long a TLS handshake may take before it fails with "tls.handshake_timeout" (default 30 s).
  // Applies to handshakes started after the call.
  void setHandshakeTimeout(std::chrono::milliseconds timeout);

  // How long close() may spend flushing and waiting for the peer's FIN (default 10 s). If the
  // writes could not be flushed in time, onClose reports "net.close_timeout".
  void setCloseTimeout(std::chrono::milliseconds timeout);

  [[nodiscard]] bool tlsActive() const;           // TLS handshake completed
  [[nodiscard]] std::string tlsVersion() const;   // "TLSv1.3"; empty without TLS
  [[nodiscard]] std::string alpnSelected() const; // "h2"; empty if none was agreed
  [[nodiscard]] std::string peerAddress() const;  // "ip:port" ("[::1]:port" for IPv6)
  [[nodiscard]] std::string localAddress() const; // "ip:port"
  [[nodiscard]] uint64_t id() const;              // unique in the process, for log lines
  [[nodiscard]] bool isOpen() const;              // neither closing nor closed
  [[nodiscard]] ConnectionStats stats() const;

  // Graceful close: stops onRead, sends everything written so far, then the TLS close_notify, then
  // a FIN; waits (bounded by the close timeout) for the peer's FIN, and closes. onClose(nullptr)
  // follows. Harmless if already closing or closed.
  void close();

  // Immediate close: pending writes are dropped. onClose(nullptr) follows in a later turn.
  void abort();

  // For net/ internals only.
  [[nodiscard]] ConnectionCore& core() { return *core_; }

private:
  std::shared_ptr<ConnectionCore> core_;
};

} // namespace mailgate::net

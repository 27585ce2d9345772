// Internal to net/: one TLS session over two memory BIOs, with no I/O of its own (the shape of
// Node's TLSWrap). The connection feeds it bytes read from the socket, pulls the bytes it must
// send, and drains decrypted data until OpenSSL wants more input.
#pragma once

#include "base/error.h"
#include "net/tls_context.h"

#include <functional>
#include <memory>
#include <openssl/ssl.h>
#include <span>
#include <string>
#include <string_view>

namespace mailgate::net {

class TlsSession {
public:
  // `host` is the peer's name for a client: sent as SNI (unless it is an IP literal) and checked
  // against the certificate when the context verifies peers. Ignored for a server.
  static Result<std::unique_ptr<TlsSession>> create(TlsContextPtr context, const std::string& host);

  TlsSession(TlsContextPtr context, std::string host);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  [[nodiscard]] bool isServer() const { return context_->isServer(); }
  [[nodiscard]] bool established() const { return established_; }

  // Bytes read from the network.
  void feed(std::span<const char> data);

  // Moves every byte OpenSSL wants sent onto the end of `out`. Returns true if it added any.
  bool takeOutput(std::string& out);

  // Advances the handshake with what was fed. Returns true once it is complete and the peer passed
  // verification and pinning; false while more input is needed; an error (codes "tls.handshake",
  // "tls.verify", "tls.pin_mismatch") when it failed.
  Result<bool> handshake();

  enum class ReadStatus { kNeedInput, kStopped, kPeerClosed };
  // Decrypts records and passes each piece to `sink` until OpenSSL needs more input (kNeedInput),
  // `sink` returns false (kStopped: call again later to continue), or the peer sent close_notify
  // (kPeerClosed). `buffer` is scratch space for one piece.
  Result<ReadStatus> read(std::span<char> buffer,
                          const std::function<bool(std::span<const char>)>& sink);

  // True if decrypted or undecrypted input is waiting for read().
  [[nodiscard]] bool hasPendingInput() const;

  // Encrypts `data` (all of it: memory BIOs never push back).
  Result<void> write(std::string_view data);

  // Queues our close_notify (once).
  void shutdown();

  [[nodiscard]] std::string version() const;
  [[nodiscard]] std::string alpn() const;

private:
  Error handshakeError(int ssl_error);

  TlsContextPtr context_;
  std::string host_;
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl_{nullptr, SSL_free};
  BIO* network_in_ = nullptr;  // owned by ssl_: bytes from the socket
  BIO* network_out_ = nullptr; // owned by ssl_: bytes for the socket
  bool established_ = false;
  bool shutdown_sent_ = false;
};

} // namespace mailgate::net

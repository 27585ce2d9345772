// TLS settings shared by many connections: certificates, trust, pins, ALPN. Immutable once made;
// safe to share between threads and connections (hold it by TlsContextPtr). To change settings
// (e.g. a renewed certificate on SIGHUP), make a new context: live connections keep the old one.
#pragma once

#include "base/error.h"

#include <memory>
#include <string>
#include <vector>

namespace mailgate::net {

class TlsContext;
using TlsContextPtr = std::shared_ptr<const TlsContext>;

struct TlsServerOptions {
  std::string cert_file{};         // PEM: the certificate, then any intermediates
  std::string key_file{};          // PEM private key (unencrypted); its content is never logged
  std::vector<std::string> alpn{}; // protocols we accept, most preferred first (e.g. "h2")
};

struct TlsClientOptions {
  std::string ca_file{};   // PEM bundle of trusted CAs; empty = the system's CAs
  bool verify_peer = true; // false: accept any certificate and any name (pins still apply)
  // Explicit opt-in: accept a peer whose certificate is self-signed (signed by its own key, not by
  // a trusted CA). The host name is still checked while verify_peer is true.
  bool allow_self_signed = false;
  // SHA-256 fingerprints of the peer certificate's DER encoding, hex, any case, ':' allowed
  // (as `openssl x509 -noout -fingerprint -sha256` prints). When not empty, one must match, in
  // addition to the checks above.
  std::vector<std::string> pins{};
  std::vector<std::string> alpn{}; // protocols to offer, most preferred first
};

class TlsContext {
public:
  struct Impl; // net/internal/tls_context_impl.h
  struct PrivateTag {
    explicit PrivateTag() = default;
  };

  // Loads the certificate chain and key and checks that they belong together. TLS 1.2 minimum.
  // Errors: code "tls.config" naming the file and what is wrong with it.
  static Result<TlsContextPtr> server(const TlsServerOptions& options);

  // Loads trust (ca_file or system CAs) and validates the pins. TLS 1.2 minimum. The client sends
  // SNI and checks the certificate's host name against the name given to connect()/startTls().
  static Result<TlsContextPtr> client(const TlsClientOptions& options);

  TlsContext(PrivateTag, std::unique_ptr<Impl> impl);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  [[nodiscard]] bool isServer() const;

  // For net/ internals only.
  [[nodiscard]] const Impl& impl() const { return *impl_; }

private:
  std::unique_ptr<Impl> impl_;
};

// The SHA-256 fingerprint (lower-case hex, no separators) of the first certificate in a PEM file,
// in the form TlsClientOptions::pins expects. For operators pinning a server they trust.
Result<std::string> certificateFingerprint(const std::string& pem_file);

} // namespace mailgate::net

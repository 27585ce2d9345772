// Internal to net/: what a TlsContext holds.
#pragma once

#include "net/tls_context.h"

#include <memory>
#include <openssl/ssl.h>
#include <string>
#include <vector>

namespace mailgate::net {

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};

struct TlsContext::Impl {
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx;
  bool server = false;
  bool verify_peer = true;
  bool allow_self_signed = false;
  std::vector<std::string> pins; // normalised: lower-case hex, 64 characters
  std::string alpn_wire;         // ALPN list in wire format (length-prefixed names)
};

// Lower-case hex SHA-256 of the certificate's DER encoding.
std::string fingerprintOf(X509* cert);

} // namespace mailgate::net

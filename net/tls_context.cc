#include "net/tls_context.h"

#include "net/internal/openssl_util.h"
#include "net/internal/tls_context_impl.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

namespace mailgate::net {
namespace {

constexpr const char* kCode = "tls.config";

Result<std::string> alpnWire(const std::vector<std::string>& protocols) {
  std::string wire;
  for (const auto& p : protocols) {
    if (p.empty() || p.size() > 255) {
      return fail(kCode, fmt::format("ALPN protocol name '{}' must be 1 to 255 bytes long", p));
    }
    wire.push_back(static_cast<char>(p.size()));
    wire += p;
  }
  return wire;
}

// Server side ALPN: our preference order wins; no overlap means "no ALPN" rather than a failed
// handshake, so a client that offers only other protocols still gets a connection.
int selectAlpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* out_len,
               const unsigned char* in, unsigned int in_len, void* arg) {
  const auto* impl = static_cast<const TlsContext::Impl*>(arg);
  const std::string& ours = impl->alpn_wire;
  for (size_t i = 0; i < ours.size(); i += 1 + static_cast<unsigned char>(ours[i])) {
    const auto len = static_cast<unsigned char>(ours[i]);
    for (unsigned j = 0; j < in_len; j += 1u + in[j]) {
      if (in[j] == len && j + 1 + len <= in_len &&
          std::memcmp(&in[j + 1], &ours[i + 1], len) == 0) {
        *out = &in[j + 1];
        *out_len = len;
        return SSL_TLSEXT_ERR_OK;
      }
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// Client side: the one place where allow_self_signed relaxes verification. Every other failure
// (unknown issuer, expired, wrong host name) still fails the handshake.
int verifyPeer(int preverify_ok, X509_STORE_CTX* store) {
  if (preverify_ok == 1) {
    return 1;
  }
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  const auto* impl =
      static_cast<const TlsContext::Impl*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (impl != nullptr && impl->allow_self_signed &&
      X509_STORE_CTX_get_error(store) == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT) {
    return 1;
  }
  return 0;
}

Result<std::string> normalisePin(const std::string& pin) {
  std::string hex;
  for (char c : pin) {
    if (c == ':' || c == ' ') {
      continue;
    }
    if (std::isxdigit(static_cast<unsigned char>(c)) == 0) {
      return fail(kCode, fmt::format("pin '{}' is not hexadecimal", pin),
                  "pins are SHA-256 fingerprints, as `openssl x509 -noout -fingerprint -sha256` "
                  "prints them");
    }
    hex.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  if (hex.size() != 64) {
    return fail(
        kCode,
        fmt::format("pin '{}' has {} hex digits, a SHA-256 fingerprint has 64", pin, hex.size()),
        "pins are SHA-256 fingerprints of the certificate (not of the public key)");
  }
  return hex;
}

Result<std::unique_ptr<SSL_CTX, SslCtxFree>> newContext(const SSL_METHOD* method) {
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx(SSL_CTX_new(method));
  if (!ctx) {
    return fail(kCode, "cannot create a TLS context: " + takeOpensslErrors());
  }
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  // An idle connection gives its record buffers (about 34 KiB) back: the gateway holds thousands
  // of IMAP sessions that sit in IDLE, and SMTP and API connections that wait between commands.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
  return ctx;
}

} // namespace

std::string takeOpensslErrors(const std::string& fallback) {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    std::string text = reason != nullptr ? reason : fmt::format("error {:#x}", e);
    if (out.find(text) != std::string::npos) {
      continue;
    }
    if (!out.empty()) {
      out += "; ";
    }
    out += text;
  }
  return out.empty() ? fallback : out;
}

std::string fingerprintOf(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &len) != 1) {
    return {};
  }
  std::string hex;
  hex.reserve(len * 2);
  for (unsigned i = 0; i < len; ++i) {
    hex += fmt::format("{:02x}", md[i]);
  }
  return hex;
}

TlsContext::TlsContext(PrivateTag, std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TlsContext::~TlsContext() = default;

bool TlsContext::isServer() const {
  return impl_->server;
}

Result<TlsContextPtr> TlsContext::server(const TlsServerOptions& options) {
  ERR_clear_error();
  if (options.cert_file.empty() || options.key_file.empty()) {
    return fail(kCode, "a TLS server needs both a certificate file and a key file",
                "set tls: {cert: FILE, key: FILE}");
  }
  auto impl = std::make_unique<Impl>();
  impl->server = true;
  auto ctx = newContext(TLS_server_method());
  if (!ctx) {
    return std::unexpected(ctx.error());
  }
  impl->ctx = std::move(*ctx);
  SSL_CTX* c = impl->ctx.get();
  SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_use_certificate_chain_file(c, options.cert_file.c_str()) != 1) {
    return fail(kCode,
                fmt::format("cannot load the certificate chain from '{}': {}", options.cert_file,
                            takeOpensslErrors()),
                "the file must exist, be readable, and hold PEM certificates, the server's first");
  }
  if (SSL_CTX_use_PrivateKey_file(c, options.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    const std::string reason = takeOpensslErrors();
    if (reason.find("key values mismatch") != std::string::npos) {
      return fail(kCode,
                  fmt::format("the key in '{}' does not belong to the certificate in '{}'",
                              options.key_file, options.cert_file),
                  "use the key the certificate was issued for");
    }
    return fail(kCode,
                fmt::format("cannot load the private key from '{}': {}", options.key_file, reason),
                "the file must exist, be readable, and hold an unencrypted PEM private key");
  }
  if (SSL_CTX_check_private_key(c) != 1) {
    return fail(kCode,
                fmt::format("the key in '{}' does not belong to the certificate in '{}': {}",
                            options.key_file, options.cert_file, takeOpensslErrors()),
                "use the key the certificate was issued for");
  }
  auto wire = alpnWire(options.alpn);
  if (!wire) {
    return std::unexpected(wire.error());
  }
  impl->alpn_wire = std::move(*wire);
  if (!impl->alpn_wire.empty()) {
    SSL_CTX_set_alpn_select_cb(c, selectAlpn, impl.get());
  }
  return std::make_shared<const TlsContext>(PrivateTag{}, std::move(impl));
}

Result<TlsContextPtr> TlsContext::client(const TlsClientOptions& options) {
  ERR_clear_error();
  auto impl = std::make_unique<Impl>();
  impl->server = false;
  impl->verify_peer = options.verify_peer;
  impl->allow_self_signed = options.allow_self_signed;
  auto ctx = newContext(TLS_client_method());
  if (!ctx) {
    return std::unexpected(ctx.error());
  }
  impl->ctx = std::move(*ctx);
  SSL_CTX* c = impl->ctx.get();
  if (options.ca_file.empty()) {
    if (SSL_CTX_set_default_verify_paths(c) != 1) {
      return fail(kCode, "cannot load the system's trusted CAs: " + takeOpensslErrors(),
                  "install the ca-certificates package or set ca_file");
    }
  } else if (SSL_CTX_load_verify_locations(c, options.ca_file.c_str(), nullptr) != 1) {
    return fail(
        kCode,
        fmt::format("cannot load trusted CAs from '{}': {}", options.ca_file, takeOpensslErrors()),
        "ca_file must be a readable file of PEM certificates");
  }
  SSL_CTX_set_verify(c, options.verify_peer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                     options.verify_peer ? verifyPeer : nullptr);
  SSL_CTX_set_app_data(c, impl.get());
  for (const auto& pin : options.pins) {
    auto hex = normalisePin(pin);
    if (!hex) {
      return std::unexpected(hex.error());
    }
    impl->pins.push_back(std::move(*hex));
  }
  auto wire = alpnWire(options.alpn);
  if (!wire) {
    return std::unexpected(wire.error());
  }
  impl->alpn_wire = std::move(*wire);
  if (!impl->alpn_wire.empty() &&
      SSL_CTX_set_alpn_protos(c, reinterpret_cast<const unsigned char*>(impl->alpn_wire.data()),
                              static_cast<unsigned>(impl->alpn_wire.size())) != 0) {
    return fail(kCode, "cannot set ALPN protocols: " + takeOpensslErrors());
  }
  return std::make_shared<const TlsContext>(PrivateTag{}, std::move(impl));
}

Result<std::string> certificateFingerprint(const std::string& pem_file) {
  ERR_clear_error();
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_file(pem_file.c_str(), "r"), BIO_free);
  if (!bio) {
    return fail(kCode, fmt::format("cannot open '{}': {}", pem_file, takeOpensslErrors()));
  }
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), X509_free);
  if (!cert) {
    return fail(kCode,
                fmt::format("'{}' holds no PEM certificate: {}", pem_file, takeOpensslErrors()));
  }
  return fingerprintOf(cert.get());
}

} // namespace mailgate::net

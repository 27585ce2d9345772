#include "net/internal/tls_session.h"

#include "net/internal/openssl_util.h"
#include "net/internal/tls_context_impl.h"
#include "net/internal/uv_util.h"

#include <algorithm>
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

namespace mailgate::net {
namespace {

bool isIpLiteral(const std::string& host) {
  return parseIp(host, 0).has_value();
}

std::string verifyHint(long result, const std::string& host) {
  switch (result) {
  case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    return "the peer presents a self-signed certificate; set allow_self_signed: true to accept "
           "it (its host name is still checked), or pin its fingerprint";
  case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
  case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    return "the certificate was issued by a CA this machine does not trust; set ca_file to that "
           "CA's certificate (PEM), or install it among the system CAs";
  case X509_V_ERR_HOSTNAME_MISMATCH:
  case X509_V_ERR_IP_ADDRESS_MISMATCH:
    return fmt::format("the certificate is not valid for '{}'; connect by a name the "
                       "certificate lists",
                       host);
  case X509_V_ERR_CERT_HAS_EXPIRED:
  case X509_V_ERR_CERT_NOT_YET_VALID:
    return "check the dates of the peer's certificate and this machine's clock";
  default:
    return {};
  }
}

std::string handshakeHint(const std::string& reason, bool server) {
  if (reason.find("wrong version number") != std::string::npos ||
      reason.find("packet length too long") != std::string::npos ||
      reason.find("http request") != std::string::npos) {
    return server ? "the client did not start TLS; it may expect plaintext or STARTTLS on this port"
                  : "the server did not answer with TLS; if the port expects STARTTLS (587, 25) "
                    "set tls: starttls, if it is plaintext set tls: none";
  }
  if (reason.find("unsupported protocol") != std::string::npos ||
      reason.find("protocol version") != std::string::npos) {
    return "the peer offers only TLS versions older than 1.2, which mailgate refuses";
  }
  if (reason.find("no application protocol") != std::string::npos) {
    return "client and server share no ALPN protocol";
  }
  if (reason.find("handshake failure") != std::string::npos ||
      reason.find("no shared cipher") != std::string::npos) {
    return "client and server share no TLS version or cipher suite";
  }
  if (reason.find("unknown ca") != std::string::npos ||
      reason.find("bad certificate") != std::string::npos ||
      reason.find("certificate unknown") != std::string::npos) {
    return "the peer rejected our certificate; it must trust the CA that issued it";
  }
  return {};
}

} // namespace

Result<std::unique_ptr<TlsSession>> TlsSession::create(TlsContextPtr context,
                                                       const std::string& host) {
  ERR_clear_error();
  const auto& impl = context->impl();
  if (!impl.server && impl.verify_peer && host.empty()) {
    return fail("tls.config", "no host name to verify the server's certificate against",
                "pass the server's name (the one its certificate lists) as the SNI");
  }
  auto session = std::make_unique<TlsSession>(context, host);
  session->ssl_.reset(SSL_new(impl.ctx.get()));
  if (!session->ssl_) {
    return fail("tls.config", "cannot create a TLS session: " + takeOpensslErrors());
  }
  SSL* ssl = session->ssl_.get();
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  if (in == nullptr || out == nullptr) {
    BIO_free(in);
    BIO_free(out);
    return fail("tls.config", "cannot create TLS buffers: " + takeOpensslErrors());
  }
  // An empty memory BIO must read as "retry later", not as end of file.
  BIO_set_mem_eof_return(in, -1);
  BIO_set_mem_eof_return(out, -1);
  SSL_set_bio(ssl, in, out); // the SSL owns both from here
  session->network_in_ = in;
  session->network_out_ = out;
  if (impl.server) {
    SSL_set_accept_state(ssl);
  } else {
    SSL_set_connect_state(ssl);
    const bool ip = isIpLiteral(host);
    // RFC 6066: SNI carries DNS names only.
    if (!host.empty() && !ip && SSL_set_tlsext_host_name(ssl, host.c_str()) != 1) {
      return fail("tls.config",
                  fmt::format("cannot use '{}' as SNI: {}", host, takeOpensslErrors()));
    }
    if (impl.verify_peer) {
      const int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str())
                        : SSL_set1_host(ssl, host.c_str());
      if (ok != 1) {
        return fail("tls.config", fmt::format("cannot check certificates against '{}': {}", host,
                                              takeOpensslErrors()));
      }
    }
  }
  return session;
}

TlsSession::TlsSession(TlsContextPtr context, std::string host)
    : context_(std::move(context)), host_(std::move(host)) {}

TlsSession::~TlsSession() = default;

void TlsSession::feed(std::span<const char> data) {
  // A memory BIO grows as needed; writes fail only on allocation failure.
  size_t done = 0;
  while (done < data.size()) {
    const int chunk = static_cast<int>(std::min<size_t>(data.size() - done, 1 << 30));
    const int n = BIO_write(network_in_, data.data() + done, chunk);
    if (n <= 0) {
      break;
    }
    done += static_cast<size_t>(n);
  }
}

bool TlsSession::takeOutput(std::string& out) {
  const size_t pending = BIO_ctrl_pending(network_out_);
  if (pending == 0) {
    return false;
  }
  const size_t old = out.size();
  out.resize(old + pending);
  const int n = BIO_read(network_out_, out.data() + old, static_cast<int>(pending));
  out.resize(old + static_cast<size_t>(std::max(n, 0)));
  return n > 0;
}

Result<bool> TlsSession::handshake() {
  if (established_) {
    return true;
  }
  ERR_clear_error();
  const int rc = SSL_do_handshake(ssl_.get());
  if (rc == 1) {
    const auto& pins = context_->impl().pins;
    if (!isServer() && !pins.empty()) {
      std::unique_ptr<X509, decltype(&X509_free)> cert(SSL_get1_peer_certificate(ssl_.get()),
                                                       X509_free);
      const std::string fp = cert ? fingerprintOf(cert.get()) : std::string();
      if (std::find(pins.begin(), pins.end(), fp) == pins.end()) {
        return fail("tls.pin_mismatch",
                    fmt::format("the certificate of '{}' has SHA-256 fingerprint {}, which matches "
                                "none of the {} configured pins",
                                host_, fp.empty() ? "(none)" : fp, pins.size()),
                    "if the server's certificate was renewed on purpose, update the pins");
      }
    }
    established_ = true;
    return true;
  }
  const int err = SSL_get_error(ssl_.get(), rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    return false;
  }
  return std::unexpected(handshakeError(err));
}

Error TlsSession::handshakeError(int ssl_error) {
  if (!isServer()) {
    const long result = SSL_get_verify_result(ssl_.get());
    if (result != X509_V_OK && context_->impl().verify_peer) {
      ERR_clear_error();
      return Error("tls.verify",
                   fmt::format("certificate verify failed for '{}': {}", host_,
                               X509_verify_cert_error_string(result)),
                   verifyHint(result, host_));
    }
  }
  std::string reason;
  if (ssl_error == SSL_ERROR_SSL) {
    reason = takeOpensslErrors("protocol error");
  } else {
    reason = takeOpensslErrors(fmt::format("TLS error {}", ssl_error));
  }
  return Error("tls.handshake", "TLS handshake failed: " + reason,
               handshakeHint(reason, isServer()));
}

Result<TlsSession::ReadStatus>
TlsSession::read(std::span<char> buffer, const std::function<bool(std::span<const char>)>& sink) {
  for (;;) {
    ERR_clear_error();
    const int n = SSL_read(ssl_.get(), buffer.data(), static_cast<int>(buffer.size()));
    if (n > 0) {
      if (!sink(std::span<const char>(buffer.data(), static_cast<size_t>(n)))) {
        return ReadStatus::kStopped;
      }
      continue;
    }
    const int err = SSL_get_error(ssl_.get(), n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      return ReadStatus::kNeedInput;
    }
    if (err == SSL_ERROR_ZERO_RETURN) {
      return ReadStatus::kPeerClosed;
    }
    return fail("tls.read",
                "TLS error on a live connection: " + takeOpensslErrors("protocol error"),
                "the peer sent data that is not valid TLS");
  }
}

bool TlsSession::hasPendingInput() const {
  return SSL_pending(ssl_.get()) > 0 || BIO_ctrl_pending(network_in_) > 0;
}

Result<void> TlsSession::write(std::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    ERR_clear_error();
    const int chunk = static_cast<int>(std::min<size_t>(data.size() - done, 1 << 30));
    const int n = SSL_write(ssl_.get(), data.data() + done, chunk);
    if (n <= 0) {
      return fail("tls.write", "cannot encrypt: " + takeOpensslErrors("TLS session not writable"));
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

void TlsSession::shutdown() {
  if (shutdown_sent_ || !established_) {
    return;
  }
  shutdown_sent_ = true;
  ERR_clear_error();
  SSL_shutdown(ssl_.get());
  ERR_clear_error();
}

std::string TlsSession::version() const {
  return established_ ? SSL_get_version(ssl_.get()) : std::string();
}

std::string TlsSession::alpn() const {
  const unsigned char* data = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_.get(), &data, &len);
  return data != nullptr ? std::string(reinterpret_cast<const char*>(data), len) : std::string();
}

} // namespace mailgate::net

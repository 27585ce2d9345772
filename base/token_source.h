// Where the SMTP delivery side and the IMAP sessions get an OAuth2 access token for SASL XOAUTH2.
// The OAuth2 token manager (gateway/, its own issue) implements it; tests use a fixed token. In
// base/ because relay/ and imap/ both take it and neither may depend on the other.
#pragma once

#include "base/error.h"
#include "base/secret.h"

#include <functional>

namespace mailgate {

class TokenSource {
public:
  TokenSource() = default;
  TokenSource(const TokenSource&) = delete;
  TokenSource& operator=(const TokenSource&) = delete;
  virtual ~TokenSource() = default;

  // Asks for a currently valid access token. Contract: `done` runs exactly once, on the loop
  // thread of the caller, and never from inside this call (defer or post it). The caller may be
  // gone by then; implementations must not assume anything about it. An error (e.g.
  // "oauth.invalid_grant" with a hint for the operator) is treated like a refused connection: the
  // pool backs off and the mail waits.
  virtual void token(std::function<void(Result<Secret>)> done) = 0;
};

} // namespace mailgate

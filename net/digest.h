// Cryptographic digests from OpenSSL's libcrypto, for code outside net/ that needs one (request
// fingerprints of the control API; webhook signatures later) without including OpenSSL itself.
#pragma once

#include <string>
#include <string_view>

namespace mailgate::net {

// SHA-256 of `data`, 64 lower-case hex digits.
[[nodiscard]] std::string sha256Hex(std::string_view data);

} // namespace mailgate::net

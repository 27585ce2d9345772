// Base64 (RFC 4648, standard alphabet, with padding) for SASL exchanges.
#pragma once

#include "base/error.h"

#include <string>
#include <string_view>

namespace mailgate::relay::smtp {

[[nodiscard]] std::string base64Encode(std::string_view bytes);

// Strict decoding: only the standard alphabet, length a multiple of four, '=' only as the last one
// or two characters, and the unused bits of the last group zero (so every input has exactly one
// accepted encoding). No whitespace. Empty input decodes to an empty string.
// Fails with "smtp.base64".
[[nodiscard]] Result<std::string> base64Decode(std::string_view text);

} // namespace mailgate::relay::smtp

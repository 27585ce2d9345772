// Strict base64 (RFC 4648, standard alphabet, with padding) for SASL exchanges (SMTP AUTH, IMAP
// AUTHENTICATE). Standard library only. MIME bodies use the lenient decoder in gateway/message/.
#pragma once

#include "base/error.h"

#include <string>
#include <string_view>

namespace mailgate {

[[nodiscard]] std::string base64Encode(std::string_view bytes);

// Strict decoding: only the standard alphabet, length a multiple of four, '=' only as the last one
// or two characters, and the unused bits of the last group zero (so every input has exactly one
// accepted encoding). No whitespace. Empty input decodes to an empty string.
// Fails with "base64.invalid".
[[nodiscard]] Result<std::string> base64Decode(std::string_view text);

} // namespace mailgate

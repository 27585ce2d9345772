// Strict base64 decoding for attachment content (RFC 4648 section 4, the standard alphabet).
// GLib's decoder skips bytes it does not know, which would turn a mistake into a corrupt file;
// this one refuses them and says where. Internal to gateway/message/.
#pragma once

#include <cstddef>
#include <expected>
#include <string>
#include <string_view>

namespace mailgate::message::detail {

struct Base64Error {
  std::size_t offset = 0;    // of the first byte that does not fit
  bool url_alphabet = false; // it was '-' or '_' (base64url)
};

// The bytes `text` encodes. Spaces, tabs, CR and LF anywhere are ignored; the final group may
// lack its '=' padding; '=' is accepted only at the end, and a final group of one character is
// refused. Bits past the last whole byte are ignored.
[[nodiscard]] std::expected<std::string, Base64Error> decodeBase64(std::string_view text);

// An upper bound of decodeBase64(text)->size(), without decoding.
[[nodiscard]] std::size_t decodedSizeBound(std::string_view text);

} // namespace mailgate::message::detail

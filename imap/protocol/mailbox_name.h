// Mailbox names: modified UTF-7 (RFC 3501 section 5.1.3) to and from UTF-8, and INBOX's
// case-insensitivity. Sans-IO.
#pragma once

#include "base/error.h"

#include <string>
#include <string_view>

namespace mailgate::imap::protocol {

// UTF-8 to modified UTF-7. Fails with "imap.mailbox_name" on invalid UTF-8.
[[nodiscard]] Result<std::string> encodeMailboxName(std::string_view utf8);
// Modified UTF-7 to UTF-8. Fails with "imap.mailbox_name" on a malformed shift sequence; names
// from servers that send raw UTF-8 without UTF8=ACCEPT are returned unchanged when they are valid
// UTF-8 and hold no '&'.
[[nodiscard]] Result<std::string> decodeMailboxName(std::string_view mutf7);
// "INBOX" compared case-insensitively, every other name byte for byte.
[[nodiscard]] bool sameMailbox(std::string_view a, std::string_view b);

} // namespace mailgate::imap::protocol

// Finding the Sent folder of a mailbox from its LIST answer. Pure function, no I/O.
#pragma once

#include "imap/session.h"

#include <string>
#include <string_view>
#include <vector>

namespace mailgate::imap {

// The Sent folder (UTF-8 name), in this order: the one LIST marks \Sent (RFC 6154; Microsoft 365
// marks it even without SPECIAL-USE); else the first whose name is a well-known localized name of
// Sent ("Sent Items", "Sent", "Sent Messages", "Gesendete Elemente", "Éléments envoyés", ...,
// compared case-insensitively for ASCII, at the top level or under INBOX); else `configured` when
// LIST has it (or when it is set and LIST gave nothing); else empty.
[[nodiscard]] std::string findSentFolder(const std::vector<FolderInfo>& folders,
                                         std::string_view configured);

} // namespace mailgate::imap

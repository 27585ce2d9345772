// Envelope address syntax (RFC 5321 section 4.1.2, with the RFC 6531 SMTPUTF8 extensions).
#pragma once

#include "base/error.h"

#include <cstddef>
#include <string>
#include <string_view>

namespace mailgate::relay::smtp {

inline constexpr std::size_t kMaxLocalPartOctets = 64;
inline constexpr std::size_t kMaxDomainOctets = 255;
inline constexpr std::size_t kMaxPathOctets = 256; // including the angle brackets

enum class PathKind {
  kReversePath, // MAIL FROM: "<>" (the null sender) is allowed
  kForwardPath, // RCPT TO: "<postmaster>" without a domain is allowed
};

struct ParsedPath {
  // The mailbox without brackets and without any source route ("user@example.com",
  // "\"john doe\"@example.com", "postmaster"), or empty for the null sender.
  std::string address;
  // The address holds bytes above 0x7f: only acceptable in an SMTPUTF8 transaction.
  bool non_ascii = false;
  bool is_postmaster = false; // "<postmaster>" with no domain
};

// Parses "<...>" exactly (no surrounding spaces). UTF-8 is accepted when well formed and reported
// through `non_ascii`; the caller decides whether the transaction allows it. A source route
// ("<@relay1,@relay2:user@example.com>") is accepted and dropped, as RFC 5321 section 3.3 asks.
// Fails with "smtp.address" and a message fit for a reply text (no client bytes echoed).
[[nodiscard]] Result<ParsedPath> parsePath(std::string_view text, PathKind kind);

// True when `mailbox` ("local@domain", no brackets) is a valid RFC 5321 Mailbox; with allow_utf8,
// also an RFC 6531 one. Used by the client to refuse envelope data that would break the command
// line (CR, LF, '<', '>', spaces outside quotes, ...).
[[nodiscard]] bool isValidMailbox(std::string_view mailbox, bool allow_utf8);

// RFC 5321 Domain (LDH labels, each 1-63 octets, total at most 255); with allow_utf8, labels may
// also hold well-formed UTF-8.
[[nodiscard]] bool isValidDomain(std::string_view domain, bool allow_utf8);

// Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
[[nodiscard]] bool isValidUtf8(std::string_view text);

} // namespace mailgate::relay::smtp

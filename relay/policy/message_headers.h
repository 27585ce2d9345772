// The header facts routing needs from a submitted RFC 5322 message, and the one edit it makes.
// The header block is split with our own small scanner (unfolding per RFC 5322 section 2.2.3);
// From is read with parseAddressList (address_list.h): checked against the address-list grammar
// first, then parsed by GMime for display names, comments, groups and RFC 2047 encoded words.
// Bounded: at most kMaxHeaderBytes of header are looked at, at most kMaxFromBytes of a From
// field read, and at most kMaxFromAddresses addresses.
//
// Lines end at CRLF, at a bare LF and at a bare CR: the same line ends the DATA decoder stores and
// the DotStuffer sends as CRLF, so these functions see the lines the next hop will see. A field
// name may be followed by spaces before its colon (RFC 5322 section 4.5, obsolete syntax that
// readers still accept); names compare ASCII case-insensitively. A line that is neither a field,
// a continuation nor the empty line is ignored, with its continuation lines.
//
// Both functions are pure and re-entrant; GMime is initialised once on first use.
#pragma once

#include "base/error.h"
#include "relay/policy/address_list.h"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::relay::policy {

inline constexpr std::size_t kMaxHeaderBytes = 256 * 1024;
inline constexpr std::size_t kMaxFromAddresses = 64;
inline constexpr std::size_t kMaxFromBytes = 32 * 1024; // one unfolded From field

struct HeaderFacts {
  // addr-spec of every mailbox in every From field (groups flattened), as written except that an
  // internationalised domain is given in its ASCII (IDNA) form, the form configured addresses
  // have. Every From field, not only the first, so that a second From naming someone else is
  // refused by SenderDirectory::checkFrom even if the caller ignores from_repeated.
  std::vector<std::string> from;
  bool from_present = false;
  bool from_repeated = false; // more than one From field (RFC 5322 allows exactly one)
  // The first X-Mailgate-Priority field's value, unfolded and trimmed of spaces and tabs, case as
  // written ("Personal" stays "Personal"); nullopt when absent.
  std::optional<std::string> priority;
};

// Initialises GMime once per process; thread-safe. Every library of the process that uses GMime
// calls this instead of g_mime_init, whose own initialisation counter is not atomic, so that two
// threads never initialise it at the same time.
void initGmime();

// Reads the header block (everything before the first empty line; the whole message when there
// is none). `bytes` says which bytes above 0x7f a From field may hold: kUtf8 (well-formed UTF-8)
// when the message came with BODY=8BITMIME or SMTPUTF8, kAscii (none) otherwise.
// Errors: "header.too_large" (no end of header within kMaxHeaderBytes), and "header.bad_from"
// when a From field is longer than kMaxFromBytes, names no mailbox, has more than
// kMaxFromAddresses addresses or ':', or is refused by parseAddressList: a control character
// other than tab (NUL, DEL and C0, C1 under kUtf8), a byte `bytes` does not allow, an unclosed
// quoted string, comment or domain literal, or text outside the address-list grammar, which
// includes whatever GMime would read short or skip ("a@b.example\x7f.evil.example",
// "a@b.example.", "a@b.example;evil@c.example", "Name, a@b.example"): a mail reader may show
// such a field as something else than the addresses found. Never a partial reading.
// Error messages are fixed texts that echo nothing from the message.
[[nodiscard]] Result<HeaderFacts> scanHeaders(std::string_view message,
                                              HeaderBytes bytes = HeaderBytes::kAscii);

// The message without any header field named `name` (case-insensitive), continuation lines
// included; the body and every other byte unchanged (no size bound: it reads the header block
// once). An empty `name`, or one that is not a valid field name, returns the message unchanged.
// One exception to byte-exactness: when the removed lines sat between a line ending in a bare CR
// and an empty line that is a bare LF, that CR becomes CRLF, so the two line ends do not merge
// into one and the header block still ends where it did. The result is never longer.
[[nodiscard]] std::string removeHeaderField(std::string_view message, std::string_view name);

} // namespace mailgate::relay::policy

// Address lists (From, To, Cc, Bcc), read for both paths that take messages in: the SMTP
// submission path (scanHeaders) and the control API (gateway/message). One reader, so that the
// two paths cannot disagree about what a field says. Pure and re-entrant; GMime is initialised
// with initGmime.
//
// Why not GMime alone: internet_address_list_parse is loose. It stops at a byte it does not
// expect and returns what came before ("rep@acme.example\x7f.evil.example" is rep@acme.example,
// and so are "rep@acme.example." and "rep@acme.example>"), skips text it cannot place
// ("a@b.example;c@d.example" is a@b.example), and GMime 3.2.13 leaks memory on some malformed
// input ("a@[x] (y"). A mail reader may show such a field as something else than what GMime
// returned. So the field is first checked, without GMime, against the grammar below; only a
// field that passes is handed to GMime (display names, RFC 2047 words, IDNA), and GMime must then
// return exactly the mailboxes the grammar found, in order, each one's addr-spec equal to the
// text as written (or to its IDNA form). Nothing GMime could read short or skip gets through.
//
// The grammar (RFC 5322 section 3.4, with the obsolete forms readers still meet):
//   list     = [element] *("," [element])          empty elements are allowed (obs-addr-list)
//   element  = mailbox / group
//   group    = phrase ":" [list] [";"]             groups may nest, as GMime reads them; one
//                                                  still open at the end of the field ends there
//   mailbox  = addr-spec / [phrase] "<" addr-spec ">"
//   phrase   = 1*(atom / quoted-string / ".")      atoms include RFC 2047 encoded words
//   addr-spec = word *("." word) ["@" domain]      no space or comment inside; without "@" it is
//                                                  a mailbox without domain, as GMime reads it
//   domain   = atom *("." atom) / domain-literal
// with spaces, tabs and (nested) comments between the tokens; after a mailbox or a group's ";"
// only ",", ";" or the end may follow. Refused besides: a source route ("<@a.example:b@c>").
#pragma once

#include <cstddef>
#include <expected>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::relay::policy {

// Which bytes above 0x7f a header field may hold.
enum class HeaderBytes {
  kAscii, // none: the message was not sent with 8BITMIME or SMTPUTF8
  kUtf8,  // well-formed UTF-8 (RFC 6532), C1 controls excluded
};

struct ParsedMailbox {
  std::string name;     // display name, decoded UTF-8; empty when there is none
  std::string addr;     // addr-spec as written (an A-label domain comes back decoded)
  std::string envelope; // addr-spec with an IDN domain in its ASCII form (GMime's idn_addr)
};

struct ParsedAddressList {
  std::vector<ParsedMailbox> mailboxes;
  std::size_t groups = 0;
};

struct AddressListRules {
  HeaderBytes bytes = HeaderBytes::kAscii;
  std::size_t max_colons = 64; // ':' anywhere in the field: bounds GMime's recursion into groups
  std::size_t max_mailboxes = std::numeric_limits<std::size_t>::max();
};

// Every mailbox of an address list (groups flattened, in order), or why the text is not one: a
// fixed phrase for an error text that echoes nothing, e.g. "holds a control character".
// Refused, in this order: NUL; a control character other than tab (C0, DEL, and C1 under kUtf8);
// under kAscii a byte above 0x7f, under kUtf8 bytes that are not UTF-8; more than
// rules.max_colons ':'; an unclosed quoted string, comment or domain literal; text outside the
// grammar above; more than rules.max_mailboxes mailboxes; a field GMime reads otherwise. An empty
// field, or one of empty groups only, is an empty list. The addresses themselves are not checked
// beyond the grammar (callers do, to name the address).
[[nodiscard]] std::expected<ParsedAddressList, std::string>
parseAddressList(std::string_view value, const AddressListRules& rules);

} // namespace mailgate::relay::policy

// Address lists (From, To, Cc, Bcc) read with GMime, for both paths that take messages in: the
// SMTP submission path (scanHeaders) and the control API (gateway/message). One reader, so that
// the two paths cannot disagree about what a field says. Bounded, groups flattened without
// recursion on our side. Pure and re-entrant; GMime is initialised with initGmime.
#pragma once

#include <cstddef>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::relay::policy {

// '@' and ':' outside quoted strings, comments and domain literals, counted without parsing:
// every such '@' must end up in a mailbox GMime returns (its loose parser skips text such as
// "a@b.example;c@d.example" that a reader may still show), and ':' bounds the groups GMime
// parses recursively. Every ':' counts, quoted or not (GMime's recovery may still see a group).
struct RawCounts {
  std::size_t ats = 0;
  std::size_t colons = 0;
  bool unclosed = false; // a quoted string, comment or domain literal runs to the end
};
[[nodiscard]] RawCounts countRaw(std::string_view value);

struct ParsedMailbox {
  std::string name;     // display name, decoded UTF-8; empty when there is none
  std::string addr;     // addr-spec as written
  std::string envelope; // addr-spec with an IDN domain in its ASCII form (GMime's idn_addr)
};

struct ParsedAddressList {
  std::vector<ParsedMailbox> mailboxes;
  std::size_t groups = 0;
};

struct AddressListRules {
  std::size_t max_colons = 64; // ':' in the field (groups); GMime nests groups recursively
};

// Every mailbox of an address list (groups flattened), or why the text is not one (a fixed
// phrase for an error text, e.g. "holds a control character"; it echoes nothing). Refused: a
// control character other than tab (NUL included), bytes that are not UTF-8, an unclosed quoted
// string, comment or domain literal (GMime 3.2 leaks memory on "a@[x] (y"), more than
// rules.max_colons ':', an '@' that GMime did not turn into a mailbox, and a mailbox whose
// addr-spec does not stand in the text as written, between delimiters (GMime reads loosely and
// may return part of what was written). The addresses themselves are not checked further.
[[nodiscard]] std::expected<ParsedAddressList, std::string>
parseAddressList(std::string_view value, const AddressListRules& rules);

} // namespace mailgate::relay::policy

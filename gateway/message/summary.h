// The facts about a message that an ingested copy's message.received event carries (docs/bcc.md):
// Message-ID, From, To, Cc, Subject and Date, read from the header block of an RFC 5322
// message. Pure and re-entrant; GMime (initialised with relay::policy::initGmime) decodes RFC 2047
// words and dates, and address fields are read with the shared reader
// (relay::policy::parseAddressList), never GMime's loose one.
//
// Never fails: whatever cannot be read is left empty. Bounded: at most
// relay::policy::kMaxHeaderBytes of header block are looked at, the first field of each name is
// used, a field value is read up to kMaxSummaryFieldBytes (longer: that field is treated as
// absent for addresses, cut for the subject and date), and at most kMaxSummaryAddresses addresses
// per field are kept. Lines end at CRLF, bare LF or bare CR, as on the SMTP path.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::message {

inline constexpr std::size_t kMaxSummaryFieldBytes = 64 * 1024;
inline constexpr std::size_t kMaxSummaryAddresses = 1000;

struct MessageSummary {
  std::string message_id;      // "<...>" as written; empty when there is none
  std::string from;            // addr-spec of the first From mailbox (IDN domain in ASCII form)
  std::vector<std::string> to; // addr-specs of every mailbox in To (groups flattened)
  std::vector<std::string> cc;
  std::string subject; // unfolded, RFC 2047 words decoded (UTF-8), leading blanks removed
  // RFC 3339 in UTC ("2026-12-03T18:30:00Z") when the Date field parses, else its unfolded text
  // with blanks trimmed; empty when there is none.
  std::string date;
};

[[nodiscard]] MessageSummary summarize(std::string_view raw);

} // namespace mailgate::message

// IMAP server responses (RFC 9051 section 7, RFC 3501 section 7): the value types the response
// parser produces and the session consumes. Plain data, no I/O.
#pragma once

#include "imap/protocol/sequence_set.h"

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace mailgate::imap::protocol {

// A parsed data item of a response: what FETCH, ID, STATUS and the like carry. Strings keep their
// bytes exactly (quoted strings unescaped, literals verbatim and binary-safe).
struct Value {
  enum class Kind { kNil, kAtom, kNumber, kString, kList };
  Kind kind = Kind::kNil;
  std::string text;         // kAtom (as sent), kString (decoded bytes), kNumber (digits)
  uint64_t number = 0;      // kNumber
  std::vector<Value> items; // kList
  bool literal8 = false;    // kString that came as ~{n} (may hold NUL)

  [[nodiscard]] bool isNil() const { return kind == Kind::kNil; }
  // kString or kAtom: the text; kNil: empty; else nullopt.
  [[nodiscard]] std::optional<std::string> asString() const;
};

enum class Status { kOk, kNo, kBad, kPreauth, kBye };

// "[NAME args]" of a status response. Well-known codes are parsed into the fields below; every
// code keeps its name (upper-cased) and its raw argument text.
struct ResponseCode {
  std::string name;               // "UIDVALIDITY", "APPENDUID", "THROTTLED", ...; upper-cased
  std::string raw;                // the text between the name and ']', as sent (may be empty)
  std::optional<uint32_t> number; // UIDVALIDITY, UIDNEXT, UNSEEN
  std::optional<uint64_t> modseq; // HIGHESTMODSEQ
  std::vector<std::string> capabilities; // CAPABILITY, upper-cased
  std::vector<std::string> flags;        // PERMANENTFLAGS
  // APPENDUID uidvalidity uid-set / COPYUID uidvalidity src-set dst-set
  std::optional<uint32_t> uidvalidity;
  SequenceSet uids;        // APPENDUID's assigned UIDs, COPYUID's source UIDs
  SequenceSet target_uids; // COPYUID's destination UIDs
};

// Tagged or untagged OK / NO / BAD / PREAUTH / BYE.
struct StatusResponse {
  Status status = Status::kOk;
  std::optional<ResponseCode> code;
  std::string text; // human-readable text after the code, as sent (without CRLF)
};

// RFC 3501 ENVELOPE. nstrings that were NIL are empty.
struct Address {
  std::string name, adl, mailbox, host;
  [[nodiscard]] std::string email() const; // "mailbox@host", or "" for a group marker
};
struct Envelope {
  std::string date, subject;
  std::vector<Address> from, sender, reply_to, to, cc, bcc;
  std::string in_reply_to, message_id;
};

// "BODY[section]<origin>" or "BINARY[section]": its data.
struct BodySection {
  // Upper-cased text between the brackets, e.g. "HEADER" or ""; the RFC 1730 items come with
  // their own name: "RFC822", "RFC822.HEADER", "RFC822.TEXT".
  std::string section;
  std::optional<uint32_t> origin;  // <n> partial fetch origin
  std::optional<std::string> data; // nullopt for NIL
};

// "* n FETCH (...)". Items the server did not send stay unset.
struct FetchData {
  uint32_t seq = 0;
  std::optional<uint32_t> uid;
  std::optional<std::vector<std::string>> flags; // as sent ("\\Seen", "$Label")
  std::optional<std::string> internal_date;      // as sent: "17-Jul-1996 02:44:25 -0700"
  std::optional<uint64_t> rfc822_size;
  std::optional<Envelope> envelope;
  std::optional<uint64_t> modseq;
  std::vector<BodySection> sections;
  // Every other item (BODYSTRUCTURE, X-GM-MSGID, ...): name upper-cased, value as parsed.
  std::vector<std::pair<std::string, Value>> other;
};

// "* LIST (attributes) delimiter name".
struct ListData {
  std::vector<std::string> attributes; // as sent: "\\Sent", "\\HasNoChildren", "\\Noselect"
  std::optional<char> delimiter;       // nullopt for NIL
  std::string name;                    // mailbox name as sent (modified UTF-7 unless UTF8=ACCEPT)
  [[nodiscard]] bool hasAttribute(std::string_view attribute) const; // case-insensitive
};

// "* SEARCH 1 2 3 (MODSEQ n)" and RFC 4731 "* ESEARCH (TAG "x") UID MIN n MAX n COUNT n ALL set".
struct SearchData {
  bool esearch = false;
  std::string tag;               // ESEARCH correlator; empty if absent
  bool uid = false;              // ESEARCH "UID"
  std::vector<uint32_t> numbers; // SEARCH: as sent; ESEARCH: ALL expanded (bounded by limits)
  std::optional<uint32_t> min, max, count;
  std::optional<uint64_t> modseq;
};

// RFC 7162 "* VANISHED (EARLIER) uid-set".
struct VanishedData {
  bool earlier = false;
  SequenceSet uids;
};

// "* STATUS mailbox (MESSAGES n UIDNEXT n ...)": names upper-cased.
struct StatusData {
  std::string mailbox;
  std::vector<std::pair<std::string, uint64_t>> items;
};

struct CapabilityData {
  std::vector<std::string> capabilities; // upper-cased
};
struct EnabledData {
  std::vector<std::string> capabilities; // upper-cased
};
struct FlagsData {
  std::vector<std::string> flags;
};
// "* n EXISTS", "* n RECENT", "* n EXPUNGE".
struct NumberData {
  enum class Kind { kExists, kRecent, kExpunge };
  Kind kind = Kind::kExists;
  uint32_t number = 0;
};
// Any other untagged response (ID, NAMESPACE, unknown extensions): kept, not interpreted.
struct OtherData {
  std::string name;          // upper-cased keyword
  std::vector<Value> values; // the rest of the line, parsed as values where possible
};

using UntaggedData =
    std::variant<StatusResponse, CapabilityData, EnabledData, FlagsData, NumberData, FetchData,
                 ListData, SearchData, VanishedData, StatusData, OtherData>;

// One whole response, literals included.
struct Response {
  enum class Kind { kTagged, kUntagged, kContinuation };
  Kind kind = Kind::kUntagged;
  std::string tag;          // kTagged
  StatusResponse status;    // kTagged (always a status); kUntagged when data holds one
  UntaggedData data;        // kUntagged
  std::string continuation; // kContinuation: the text after "+ " (base64 for SASL), may be empty
};

} // namespace mailgate::imap::protocol

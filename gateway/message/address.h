// Addresses: the addr-spec check both paths apply to every address, address-list parsing with
// GMime (bounded, groups flattened without recursion on our side), and the de-duplicated
// recipient list. Internal to gateway/message/.
#pragma once

#include <cstddef>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace mailgate::message::detail {

// Why `addr` is not an addr-spec we accept, or nullopt. Accepted: local "@" domain, at most
// kMaxAddrSpecBytes; the local part a dot-atom or a quoted string of at most 64 octets; the
// domain a dot-separated list of labels (letters, digits, '-' not at either end, at most 63
// octets each; at most 255 in all) or a domain literal "[...]". Non-ASCII is accepted in the
// local part and in labels (EAI and IDN) when it is valid UTF-8.
[[nodiscard]] std::optional<std::string> addrSpecProblem(std::string_view addr);

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

struct Mailbox {
  std::string name;     // display name, decoded UTF-8; empty when there is none
  std::string addr;     // addr-spec as written
  std::string envelope; // addr-spec with an IDN domain in its ASCII form (GMime's idn_addr)
};

// Every mailbox of an address list (groups flattened), or why the text is not one (a phrase for
// an error text). Refused: a control character other than tab (NUL included), bytes that are
// not UTF-8, an unclosed quoted string, comment or domain literal (GMime 3.2 leaks memory on
// "a@[x] (y"), more than kMaxGroupsPerField ':', an '@' that GMime did not turn into a mailbox,
// and a mailbox whose addr-spec does not stand in the text as written, between delimiters (GMime
// reads loosely and may return part of what was written). The addresses are not checked with
// addrSpecProblem; the caller does, to name the address.
struct ParsedList {
  std::vector<Mailbox> mailboxes;
  std::size_t groups = 0;
};
[[nodiscard]] std::expected<ParsedList, std::string> parseAddressList(std::string_view value);

// A mailbox made from a name and an addr-spec the caller has checked, `envelope` filled in; or
// nullopt when GMime would not write the address as given: an ASCII address whose IDNA form
// differs from it (GMime decodes an "xn--" label that is not valid punycode into other
// characters, and would write those).
[[nodiscard]] std::optional<Mailbox> makeMailbox(std::string_view name, std::string_view addr);

// Recipients in the order added, without ASCII case-insensitive duplicates.
class RecipientSet {
public:
  // Adds `address` unless it is already there. False when the set would grow past `max`.
  [[nodiscard]] bool add(const std::string& address, std::size_t max);
  [[nodiscard]] std::size_t size() const { return list_.size(); }
  [[nodiscard]] std::vector<std::string> take() { return std::move(list_); }

private:
  std::unordered_set<std::string> lowered_;
  std::vector<std::string> list_;
};

} // namespace mailgate::message::detail

// Addresses: the addr-spec check both paths apply to every address, address-list parsing (the
// shared reader of relay/policy/address_list.h), and the de-duplicated recipient list. Internal
// to gateway/message/.
#pragma once

#include "relay/policy/address_list.h"

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

// Address lists are read by relay/policy's parser, the one the SMTP path reads From with.
using Mailbox = relay::policy::ParsedMailbox;
using ParsedList = relay::policy::ParsedAddressList;

// relay::policy::parseAddressList as the control API reads: UTF-8 allowed (the API sets smtputf8
// and body_8bit from what the message holds), at most kMaxGroupsPerField ':'.
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

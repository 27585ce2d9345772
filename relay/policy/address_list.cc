#include "relay/policy/address_list.h"

#include "relay/policy/message_headers.h"

#include <algorithm>
#include <gmime/gmime.h>
#include <memory>
#include <optional>
#include <utility>

namespace mailgate::relay::policy {

namespace {

struct GObjectUnref {
  void operator()(gpointer object) const { g_object_unref(object); }
};
using AddressListPtr = std::unique_ptr<InternetAddressList, GObjectUnref>;

bool isAscii(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

} // namespace

RawCounts countRaw(std::string_view value) {
  RawCounts counts;
  bool quoted = false;
  bool literal = false;
  std::size_t comment_depth = 0;
  for (std::size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (c == ':') {
      ++counts.colons;
    }
    if (quoted || literal || comment_depth > 0) {
      if (c == '\\') {
        ++i;
      } else if (quoted && c == '"') {
        quoted = false;
      } else if (literal && c == ']') {
        literal = false;
      } else if (comment_depth > 0 && c == '(') {
        ++comment_depth;
      } else if (comment_depth > 0 && c == ')') {
        --comment_depth;
      }
      continue;
    }
    if (c == '"') {
      quoted = true;
    } else if (c == '[') {
      literal = true;
    } else if (c == '(') {
      comment_depth = 1;
    } else if (c == '@') {
      ++counts.ats;
    }
  }
  counts.unclosed = quoted || literal || comment_depth > 0;
  return counts;
}

namespace {

// Where `addr` occurs in `value` at or after `from` as a whole address (between delimiters an
// addr-spec may stand between), and the offset just past it; nullopt when it does not.
std::optional<std::size_t> findWhole(std::string_view value, std::string_view addr,
                                     std::size_t from) {
  constexpr std::string_view kBefore = " \t<,:;)";
  constexpr std::string_view kAfter = " \t>,;(";
  for (std::size_t at = value.find(addr, from); at != std::string_view::npos;
       at = value.find(addr, at + 1)) {
    const std::size_t end = at + addr.size();
    const bool starts = at == 0 || kBefore.find(value[at - 1]) != std::string_view::npos;
    const bool ends = end == value.size() || kAfter.find(value[end]) != std::string_view::npos;
    if (starts && ends) {
      return end;
    }
  }
  return std::nullopt;
}

} // namespace

std::expected<ParsedAddressList, std::string> parseAddressList(std::string_view value,
                                                               const AddressListRules& rules) {
  // GMime's loose parser stops at a byte it does not expect and returns what came before it:
  // "a@e\x7fxample.com" would be the address a@e. Such bytes are refused first, and every
  // address it returns must stand in the text as a whole, below.
  for (const char c : value) {
    if (c == '\0') {
      return std::unexpected("holds a NUL byte");
    }
    if ((c > 0 && c < 0x20 && c != '\t') || c == 0x7f) {
      return std::unexpected("holds a control character");
    }
  }
  if (!isAscii(value) &&
      !g_utf8_validate(value.data(), static_cast<gssize>(value.size()), nullptr)) {
    return std::unexpected("holds bytes that are not UTF-8 (encode names as RFC 2047 words)");
  }
  const RawCounts raw = countRaw(value);
  if (raw.unclosed) {
    return std::unexpected("holds an unclosed quote, comment or domain literal");
  }
  if (raw.colons > rules.max_colons) {
    return std::unexpected("holds more than " + std::to_string(rules.max_colons) + " ':' (groups)");
  }
  initGmime();
  const std::string text(value);
  // NULL options: GMime's defaults (loose parsing); what loose parsing skips is caught by the
  // '@' count below.
  const AddressListPtr list(internet_address_list_parse(nullptr, text.c_str()));
  ParsedAddressList parsed;
  if (!list) {
    if (raw.ats > 0) {
      return std::unexpected("is not an address list");
    }
    return parsed;
  }
  std::vector<std::pair<InternetAddressList*, int>> stack{{list.get(), 0}};
  std::size_t with_at = 0;
  while (!stack.empty()) {
    auto& [current, index] = stack.back();
    if (index >= internet_address_list_length(current)) {
      stack.pop_back();
      continue;
    }
    InternetAddress* address = internet_address_list_get_address(current, index++);
    if (INTERNET_ADDRESS_IS_GROUP(address)) {
      ++parsed.groups;
      InternetAddressList* members =
          internet_address_group_get_members(INTERNET_ADDRESS_GROUP(address));
      if (members != nullptr) {
        stack.emplace_back(members, 0);
      }
      continue;
    }
    if (!INTERNET_ADDRESS_IS_MAILBOX(address)) {
      continue;
    }
    auto* mailbox = INTERNET_ADDRESS_MAILBOX(address);
    const char* name = internet_address_get_name(address);
    const char* addr = internet_address_mailbox_get_addr(mailbox);
    const char* idn = internet_address_mailbox_get_idn_addr(mailbox);
    ParsedMailbox m;
    m.name = name != nullptr ? name : "";
    m.addr = addr != nullptr ? addr : "";
    m.envelope = idn != nullptr && *idn != '\0' ? idn : m.addr;
    with_at += m.addr.find('@') != std::string::npos ? 1 : 0;
    parsed.mailboxes.push_back(std::move(m));
  }
  if (with_at != raw.ats) {
    return std::unexpected("holds text that is not an address list");
  }
  std::size_t pos = 0;
  for (const auto& m : parsed.mailboxes) {
    // GMime gives an A-label domain ("xn--...") back decoded: either form may be the written one.
    auto end = findWhole(value, m.addr, pos);
    if (!end && m.envelope != m.addr) {
      end = findWhole(value, m.envelope, pos);
    }
    if (!end) {
      return std::unexpected("holds text that is not an address list");
    }
    pos = *end;
  }
  return parsed;
}

} // namespace mailgate::relay::policy

#include "gateway/message/address.h"

#include "gateway/message/fields.h"
#include "gateway/message/gmime_support.h"
#include "gateway/message/submission.h"
#include "relay/policy/message_headers.h"

#include <algorithm>
#include <utility>

namespace mailgate::message::detail {

namespace {

constexpr std::size_t kMaxLocalBytes = 64;
constexpr std::size_t kMaxDomainBytes = 255;
constexpr std::size_t kMaxLabelBytes = 63;

bool isHigh(char c) {
  return static_cast<unsigned char>(c) >= 0x80;
}

// The length of the quoted string at the start of `text` (quotes included), or 0 when it is not
// one: qtext, quoted pairs and non-ASCII between double quotes.
std::size_t quotedStringLength(std::string_view text) {
  if (text.empty() || text.front() != '"') {
    return 0;
  }
  for (std::size_t i = 1; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '"') {
      return i + 1;
    }
    if (c == '\\') {
      if (++i >= text.size() || text[i] < 0x20 || text[i] >= 0x7f) {
        return 0;
      }
      continue;
    }
    if (!isHigh(c) && (c < 0x20 || c >= 0x7f)) {
      return 0;
    }
  }
  return 0;
}

std::optional<std::string> localPartProblem(std::string_view local) {
  if (local.empty()) {
    return "the local part (before the @) is empty";
  }
  if (local.size() > kMaxLocalBytes) {
    return "the local part (before the @) is longer than 64 octets";
  }
  if (local.front() == '"') {
    if (quotedStringLength(local) != local.size()) {
      return std::string("the quoted local part is malformed");
    }
    return std::nullopt;
  }
  if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos) {
    return "the local part has a misplaced dot";
  }
  const bool ok = std::all_of(local.begin(), local.end(),
                              [](char c) { return c == '.' || isAtext(c) || isHigh(c); });
  if (!ok) {
    return "the local part holds a character that needs quoting";
  }
  return std::nullopt;
}

std::optional<std::string> domainProblem(std::string_view domain) {
  if (domain.empty()) {
    return "the domain (after the @) is empty";
  }
  if (domain.size() > kMaxDomainBytes) {
    return "the domain is longer than 255 octets";
  }
  if (domain.front() == '[') {
    const bool ok = domain.size() >= 3 && domain.back() == ']' &&
                    std::all_of(domain.begin() + 1, domain.end() - 1, [](char c) {
                      return c > 0x20 && c < 0x7f && c != '[' && c != ']' && c != '\\';
                    });
    if (!ok) {
      return "the domain literal is malformed";
    }
    return std::nullopt;
  }
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = domain.find('.', start);
    const std::string_view label =
        domain.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty()) {
      return "the domain has an empty label (a misplaced dot)";
    }
    if (label.size() > kMaxLabelBytes) {
      return "a label of the domain is longer than 63 octets";
    }
    if (label.front() == '-' || label.back() == '-') {
      return "a label of the domain starts or ends with '-'";
    }
    const bool ok = std::all_of(label.begin(), label.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '-' || isHigh(c);
    });
    if (!ok) {
      return "the domain holds a character that is not a letter, digit, '-' or '.'";
    }
    if (dot == std::string_view::npos) {
      return std::nullopt;
    }
    start = dot + 1;
  }
}

} // namespace

std::optional<std::string> addrSpecProblem(std::string_view addr) {
  if (addr.empty()) {
    return "the address is empty";
  }
  if (addr.size() > kMaxAddrSpecBytes) {
    return "the address is longer than 254 octets";
  }
  if (!isAscii(addr) && !g_utf8_validate(addr.data(), static_cast<gssize>(addr.size()), nullptr)) {
    return "the address is not valid UTF-8";
  }
  std::size_t at = addr.find('@');
  if (addr.front() == '"') {
    // The local part ends with its closing quote; an '@' inside the quotes is not the one.
    const std::size_t quoted = quotedStringLength(addr);
    if (quoted == 0 || (quoted < addr.size() && addr[quoted] != '@')) {
      return "the quoted local part is malformed";
    }
    at = quoted < addr.size() ? quoted : std::string_view::npos;
  }
  if (at == std::string_view::npos) {
    return "there is no @domain";
  }
  if (auto problem = localPartProblem(addr.substr(0, at))) {
    return problem;
  }
  return domainProblem(addr.substr(at + 1));
}

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

std::expected<ParsedList, std::string> parseAddressList(std::string_view value) {
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
  if (raw.colons > kMaxGroupsPerField) {
    return std::unexpected("holds more than 64 ':' (groups)");
  }
  relay::policy::initGmime();
  const std::string text(value);
  // NULL options: GMime's defaults (loose parsing), as relay/policy reads From; what loose
  // parsing skips is caught by the '@' count below.
  const GPtr<InternetAddressList> list(internet_address_list_parse(nullptr, text.c_str()));
  ParsedList parsed;
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
    Mailbox m;
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

std::optional<Mailbox> makeMailbox(std::string_view name, std::string_view addr) {
  relay::policy::initGmime();
  Mailbox m;
  m.name = std::string(name);
  m.addr = std::string(addr);
  const GPtr<InternetAddress> mailbox(
      internet_address_mailbox_new(m.name.empty() ? nullptr : m.name.c_str(), m.addr.c_str()));
  const char* idn = internet_address_mailbox_get_idn_addr(INTERNET_ADDRESS_MAILBOX(mailbox.get()));
  m.envelope = idn != nullptr && *idn != '\0' ? idn : m.addr;
  if (isAscii(m.addr) && !equalsIgnoreCase(m.envelope, m.addr)) {
    return std::nullopt;
  }
  return m;
}

bool RecipientSet::add(const std::string& address, std::size_t max) {
  std::string lowered(address);
  std::transform(lowered.begin(), lowered.end(), lowered.begin(), lowerAscii);
  if (lowered_.contains(lowered)) {
    return true;
  }
  if (list_.size() >= max) {
    return false;
  }
  lowered_.insert(std::move(lowered));
  list_.push_back(address);
  return true;
}

} // namespace mailgate::message::detail

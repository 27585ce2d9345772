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

std::expected<ParsedList, std::string> parseAddressList(std::string_view value) {
  return relay::policy::parseAddressList(
      value, {.bytes = relay::policy::HeaderBytes::kUtf8, .max_colons = kMaxGroupsPerField});
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

#include "relay/policy/sender_directory.h"

#include "config/values.h"

#include <algorithm>
#include <cstdint>
#include <utility>

namespace mailgate::relay::policy {

namespace {

// Echoed client bytes are capped so that a refusal always fits one SMTP reply line (512 octets).
constexpr std::size_t kMaxEchoedAddress = 200;
constexpr std::size_t kMaxEchoedTenant = 64;
constexpr std::size_t kMaxListedTenants = 5;

char lowerAsciiChar(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// Printable ASCII only: the text goes back to the client in a reply line, where CR, LF or other
// control bytes could forge a second reply and 8-bit bytes are not allowed without SMTPUTF8.
std::string sanitise(std::string_view text, std::size_t max) {
  std::string out;
  const std::size_t n = std::min(text.size(), max);
  out.reserve(n + 3);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    out.push_back(c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?');
  }
  if (text.size() > max) {
    out += "...";
  }
  return out;
}

Refusal refuse(std::string text) {
  Refusal r;
  r.text = std::move(text);
  return r;
}

bool allTenants(const std::vector<std::string>& tenants) {
  return std::find(tenants.begin(), tenants.end(), "*") != tenants.end();
}

// "tenant acme", "tenants acme, beta", "tenants a, b, c, d, e and 3 more".
std::string describeScope(const std::vector<std::string>& tenants) {
  std::string out = tenants.size() == 1 ? "tenant " : "tenants ";
  const std::size_t listed = std::min(tenants.size(), kMaxListedTenants);
  for (std::size_t i = 0; i < listed; ++i) {
    if (i > 0) {
      out += ", ";
    }
    out += sanitise(tenants[i], kMaxEchoedTenant);
  }
  if (tenants.size() > listed) {
    out += " and ";
    out += std::to_string(tenants.size() - listed);
    out += " more";
  }
  return out;
}

} // namespace

std::size_t SenderDirectory::CaseInsensitiveHash::operator()(std::string_view text) const {
  // FNV-1a over the lower-cased bytes: cheap, and consistent with CaseInsensitiveEqual.
  std::uint64_t h = 14695981039346656037ULL;
  for (const char c : text) {
    h ^= static_cast<unsigned char>(lowerAsciiChar(c));
    h *= 1099511628211ULL;
  }
  return static_cast<std::size_t>(h);
}

bool SenderDirectory::CaseInsensitiveEqual::operator()(std::string_view a,
                                                       std::string_view b) const {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return lowerAsciiChar(x) == lowerAsciiChar(y);
         });
}

SenderDirectory::SenderDirectory(const config::Config& config) {
  for (const auto& tenant : config.tenants) {
    for (const auto& mailbox : tenant.mailboxes) {
      // emplace keeps the first claim if the validator ever let a duplicate through, so one
      // address never silently moves to another mailbox.
      by_address_.emplace(config::lowerAscii(mailbox.address),
                          MailboxRef{&tenant, &mailbox, false});
      for (const auto& alias : mailbox.aliases) {
        by_address_.emplace(config::lowerAscii(alias), MailboxRef{&tenant, &mailbox, true});
      }
    }
  }
}

const MailboxRef* SenderDirectory::find(std::string_view address) const {
  const auto it = by_address_.find(address);
  return it == by_address_.end() ? nullptr : &it->second;
}

std::expected<MailboxRef, Refusal>
SenderDirectory::resolve(std::string_view mail_from,
                         const std::vector<std::string>& tenants) const {
  std::string_view address = mail_from;
  if (address.size() >= 2 && address.front() == '<' && address.back() == '>') {
    address = address.substr(1, address.size() - 2);
  }
  if (address.empty()) {
    return std::unexpected(
        refuse("the null sender <> cannot submit mail; use the mailbox's address"));
  }
  const bool all = allTenants(tenants);
  const MailboxRef* ref = find(address);
  if (ref != nullptr &&
      (all || std::find(tenants.begin(), tenants.end(), ref->tenant->id) != tenants.end())) {
    return *ref;
  }
  const std::string shown = "sender <" + sanitise(address, kMaxEchoedAddress) + ">";
  if (all) {
    return std::unexpected(refuse(shown + " is not a configured mailbox or alias"));
  }
  if (tenants.empty()) {
    return std::unexpected(
        refuse(shown + " is not a mailbox or alias of any tenant this client may send for"));
  }
  // Unknown and out-of-scope read the same: see the header.
  return std::unexpected(refuse(shown + " is not a mailbox or alias of " + describeScope(tenants)));
}

std::expected<void, Refusal>
SenderDirectory::checkFrom(const MailboxRef& resolved,
                           const std::vector<std::string>& from_addresses) const {
  if (resolved.mailbox == nullptr || resolved.tenant == nullptr) {
    return std::unexpected(refuse("the envelope sender was not resolved to a mailbox"));
  }
  const std::string primary = sanitise(resolved.mailbox->address, kMaxEchoedAddress);
  if (from_addresses.empty()) {
    return std::unexpected(refuse("the From header is missing; it must name <" + primary + ">"));
  }
  for (const auto& address : from_addresses) {
    const MailboxRef* ref = find(address);
    if (ref == nullptr || ref->mailbox != resolved.mailbox) {
      return std::unexpected(refuse("From <" + sanitise(address, kMaxEchoedAddress) +
                                    "> is not mailbox <" + primary +
                                    "> or one of its aliases (tenant " +
                                    sanitise(resolved.tenant->id, kMaxEchoedTenant) + ")"));
    }
  }
  return {};
}

} // namespace mailgate::relay::policy

#include "relay/policy/bcc_plan.h"

#include "config/values.h"

#include <algorithm>

namespace mailgate::relay::policy {

namespace {

// As the sender directory's refusals: one reply line of printable ASCII.
constexpr std::size_t kMaxEchoedAddress = 200;
constexpr std::size_t kMaxEchoedTenant = 64;

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

const config::Tenant* bccTenant(const config::Config& config, std::string_view lowered) {
  for (const auto& t : config.tenants) {
    if (!t.bcc_address.empty() && config::lowerAscii(t.bcc_address) == lowered) {
      return &t;
    }
  }
  return nullptr;
}

} // namespace

BccPlan planBcc(const config::Config& config, const SenderDirectory& directory,
                const std::vector<std::string>& recipients, std::string_view sender) {
  BccPlan plan;
  const bool any_bcc = std::any_of(config.tenants.begin(), config.tenants.end(),
                                   [](const config::Tenant& t) { return !t.bcc_address.empty(); });
  if (!any_bcc) {
    plan.relay = recipients;
    return plan;
  }
  const MailboxRef* from = directory.find(sender);
  std::vector<const config::Tenant*> seen;
  for (const auto& rcpt : recipients) {
    const config::Tenant* tenant = bccTenant(config, config::lowerAscii(rcpt));
    if (tenant == nullptr) {
      plan.relay.push_back(rcpt);
      continue;
    }
    if (std::find(seen.begin(), seen.end(), tenant) != seen.end()) {
      continue; // the same bcc_address twice: one copy
    }
    seen.push_back(tenant);
    if (from != nullptr && from->tenant == tenant) {
      plan.copies.push_back(BccCopy{tenant->id, from->mailbox->address, rcpt});
    } else {
      plan.skipped.push_back(BccSkip{tenant->id, rcpt});
    }
  }
  return plan;
}

std::string bccRefusalText(std::string_view sender, std::string_view tenant) {
  return "BCC ingestion: sender <" + sanitise(sender, kMaxEchoedAddress) +
         "> is not a mailbox of tenant " + sanitise(tenant, kMaxEchoedTenant);
}

} // namespace mailgate::relay::policy

// BCC ingestion (docs/bcc.md): which recipients of a submitted message are a tenant's
// bcc_address, and what becomes of each. Pure, shared by both submission paths (SMTP and
// POST /v1/messages), so they cannot decide differently.
//
// A recipient equal (ASCII case-insensitive) to some tenant's bcc_address is never relayed. When
// the sender (an address of the message: its From, which on both paths belongs to the same
// mailbox as the envelope sender) is a mailbox or alias of that tenant, the message is ingested
// as synced mail of that mailbox (a BccCopy); otherwise the address is skipped (a BccSkip).
#pragma once

#include "config/config.h"
#include "relay/policy/sender_directory.h"

#include <string>
#include <string_view>
#include <vector>

namespace mailgate::relay::policy {

struct BccCopy {
  std::string tenant;  // the tenant whose bcc_address was a recipient
  std::string mailbox; // the sender's mailbox (primary address), of that tenant
  std::string address; // the bcc_address as the client wrote it
};

struct BccSkip {
  std::string tenant;  // the tenant whose bcc_address was a recipient
  std::string address; // the bcc_address as the client wrote it
};

struct BccPlan {
  std::vector<std::string> relay; // the other recipients, in order, duplicates kept
  std::vector<BccCopy> copies;    // at most one per tenant
  std::vector<BccSkip> skipped;   // at most one per tenant

  // Some recipient was a bcc_address: the message takes the BCC path.
  [[nodiscard]] bool any() const { return !copies.empty() || !skipped.empty(); }
  // Nothing would be relayed or ingested: the whole message is refused (550 5.7.1 / 422).
  [[nodiscard]] bool refused() const { return relay.empty() && copies.empty(); }
};

// Splits `recipients` for a message whose sender is `sender` (an addr-spec, no angle brackets).
// `directory` must have been built from `config`.
[[nodiscard]] BccPlan planBcc(const config::Config& config, const SenderDirectory& directory,
                              const std::vector<std::string>& recipients, std::string_view sender);

// "BCC ingestion: sender <x@acme.example> is not a mailbox of tenant acme": the refusal text for
// a skipped address, one line of printable ASCII (the address shortened and cleaned as the
// sender directory's texts are), fit for an SMTP reply and an API error.
[[nodiscard]] std::string bccRefusalText(std::string_view sender, std::string_view tenant);

} // namespace mailgate::relay::policy

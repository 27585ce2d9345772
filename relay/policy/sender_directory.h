// Who may send as whom: resolves the envelope sender of a submitted message to one configured
// mailbox (its primary address or one of its aliases), within the tenants the submitter's token
// is scoped to. Built once from a Config (and rebuilt on reload); lookups are O(1) and
// allocation-free except for the error text. Thread-safe for concurrent reads.
//
// Refusals carry the SMTP reply to send: code 550, enhanced "5.7.1", and a text that names the
// tenant (when one is known) and the reason, e.g.
//   "sender <x@acme.example> is not a mailbox or alias of tenant acme"
// A client scoped to some tenants gets the same text for an unknown address and for a mailbox of
// a tenant outside its scope: it names the client's own tenants, never the tenant the address
// belongs to, so a refusal cannot be used to learn which other tenants exist. Texts are one line
// of printable ASCII (echoed addresses have other bytes replaced by '?' and are shortened), fit
// for an SMTP reply.
#pragma once

#include "base/error.h"
#include "config/config.h"

#include <cstddef>
#include <expected>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mailgate::relay::policy {

struct MailboxRef {
  const config::Tenant* tenant = nullptr;
  const config::Mailbox* mailbox = nullptr;
  bool via_alias = false; // the address was an alias, not the primary address
};

// A refusal: the reply parts for ServerSession (code, enhanced, text); the text is also what to
// log.
struct Refusal {
  int code = 550;
  std::string enhanced = "5.7.1";
  std::string text;
};

class SenderDirectory {
public:
  // Indexes every mailbox address and alias of every tenant (lower-cased ASCII; the config
  // validator guarantees they are unique). `config` must outlive the directory.
  explicit SenderDirectory(const config::Config& config);

  // No tenant has a mailbox: the gateway runs as a plain relay (every message to relay
  // "default"), as a configuration without tenants did before routing existed.
  [[nodiscard]] bool empty() const { return by_address_.empty(); }

  // The mailbox an address ("local@domain", no angle brackets) belongs to, primary or alias, or
  // nullptr. The whole address compares ASCII case-insensitively, local part included (as
  // Microsoft 365 does). The pointer stays valid as long as the directory.
  [[nodiscard]] const MailboxRef* find(std::string_view address) const;

  // The mailbox the envelope sender `mail_from` may send as, for a submitter scoped to
  // `tenants` ({"*"}: every tenant). `mail_from` is the reverse-path without brackets, empty for
  // the null sender (ServerSession's form); "<...>" is accepted too. Refused: the null sender <>,
  // an unknown address, a mailbox of a tenant outside the scope.
  [[nodiscard]] std::expected<MailboxRef, Refusal>
  resolve(std::string_view mail_from, const std::vector<std::string>& tenants) const;

  // The end-of-DATA check: every address in the From header must belong to the same mailbox as
  // the envelope sender (`resolved`, a result of resolve() on this directory). Refused when From
  // is missing or names anything else. `from_addresses` is HeaderFacts::from; a message whose
  // HeaderFacts::from_repeated is set should be refused by the caller before this check.
  [[nodiscard]] std::expected<void, Refusal>
  checkFrom(const MailboxRef& resolved, const std::vector<std::string>& from_addresses) const;

private:
  // ASCII case-insensitive hashing and equality with heterogeneous lookup, so that find() needs
  // neither a lower-cased copy nor an allocation.
  struct CaseInsensitiveHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const;
  };
  struct CaseInsensitiveEqual {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const;
  };

  std::unordered_map<std::string, MailboxRef, CaseInsensitiveHash, CaseInsensitiveEqual>
      by_address_;
};

} // namespace mailgate::relay::policy

// What a server's EHLO reply advertises (RFC 5321 section 4.1.1.1 and the extensions' RFCs).
#pragma once

#include "relay/smtp/protocol/reply.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::relay::smtp {

struct EhloCapabilities {
  bool pipelining = false;                  // RFC 2920
  bool starttls = false;                    // RFC 3207
  bool eight_bit_mime = false;              // RFC 6152
  bool smtputf8 = false;                    // RFC 6531
  bool enhanced_status_codes = false;       // RFC 2034
  bool chunking = false;                    // RFC 3030
  bool dsn = false;                         // RFC 3461
  bool size = false;                        // RFC 1870: SIZE was advertised
  std::uint64_t max_size = 0;               // SIZE's value; 0 when absent or "no fixed limit"
  bool auth = false;                        // RFC 4954: AUTH (or the old "AUTH=") was advertised
  std::vector<std::string> auth_mechanisms; // upper-cased, in the server's order

  [[nodiscard]] bool hasAuthMechanism(std::string_view mechanism) const;
};

// Reads the keyword lines of a 250 EHLO reply; the first line (the server's name) is skipped.
// Keywords are case-insensitive; unknown ones and malformed values are ignored (a capability we
// cannot read is a capability we do not use).
[[nodiscard]] EhloCapabilities parseEhloCapabilities(const Reply& reply);

} // namespace mailgate::relay::smtp

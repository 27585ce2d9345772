// An IPv4 or IPv6 network such as 10.0.0.0/8 or fd00::/8 (listeners.smtp.trusted_networks).
#pragma once

#include "base/error.h"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace mailgate::config {

class Cidr {
public:
  // Accepts "ADDR/BITS" or a bare address (a single host: /32 or /128). Fails with code
  // "config.cidr" when the text is not an address, the prefix is out of range, or host bits
  // are set below the prefix (10.0.0.1/8 is refused with a hint naming 10.0.0.0/8).
  [[nodiscard]] static Result<Cidr> parse(std::string_view text);

  // True when `ip` (textual IPv4 or IPv6; an IPv6 zone suffix "%eth0" is ignored) lies inside
  // this network. An IPv4-mapped IPv6 address (::ffff:127.0.0.1, what a dual-stack socket
  // reports) matches IPv4 networks. Unparsable input never matches.
  [[nodiscard]] bool contains(std::string_view ip) const;

  [[nodiscard]] bool isV6() const { return v6_; }
  [[nodiscard]] int prefixLength() const { return prefix_; }
  // Canonical form, e.g. "10.0.0.0/8", "fd00::/8".
  [[nodiscard]] std::string str() const;

  friend bool operator==(const Cidr&, const Cidr&) = default;

private:
  std::array<std::uint8_t, 16> bytes_{}; // IPv4 uses the first 4 bytes
  int prefix_ = 0;
  bool v6_ = false;
};

// True when `text` is a literal IPv4 or IPv6 address (no brackets, no port).
[[nodiscard]] bool isIpLiteral(std::string_view text);

} // namespace mailgate::config

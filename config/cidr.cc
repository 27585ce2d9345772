#include "config/cidr.h"

#include <algorithm>
#include <arpa/inet.h>
#include <charconv>
#include <fmt/format.h>
#include <optional>

namespace mailgate::config {
namespace {

struct Address {
  std::array<std::uint8_t, 16> bytes{};
  bool v6 = false;
};

// inet_pton wants a NUL-terminated string; addresses are short, so copy.
std::optional<Address> parseAddress(std::string_view text) {
  if (text.empty() || text.size() > 64) {
    return std::nullopt;
  }
  const std::string s(text);
  Address a;
  if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
    return a;
  }
  if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
    a.v6 = true;
    return a;
  }
  return std::nullopt;
}

bool prefixMatches(const std::array<std::uint8_t, 16>& a, const std::array<std::uint8_t, 16>& b,
                   int prefix) {
  int i = 0;
  for (; prefix >= 8; prefix -= 8, ++i) {
    if (a.at(i) != b.at(i)) {
      return false;
    }
  }
  if (prefix == 0) {
    return true;
  }
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - prefix));
  return (a.at(i) & mask) == (b.at(i) & mask);
}

std::string formatAddress(const std::array<std::uint8_t, 16>& bytes, bool v6) {
  std::array<char, INET6_ADDRSTRLEN> buf{};
  inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buf.data(), buf.size());
  return {buf.data()};
}

} // namespace

Result<Cidr> Cidr::parse(std::string_view text) {
  const auto slash = text.find('/');
  const std::string_view addrText = text.substr(0, slash);
  const auto addr = parseAddress(addrText);
  if (!addr) {
    return fail("config.cidr", fmt::format("'{}' is not an IPv4 or IPv6 network", text),
                "write ADDRESS/BITS, e.g. 10.0.0.0/8 or fd00::/8");
  }
  const int maxBits = addr->v6 ? 128 : 32;
  int bits = maxBits;
  if (slash != std::string_view::npos) {
    const std::string_view bitsText = text.substr(slash + 1);
    const char* end = bitsText.data() + bitsText.size();
    auto [ptr, ec] = std::from_chars(bitsText.data(), end, bits);
    if (bitsText.empty() || ec != std::errc() || ptr != end || bits < 0 || bits > maxBits) {
      return fail("config.cidr", fmt::format("prefix length in '{}' must be 0..{}", text, maxBits));
    }
  }
  Cidr cidr;
  cidr.bytes_ = addr->bytes;
  cidr.v6_ = addr->v6;
  cidr.prefix_ = bits;
  // Host bits below the prefix usually mean a typo in the prefix or the address; refuse.
  Cidr masked = cidr;
  for (int i = 0; i < 16; ++i) {
    const int keep = std::clamp(bits - i * 8, 0, 8);
    const auto mask = static_cast<std::uint8_t>(keep == 0 ? 0 : 0xff << (8 - keep));
    masked.bytes_.at(i) &= mask;
  }
  if (masked.bytes_ != cidr.bytes_) {
    return fail("config.cidr", fmt::format("'{}' has host bits set", text),
                fmt::format("did you mean {}?", masked.str()));
  }
  return cidr;
}

bool Cidr::contains(std::string_view ip) const {
  if (const auto pct = ip.find('%'); pct != std::string_view::npos) {
    ip = ip.substr(0, pct);
  }
  auto addr = parseAddress(ip);
  if (!addr) {
    return false;
  }
  if (addr->v6 && !v6_) {
    // ::ffff:a.b.c.d is the IPv4 address a.b.c.d as seen through an IPv6 socket.
    static constexpr std::array<std::uint8_t, 12> kMapped = {0, 0, 0, 0, 0,    0,
                                                             0, 0, 0, 0, 0xff, 0xff};
    if (!std::equal(kMapped.begin(), kMapped.end(), addr->bytes.begin())) {
      return false;
    }
    std::array<std::uint8_t, 16> v4{};
    std::copy(addr->bytes.begin() + 12, addr->bytes.end(), v4.begin());
    addr->bytes = v4;
    addr->v6 = false;
  }
  if (addr->v6 != v6_) {
    return false;
  }
  return prefixMatches(addr->bytes, bytes_, prefix_);
}

std::string Cidr::str() const {
  return fmt::format("{}/{}", formatAddress(bytes_, v6_), prefix_);
}

bool isIpLiteral(std::string_view text) {
  return parseAddress(text).has_value();
}

} // namespace mailgate::config

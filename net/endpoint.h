// "host:port" addresses as they appear in configuration.
#pragma once

#include "base/error.h"

#include <cstdint>
#include <string>
#include <string_view>

namespace mailgate::net {

// A host (DNS name, IPv4 literal, or IPv6 literal WITHOUT brackets) and a port.
struct Endpoint {
  std::string host{};
  uint16_t port = 0;

  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

// Parses "127.0.0.1:2525", "[::1]:2525", "[fe80::1%eth0]:25" or "mail.example.com:25". The port
// is required (0 is allowed: a listener on port 0 gets a free port). IPv6 literals need brackets.
// Errors have code "net.endpoint" and say what to write instead.
Result<Endpoint> parseEndpoint(std::string_view text);

// The inverse of parseEndpoint: brackets around IPv6 hosts.
std::string formatEndpoint(const Endpoint& endpoint);

} // namespace mailgate::net

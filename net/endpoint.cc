#include "net/endpoint.h"

#include <algorithm>
#include <cctype>
#include <fmt/format.h>

namespace mailgate::net {
namespace {

constexpr const char* kCode = "net.endpoint";

bool isNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '-' || c == '_';
}

bool isIpv6Char(char c) {
  return std::isxdigit(static_cast<unsigned char>(c)) != 0 || c == ':' || c == '.';
}

Result<uint16_t> parsePort(std::string_view text, std::string_view whole) {
  if (text.empty()) {
    return fail(kCode, fmt::format("'{}' has no port", whole),
                "write host:port, e.g. 127.0.0.1:2525 or [::1]:2525");
  }
  if (text.size() > 5 || !std::all_of(text.begin(), text.end(), [](char c) {
        return std::isdigit(static_cast<unsigned char>(c)) != 0;
      })) {
    return fail(kCode, fmt::format("'{}': port '{}' is not a number from 0 to 65535", whole, text));
  }
  unsigned value = 0;
  for (char c : text) {
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535) {
    return fail(kCode, fmt::format("'{}': port {} is above 65535", whole, value));
  }
  return static_cast<uint16_t>(value);
}

} // namespace

Result<Endpoint> parseEndpoint(std::string_view text) {
  if (text.empty()) {
    return fail(kCode, "empty address", "write host:port, e.g. 127.0.0.1:2525");
  }
  Endpoint out;
  std::string_view port_text;
  if (text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return fail(kCode, fmt::format("'{}': '[' without ']'", text),
                  "write IPv6 addresses as [::1]:2525");
    }
    const std::string_view host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') {
      return fail(kCode, fmt::format("'{}' has no port after ']'", text),
                  "write IPv6 addresses as [::1]:2525");
    }
    // A zone id ("%eth0") may follow the address.
    const std::string_view address = host.substr(0, host.find('%'));
    if (address.find(':') == std::string_view::npos ||
        !std::all_of(address.begin(), address.end(), isIpv6Char)) {
      return fail(kCode, fmt::format("'{}': '{}' is not an IPv6 address", text, host),
                  "brackets are only for IPv6 literals; write names and IPv4 as host:port");
    }
    if (host.size() != address.size() && host.size() == address.size() + 1) {
      return fail(kCode, fmt::format("'{}': empty IPv6 zone after '%'", text));
    }
    out.host = std::string(host);
    port_text = rest.substr(1);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return fail(kCode, fmt::format("'{}' has no port", text),
                  "write host:port, e.g. 127.0.0.1:2525 or [::1]:2525");
    }
    const std::string_view host = text.substr(0, colon);
    if (host.find(':') != std::string_view::npos) {
      return fail(kCode, fmt::format("'{}': IPv6 address without brackets", text),
                  fmt::format("write it as [{}]:{}", host, text.substr(colon + 1)));
    }
    if (host.empty()) {
      return fail(kCode, fmt::format("'{}' has no host", text),
                  "write 0.0.0.0:PORT (or [::]:PORT) to listen on every address");
    }
    if (host.size() > 253 || !std::all_of(host.begin(), host.end(), isNameChar)) {
      return fail(kCode,
                  fmt::format("'{}': '{}' is not a valid host name or IPv4 address", text, host));
    }
    out.host = std::string(host);
    port_text = text.substr(colon + 1);
  }
  auto port = parsePort(port_text, text);
  if (!port) {
    return std::unexpected(port.error());
  }
  out.port = *port;
  return out;
}

std::string formatEndpoint(const Endpoint& endpoint) {
  if (endpoint.host.find(':') != std::string::npos) {
    return fmt::format("[{}]:{}", endpoint.host, endpoint.port);
  }
  return fmt::format("{}:{}", endpoint.host, endpoint.port);
}

} // namespace mailgate::net

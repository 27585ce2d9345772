// Internal to net/: libuv error values and socket address helpers.
#pragma once

#include "base/error.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <uv.h>

namespace mailgate::net {

// An Error for libuv status `status` (negative errno): message "<what>: <libuv text>", with a hint
// for the statuses an operator can act on (refused, unreachable, address in use, ...).
Error uvError(std::string code, int status, const std::string& what);

// "ip:port", with brackets around IPv6 addresses ("[::1]:25"). Empty for an unknown family.
std::string formatSockaddr(const sockaddr* addr);

// Parses an IP literal (IPv4, or IPv6 without brackets, optionally with a %scope) into a socket
// address with `port`. nullopt if `host` is not an IP literal.
std::optional<sockaddr_storage> parseIp(std::string_view host, uint16_t port);

// True for "0.0.0.0" and "::", which mean "any address".
bool isUnspecifiedAddress(std::string_view host);

} // namespace mailgate::net

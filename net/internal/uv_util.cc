#include "net/internal/uv_util.h"

#include <cstring>
#include <fmt/format.h>

namespace mailgate::net {
namespace {

std::string hintFor(int status) {
  switch (status) {
  case UV_ECONNREFUSED:
    return "nothing listens on that address and port, or a firewall rejects the connection";
  case UV_ETIMEDOUT:
    return "the peer did not answer; check the host, the port and any firewall on the way";
  case UV_ENETUNREACH:
  case UV_EHOSTUNREACH:
    return "no route to that address from this machine; check the network and the address "
           "family (IPv4/IPv6)";
  case UV_EADDRINUSE:
    return "another socket already uses that address and port; pick another port or stop the "
           "other process";
  case UV_EADDRNOTAVAIL:
    return "that address is not assigned to any interface of this machine (check "
           "egress.bind_address or the listener address)";
  case UV_EACCES:
  case UV_EPERM:
    return "not permitted: ports below 1024 need privileges, or a security policy blocks it";
  case UV_ECONNRESET:
  case UV_EPIPE:
    return "the peer closed the connection abruptly";
  case UV_EAI_NONAME:
  case UV_EAI_NODATA:
    return "the name does not exist in DNS; check the host name";
  case UV_EAI_AGAIN:
    return "DNS did not answer in time; check the resolver configuration and retry";
  default:
    return {};
  }
}

} // namespace

Error uvError(std::string code, int status, const std::string& what) {
  return Error(std::move(code),
               fmt::format("{}: {} ({})", what, uv_strerror(status), uv_err_name(status)),
               hintFor(status));
}

std::string formatSockaddr(const sockaddr* addr) {
  char ip[INET6_ADDRSTRLEN + 1] = {};
  if (addr->sa_family == AF_INET) {
    const auto* in4 = reinterpret_cast<const sockaddr_in*>(addr);
    uv_ip4_name(in4, ip, sizeof ip);
    return fmt::format("{}:{}", ip, ntohs(in4->sin_port));
  }
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    uv_ip6_name(in6, ip, sizeof ip);
    return fmt::format("[{}]:{}", ip, ntohs(in6->sin6_port));
  }
  return {};
}

std::optional<sockaddr_storage> parseIp(std::string_view host, uint16_t port) {
  if (host.empty() || host.size() > 100) {
    return std::nullopt;
  }
  std::string text(host);
  sockaddr_storage out{};
  if (host.find(':') == std::string_view::npos) {
    // uv_ip4_addr accepts only dotted quads, so a name never gets here by accident.
    if (uv_ip4_addr(text.c_str(), port, reinterpret_cast<sockaddr_in*>(&out)) == 0) {
      return out;
    }
    return std::nullopt;
  }
  if (uv_ip6_addr(text.c_str(), port, reinterpret_cast<sockaddr_in6*>(&out)) == 0) {
    return out;
  }
  return std::nullopt;
}

bool isUnspecifiedAddress(std::string_view host) {
  return host == "0.0.0.0" || host == "::" || host == "[::]";
}

} // namespace mailgate::net

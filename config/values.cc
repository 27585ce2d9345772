#include "config/values.h"

#include "config/cidr.h"

#include <array>
#include <charconv>
#include <fmt/format.h>
#include <ranges>
#include <utility>

namespace mailgate::config {
namespace {

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

struct Unit {
  std::string_view name;
  std::int64_t millis;
};

// Longest names first so that "ms" is not read as "m" followed by garbage.
constexpr std::array<Unit, 5> kUnits = {{
    {"ms", 1},
    {"s", 1000},
    {"m", std::int64_t{60} * 1000},
    {"h", std::int64_t{60} * 60 * 1000},
    {"d", std::int64_t{24} * 60 * 60 * 1000},
}};

// Far beyond any sensible timeout, and far from int64 overflow.
constexpr std::int64_t kMaxMillis = std::int64_t{3650} * 24 * 60 * 60 * 1000;

} // namespace

Result<Duration> parseDuration(std::string_view text) {
  const std::string hint = "write a number and a unit (ms, s, m, h, d), e.g. 30s, 5m, 1h30m, 5d";
  if (text.empty()) {
    return fail("config.duration", "empty duration", hint);
  }
  std::int64_t total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t start = i;
    while (i < text.size() && isDigit(text[i])) {
      ++i;
    }
    if (i == start) {
      return fail("config.duration", fmt::format("'{}' is not a duration", text), hint);
    }
    if (i - start > 12) {
      return fail("config.duration", fmt::format("'{}' is too long", text), hint);
    }
    std::int64_t number = 0;
    std::from_chars(text.data() + start, text.data() + i, number);
    const Unit* unit = nullptr;
    for (const Unit& u : kUnits) {
      if (text.substr(i, u.name.size()) == u.name) {
        unit = &u;
        break;
      }
    }
    if (unit == nullptr) {
      return fail("config.duration", fmt::format("'{}' has no unit", text), hint);
    }
    i += unit->name.size();
    if (number > kMaxMillis / unit->millis) {
      return fail("config.duration", fmt::format("'{}' is too long", text), hint);
    }
    total += number * unit->millis;
    if (total > kMaxMillis) {
      return fail("config.duration", fmt::format("'{}' is too long", text), hint);
    }
  }
  return Duration(total);
}

std::string formatDuration(Duration d) {
  std::int64_t left = d.count();
  if (left == 0) {
    return "0s";
  }
  std::string out;
  for (const Unit& unit : std::views::reverse(kUnits)) {
    if (left >= unit.millis) {
      out += fmt::format("{}{}", left / unit.millis, unit.name);
      left %= unit.millis;
    }
  }
  return out;
}

std::string Endpoint::str() const {
  if (host.find(':') != std::string::npos) {
    return fmt::format("[{}]:{}", host, port);
  }
  return fmt::format("{}:{}", host, port);
}

Result<Endpoint> parseEndpoint(std::string_view text) {
  const std::string hint = "write IP:PORT, e.g. 127.0.0.1:2525 or [::1]:2525";
  std::string_view host;
  std::string_view portText;
  if (text.starts_with('[')) {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return fail("config.endpoint", fmt::format("'{}' is not IP:PORT", text), hint);
    }
    host = text.substr(1, close - 1);
    portText = text.substr(close + 2);
    if (host.find(':') == std::string_view::npos) {
      return fail("config.endpoint", fmt::format("'{}': brackets are for IPv6 only", text), hint);
    }
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return fail("config.endpoint", fmt::format("'{}' has no port", text), hint);
    }
    host = text.substr(0, colon);
    portText = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return fail("config.endpoint", fmt::format("'{}': put an IPv6 address in brackets", text),
                  hint);
    }
  }
  if (!isIpLiteral(host)) {
    return fail("config.endpoint", fmt::format("'{}' is not an IP address", host),
                "listeners bind an address; use 127.0.0.1, ::1, 0.0.0.0 or ::");
  }
  unsigned port = 0;
  const char* end = portText.data() + portText.size();
  auto [ptr, ec] = std::from_chars(portText.data(), end, port);
  if (portText.empty() || ec != std::errc() || ptr != end || port > 65535) {
    return fail("config.endpoint", fmt::format("port in '{}' must be 0..65535", text), hint);
  }
  return Endpoint{std::string(host), static_cast<std::uint16_t>(port)};
}

bool isHostName(std::string_view text) {
  if (isIpLiteral(text)) {
    return true;
  }
  if (text.empty() || text.size() > 253) {
    return false;
  }
  if (text.back() == '.') {
    text.remove_suffix(1);
  }
  std::size_t label = 0;
  char prev = '.';
  for (const char c : text) {
    if (c == '.') {
      if (label == 0 || prev == '-') {
        return false;
      }
      label = 0;
    } else {
      const bool alnum = isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
      if (!alnum && !(c == '-' && label > 0) && c != '_') {
        return false;
      }
      if (++label > 63) {
        return false;
      }
    }
    prev = c;
  }
  return label > 0 && prev != '-';
}

Result<void> checkUrl(std::string_view url, std::initializer_list<std::string_view> schemes) {
  std::string allowed;
  for (const auto s : schemes) {
    allowed += allowed.empty() ? "" : ", ";
    allowed += fmt::format("{}://", s);
  }
  const auto sep = url.find("://");
  if (sep == std::string_view::npos) {
    return fail("config.url", "not an absolute URL", fmt::format("start it with {}", allowed));
  }
  const std::string scheme = lowerAscii(url.substr(0, sep));
  bool known = false;
  for (const auto s : schemes) {
    known = known || scheme == s;
  }
  if (!known) {
    return fail("config.url", fmt::format("scheme '{}' is not supported", scheme),
                fmt::format("use {}", allowed));
  }
  std::string_view rest = url.substr(sep + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    rest = rest.substr(at + 1);
  }
  std::string_view host = rest;
  if (host.starts_with('[')) {
    host = host.substr(1, host.find(']') == std::string_view::npos ? 0 : host.find(']') - 1);
  } else {
    host = host.substr(0, host.rfind(':'));
  }
  if (host.empty() || (!isHostName(host) && !isIpLiteral(host))) {
    return fail("config.url", "URL has no valid host");
  }
  for (const char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return fail("config.url", "URL contains spaces or control characters");
    }
  }
  return {};
}

bool isMailAddress(std::string_view text) {
  const auto at = text.find('@');
  if (at == std::string_view::npos || at == 0 || text.find('@', at + 1) != std::string_view::npos) {
    return false;
  }
  for (const char c : text.substr(0, at)) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == ',' ||
        c == '"') {
      return false;
    }
  }
  const std::string_view domain = text.substr(at + 1);
  return !isIpLiteral(domain) && domain.find('.') != std::string_view::npos && isHostName(domain);
}

bool hasUpperAscii(std::string_view text) {
  for (const char c : text) {
    if (c >= 'A' && c <= 'Z') {
      return true;
    }
  }
  return false;
}

std::string lowerAscii(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

} // namespace mailgate::config

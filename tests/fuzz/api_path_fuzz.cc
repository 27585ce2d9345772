// Fuzzes the control API's request-target parsing: percent-decoding, path matching against every
// route pattern shape, and query strings. Checks: no crash; a decoded value never holds NUL, CR or
// LF; a match gives one parameter per {name} in the pattern; parsing is deterministic.
//
// Input layout: byte 0 selects the pattern, the rest is the path (or query) bytes.
#include "gateway/api/api_routes.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace api = mailgate::api;

namespace {

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

bool clean(const std::string& s) {
  return s.find_first_of(std::string_view("\0\r\n", 3)) == std::string::npos;
}

constexpr std::array<std::string_view, 6> kPatterns = {
    "/v1/queue",         "/v1/mailboxes/{address}", "/v1/mailboxes/{address}/failover",
    "/v1/messages/{id}", "/v1/messages/{id}/retry", "/{a}/{b}",
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) {
    return 0;
  }
  const std::string_view pattern = kPatterns[data[0] % kPatterns.size()];
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);

  for (const bool plus : {false, true}) {
    const auto decoded = api::percentDecode(input, plus);
    if (decoded) {
      check(clean(*decoded));
      check(decoded->size() <= input.size());
      check(decoded == api::percentDecode(input, plus));
    }
  }
  if (auto params = api::matchPath(pattern, input)) {
    std::size_t braces = 0;
    for (const char c : pattern) {
      braces += c == '{' ? 1 : 0;
    }
    check(params->size() == braces);
    for (const auto& [name, value] : *params) {
      check(!name.empty() && !value.empty() && clean(value));
      // A segment ends at '/': one inside a value can only come from an escaped %2F.
      check(value.find('/') == std::string::npos || input.find("%2F") != std::string_view::npos ||
            input.find("%2f") != std::string_view::npos);
    }
  }
  // The route table finds the route matchPath matches, with the same parameters.
  static const auto table = [] {
    api::RouteTable<int> t;
    int n = 0;
    for (const auto p : kPatterns) {
      t.add(api::Route<int>{"GET", std::string(p), true, api::Permission::kRead, n++});
    }
    return t;
  }();
  const auto found = table.find("GET", input);
  const std::size_t first_match = [&] {
    for (std::size_t i = 0; i < kPatterns.size(); ++i) {
      if (api::matchPath(kPatterns[i], input)) {
        return i;
      }
    }
    return kPatterns.size();
  }();
  if (found.route != nullptr) {
    check(static_cast<std::size_t>(found.route->handler) == first_match);
    check(found.params == *api::matchPath(kPatterns[first_match], input));
  } else {
    check(first_match == kPatterns.size());
  }
  if (auto query = api::parseQuery(input)) {
    for (const auto& [name, value] : *query) {
      check(clean(name) && clean(value));
    }
  }
  return 0;
}

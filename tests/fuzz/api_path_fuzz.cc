// Fuzzes the control API's request-target parsing: percent-decoding, the route table's path
// matching against every route pattern shape, and query strings. Checks: no crash; a decoded value
// never holds NUL, CR or LF; a match gives one parameter per {name} in the pattern; the table
// agrees with a plain reference matcher written here; parsing is deterministic.
//
// Input layout: byte 0 is not read (the corpus keeps its old layout), the rest is the path (or
// query) bytes.
#include "gateway/api/api_routes.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

// The reference: cut both at every '/', compare literal segments, decode the {name} ones.
std::optional<api::PathParams> referenceMatch(std::string_view pattern, std::string_view path) {
  const auto cut = [](std::string_view text) {
    std::vector<std::string_view> out;
    std::size_t start = 1;
    for (;;) {
      const std::size_t slash = text.find('/', start);
      out.push_back(
          text.substr(start, slash == std::string_view::npos ? text.npos : slash - start));
      if (slash == std::string_view::npos) {
        return out;
      }
      start = slash + 1;
    }
  };
  if (path.empty() || path.front() != '/') {
    return std::nullopt;
  }
  const auto want = cut(pattern);
  const auto have = cut(path);
  if (want.size() != have.size()) {
    return std::nullopt;
  }
  api::PathParams params;
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (want[i].size() > 2 && want[i].front() == '{' && want[i].back() == '}') {
      auto value = have[i].empty() ? std::nullopt : api::percentDecode(have[i], false);
      if (!value) {
        return std::nullopt;
      }
      params.emplace_back(std::string(want[i].substr(1, want[i].size() - 2)), *value);
    } else if (want[i] != have[i]) {
      return std::nullopt;
    }
  }
  return params;
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
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);

  for (const bool plus : {false, true}) {
    const auto decoded = api::percentDecode(input, plus);
    if (decoded) {
      check(clean(*decoded));
      check(decoded->size() <= input.size());
      check(decoded == api::percentDecode(input, plus));
    }
  }
  // The route table finds the first pattern the reference matches, with the same parameters.
  static const auto table = [] {
    api::RouteTable<int> t;
    int n = 0;
    for (const auto p : kPatterns) {
      t.add(api::Route<int>{"GET", std::string(p), true, api::Permission::kRead, n++});
    }
    return t;
  }();
  const auto found = table.find("GET", input);
  std::size_t first_match = kPatterns.size();
  std::optional<api::PathParams> expected;
  for (std::size_t i = 0; i < kPatterns.size() && !expected; ++i) {
    expected = referenceMatch(kPatterns[i], input);
    first_match = expected ? i : kPatterns.size();
  }
  if (found.route != nullptr) {
    check(static_cast<std::size_t>(found.route->handler) == first_match);
    check(found.params == *expected);
    const std::string_view matched = kPatterns[first_match];
    std::size_t braces = 0;
    for (const char c : matched) {
      braces += c == '{' ? 1 : 0;
    }
    check(found.params.size() == braces);
    for (const auto& [name, value] : found.params) {
      check(!name.empty() && !value.empty() && clean(value));
      // A segment ends at '/': one inside a value can only come from an escaped %2F.
      check(value.find('/') == std::string::npos || input.find("%2F") != std::string_view::npos ||
            input.find("%2f") != std::string_view::npos);
    }
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

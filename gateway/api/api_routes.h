// The control API's route table: which method and path pattern goes to which handler, with the
// permission it needs. Plain data and matching, no I/O. The OpenAPI document
// (gateway/api/openapi.json) lists the same routes; a test keeps the two equal.
#pragma once

#include "gateway/auth/api_auth.h"

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mailgate::api {

// Path parameters by name ("address" for /v1/mailboxes/{address}), percent-decoded.
using PathParams = std::vector<std::pair<std::string, std::string>>;

template <typename Handler> struct Route {
  std::string method;  // "GET", "POST", "DELETE"
  std::string pattern; // "/v1/mailboxes/{address}/failover"; a {name} matches one segment
  bool needs_auth = true;
  Permission permission = Permission::kRead;
  Handler handler;
};

// Percent-decodes one path segment or query value ("%40" → "@"; "+" stays "+" in paths, is a
// space in queries). nullopt for a malformed escape or a decoded NUL, CR or LF.
[[nodiscard]] std::optional<std::string> percentDecode(std::string_view text, bool plus_is_space);

// Matches `path` against `pattern`; the parameters on success.
[[nodiscard]] std::optional<PathParams> matchPath(std::string_view pattern, std::string_view path);

// Query parameters in order; repeated names stay repeated. nullopt when an escape is malformed.
[[nodiscard]] std::optional<std::vector<std::pair<std::string, std::string>>>
parseQuery(std::string_view query);

template <typename Handler> class RouteTable {
public:
  void add(Route<Handler> route) { routes_.push_back(std::move(route)); }
  [[nodiscard]] const std::vector<Route<Handler>>& routes() const { return routes_; }

  struct Match {
    const Route<Handler>* route = nullptr; // null: no route for this method (see allowed)
    PathParams params;
    std::vector<std::string> allowed; // methods the path has, when it exists but not for this one
    bool bad_escape = false;          // the path has a malformed percent escape
  };

  [[nodiscard]] Match find(std::string_view method, std::string_view path) const {
    Match m;
    for (const auto& r : routes_) {
      // The literal part before the first parameter must match: most routes fail here. A route
      // without parameters matches its literal path only.
      const std::size_t brace = r.pattern.find('{');
      const std::string_view literal = std::string_view(r.pattern).substr(0, brace);
      if (brace == std::string::npos ? path != literal : !path.starts_with(literal)) {
        continue;
      }
      auto params = matchPath(r.pattern, path);
      if (!params) {
        continue;
      }
      const bool same = r.method == method || (method == "HEAD" && r.method == "GET");
      if (same) {
        m.route = &r;
        m.params = std::move(*params);
        m.allowed.clear();
        return m;
      }
      m.allowed.push_back(r.method);
    }
    m.bad_escape = !percentDecode(path, false).has_value();
    return m;
  }

private:
  std::vector<Route<Handler>> routes_;
};

} // namespace mailgate::api

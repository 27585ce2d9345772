// The control API's route table: which method and path pattern goes to which handler, with the
// permission it needs. Plain data and matching, no I/O. The OpenAPI document
// (gateway/api/openapi.json) lists the same routes; a test keeps the two equal.
#pragma once

#include "gateway/auth/api_auth.h"

#include <array>
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

// Query parameters in order; repeated names stay repeated. nullopt when an escape is malformed.
[[nodiscard]] std::optional<std::vector<std::pair<std::string, std::string>>>
parseQuery(std::string_view query);

// A path cut at its slashes: "/v1/mailboxes/a" -> {"v1", "mailboxes", "a"}. At most
// kMaxPathSegments; nullopt past that (no route is that deep) or for a path not starting with '/'.
inline constexpr std::size_t kMaxPathSegments = 8;
struct PathSegments {
  std::array<std::string_view, kMaxPathSegments> items{};
  std::size_t count = 0;
};
[[nodiscard]] std::optional<PathSegments> splitPath(std::string_view path);

template <typename Handler> class RouteTable {
public:
  void add(Route<Handler> route) {
    // Owned copies: the views splitPath gives point into the pattern, which moves with routes_.
    std::vector<std::string> segments;
    if (auto cut = splitPath(route.pattern)) {
      segments.assign(cut->items.begin(), cut->items.begin() + static_cast<long>(cut->count));
    }
    patterns_.push_back(std::move(segments));
    routes_.push_back(std::move(route));
  }
  [[nodiscard]] const std::vector<Route<Handler>>& routes() const { return routes_; }

  struct Match {
    const Route<Handler>* route = nullptr; // null: no route for this method (see allowed)
    PathParams params;
    std::vector<std::string> allowed; // methods the path has, when it exists but not for this one
    bool bad_escape = false;          // the path has a malformed percent escape
  };

  // The path is cut once; each route compares its pre-cut pattern segment by segment, and only
  // the route that matches decodes its parameters.
  [[nodiscard]] Match find(std::string_view method, std::string_view path) const {
    Match m;
    const auto have = splitPath(path);
    for (std::size_t i = 0; have && i < routes_.size(); ++i) {
      const std::vector<std::string>& want = patterns_[i];
      if (want.size() != have->count || !sameShape(want, *have)) {
        continue;
      }
      const auto& r = routes_[i];
      const bool same = r.method == method || (method == "HEAD" && r.method == "GET");
      if (!same) {
        m.allowed.push_back(r.method);
        continue;
      }
      PathParams params;
      bool decoded = true;
      for (std::size_t k = 0; k < want.size() && decoded; ++k) {
        if (isParam(want[k])) {
          auto value = percentDecode(have->items[k], false);
          decoded = value.has_value();
          if (decoded) {
            params.emplace_back(want[k].substr(1, want[k].size() - 2), std::move(*value));
          }
        }
      }
      if (!decoded) {
        continue;
      }
      m.route = &r;
      m.params = std::move(params);
      m.allowed.clear();
      return m;
    }
    m.bad_escape = !percentDecode(path, false).has_value();
    return m;
  }

private:
  static bool isParam(std::string_view segment) {
    return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
  }
  static bool sameShape(const std::vector<std::string>& want, const PathSegments& have) {
    for (std::size_t k = 0; k < want.size(); ++k) {
      if (isParam(want[k]) ? have.items[k].empty() : want[k] != have.items[k]) {
        return false;
      }
    }
    return true;
  }

  std::vector<Route<Handler>> routes_;
  std::vector<std::vector<std::string>> patterns_; // routes_[i]'s pattern, cut at its slashes
};

} // namespace mailgate::api

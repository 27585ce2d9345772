#include "gateway/api/protocol_server.h"

#include <exception>

namespace mailgate::api {

HttpResponse invokeHandler(const HttpHandler& handler, const HttpRequest& request) {
  try {
    return handler(request);
  } catch (const std::exception&) {
    return jsonError(500, "api.internal", "the request handler failed",
                     "see the gateway log; retrying may help");
  } catch (...) {
    return jsonError(500, "api.internal", "the request handler failed",
                     "see the gateway log; retrying may help");
  }
}

bool splitTarget(std::string_view target, std::string& path, std::string& query) {
  if (const auto hash = target.find('#'); hash != std::string_view::npos) {
    target = target.substr(0, hash);
  }
  if (target.starts_with("http://") || target.starts_with("https://")) {
    const auto authority = target.find("//") + 2;
    const auto slash = target.find_first_of("/?", authority);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    if (target.starts_with('?')) {
      path = "/";
      query = target.substr(1);
      return true;
    }
  }
  if (target.empty() || (target.front() != '/' && target != "*")) {
    return false;
  }
  const auto q = target.find('?');
  path = target.substr(0, q);
  query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  return true;
}

} // namespace mailgate::api

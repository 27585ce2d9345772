#include "gateway/store/message_queries.h"

#include <algorithm>

namespace mailgate::store {

std::optional<std::vector<std::string>> scopedTenants(const std::vector<std::string>& scope) {
  if (scope.size() == 1 && scope.front() == "*") {
    return std::nullopt;
  }
  std::vector<std::string> out;
  for (const auto& t : scope) {
    if (!t.empty() && std::find(out.begin(), out.end(), t) == out.end()) {
      out.push_back(t);
    }
  }
  return out;
}

} // namespace mailgate::store

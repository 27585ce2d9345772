#include "config/source_map.h"

#include <fmt/format.h>

namespace mailgate::config {

std::string Diagnostic::str() const {
  std::string out = file;
  if (line > 0) {
    out += fmt::format(":{}:{}", line, column);
  }
  out += ": ";
  if (!path.empty()) {
    out += path;
    out += ": ";
  }
  out += reason;
  return out;
}

Position SourceMap::find(std::string_view path) const {
  while (!path.empty()) {
    if (auto it = positions_.find(path); it != positions_.end()) {
      return it->second;
    }
    const auto cut = path.find_last_of(".[");
    if (cut == std::string_view::npos) {
      break;
    }
    path = path.substr(0, cut);
  }
  return {};
}

Diagnostic SourceMap::diagnose(std::string path, std::string reason) const {
  const Position pos = find(path);
  return Diagnostic{file_, pos.line, pos.column, std::move(path), std::move(reason)};
}

} // namespace mailgate::config

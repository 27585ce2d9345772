#include "gateway/api/api_routes.h"

#include <algorithm>

namespace mailgate::api {

namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

// The next segment of `path` after position `pos` (which is at a '/').
std::string_view nextSegment(std::string_view path, std::size_t& pos) {
  const std::size_t start = pos + 1;
  const std::size_t end = path.find('/', start);
  pos = end == std::string_view::npos ? path.size() : end;
  return path.substr(start, pos - start);
}

} // namespace

std::optional<std::string> percentDecode(std::string_view text, bool plus_is_space) {
  // Nothing to decode (the usual case): one copy.
  const bool plain = std::none_of(text.begin(), text.end(), [plus_is_space](char c) {
    return c == '%' || (c == '+' && plus_is_space) || c == '\0' || c == '\r' || c == '\n';
  });
  if (plain) {
    return std::string(text);
  }
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) {
        return std::nullopt;
      }
      const int hi = hexValue(text[i + 1]);
      const int lo = hexValue(text[i + 2]);
      if (hi < 0 || lo < 0) {
        return std::nullopt;
      }
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      c = ' ';
    }
    if (c == '\0' || c == '\r' || c == '\n') {
      return std::nullopt;
    }
    out.push_back(c);
  }
  return out;
}

std::optional<PathSegments> splitPath(std::string_view path) {
  if (path.empty() || path.front() != '/') {
    return std::nullopt;
  }
  PathSegments out;
  std::size_t pos = 0;
  while (pos < path.size()) {
    if (out.count == kMaxPathSegments) {
      return std::nullopt;
    }
    out.items[out.count++] = nextSegment(path, pos);
  }
  return out;
}

std::optional<std::vector<std::pair<std::string, std::string>>> parseQuery(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t pos = 0;
  while (pos <= query.size() && !query.empty()) {
    const std::size_t amp = query.find('&', pos);
    const std::string_view item =
        query.substr(pos, amp == std::string_view::npos ? std::string_view::npos : amp - pos);
    if (!item.empty()) {
      const std::size_t eq = item.find('=');
      auto name = percentDecode(item.substr(0, eq), true);
      auto value = percentDecode(
          eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1), true);
      if (!name || !value) {
        return std::nullopt;
      }
      out.emplace_back(std::move(*name), std::move(*value));
    }
    if (amp == std::string_view::npos) {
      break;
    }
    pos = amp + 1;
  }
  return out;
}

} // namespace mailgate::api

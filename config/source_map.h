// Positions of configuration keys in their YAML file, and the diagnostics that cite them.
// Key paths are written as in docs/configuration.md: "listeners.smtp.address",
// "tenants[0].mailboxes[1].aliases[0]", "relays.default.port".
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>

namespace mailgate::config {

// One problem in a configuration. line and column are 1-based; 0 means "no position" (a Config
// built in code, or a file that could not be read).
struct Diagnostic {
  std::string file;
  int line = 0;
  int column = 0;
  std::string path;   // key path; empty for problems not tied to a key (YAML syntax)
  std::string reason; // never contains a secret's value

  // "FILE:LINE:COL: path: reason"; without a position "FILE: path: reason"; the "path: " part is
  // left out when path is empty.
  [[nodiscard]] std::string str() const;
  friend bool operator==(const Diagnostic&, const Diagnostic&) = default;
};

struct Position {
  int line = 0; // 1-based; 0: unknown
  int column = 0;
};

class SourceMap {
public:
  SourceMap() = default;
  explicit SourceMap(std::string file) : file_(std::move(file)) {}

  [[nodiscard]] const std::string& file() const { return file_; }
  void record(const std::string& path, Position pos) { positions_[path] = pos; }

  // The position of `path`, else of its nearest recorded ancestor ("a.b[2].c" -> "a.b[2]" ->
  // "a.b" -> "a"), else {0, 0}.
  [[nodiscard]] Position find(std::string_view path) const;

  // A diagnostic for `path` at find(path).
  [[nodiscard]] Diagnostic diagnose(std::string path, std::string reason) const;

private:
  std::string file_ = "<memory>";
  std::map<std::string, Position, std::less<>> positions_;
};

} // namespace mailgate::config

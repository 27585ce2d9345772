// Helpers shared by the config tests: inline YAML with a fake environment, temporary folders.
#pragma once

#include "config/loader.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::config::testing {

// A folder under the system temp dir, removed with everything in it on destruction.
class TempDir {
public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "mailgate-config-XXXXXX");
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

  // Writes `content` to path()/relative, creating folders; returns the full path.
  std::string write(const std::string& relative, std::string_view content) const {
    const auto full = path_ / relative;
    std::filesystem::create_directories(full.parent_path());
    std::ofstream(full, std::ios::binary) << content;
    return full.string();
  }

private:
  std::filesystem::path path_;
};

inline LoadOptions fakeEnv(std::map<std::string, std::string> vars, std::string baseDir = {}) {
  LoadOptions o;
  o.base_dir = std::move(baseDir);
  o.env = [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    if (auto it = vars.find(name); it != vars.end()) {
      return it->second;
    }
    return std::nullopt;
  };
  return o;
}

// Every diagnostic of `yaml` (named t.yaml) as its str().
inline std::vector<std::string> diagnose(std::string_view yaml, const LoadOptions& options = {}) {
  std::vector<std::string> out;
  LoadOptions o = options;
  if (!o.env) {
    o = fakeEnv({}, options.base_dir);
  }
  for (const Diagnostic& d : checkString(yaml, "t.yaml", o)) {
    out.push_back(d.str());
  }
  return out;
}

inline std::string readAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

} // namespace mailgate::config::testing

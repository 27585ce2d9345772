// Loading a configuration from YAML: every problem in the file is collected (syntax, unknown
// keys, wrong types, bad values, unresolvable secrets, and everything validate() finds) and
// reported as "FILE:LINE:COL: key.path: reason", sorted by position. Nothing here throws.
//
// Secrets (fields of type Secret) are written as a plain string, a string with "${ENV}"
// references, or {file: PATH}; PATH is resolved against the configuration file's folder and its
// trailing newlines are dropped. "${ENV}" works in every string value; "$${" writes a literal
// "${". No message ever contains a secret's value.
#pragma once

#include "base/error.h"
#include "config/config.h"
#include "config/source_map.h"

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::config {

// Returns the value of an environment variable, or nullopt when it is not set.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

struct LoadOptions {
  // Folder that relative file names resolve against. Empty: the config file's folder for
  // loadFile/checkFile, the working directory for loadString/checkString.
  std::string base_dir;
  // Empty: the process environment (getenv). Tests pass a map lookup instead.
  EnvLookup env;
};

// On failure the Error has code "config.invalid" (or "config.read" when the file cannot be read)
// and its message holds every diagnostic's str(), one per line, sorted by position.
[[nodiscard]] Result<Config> loadFile(const std::string& path, const LoadOptions& options = {});
[[nodiscard]] Result<Config> loadString(std::string_view yaml, std::string name = "<inline>",
                                        const LoadOptions& options = {});

// The same checks, returning the diagnostics one by one (empty: the configuration is valid).
// `mailgated --check-config` prints each str() and exits 2 when the list is not empty.
[[nodiscard]] std::vector<Diagnostic> checkFile(const std::string& path,
                                                const LoadOptions& options = {});
[[nodiscard]] std::vector<Diagnostic>
checkString(std::string_view yaml, std::string name = "<inline>", const LoadOptions& options = {});

// The Error loadFile/loadString return for these diagnostics (must not be empty).
[[nodiscard]] Error toError(const std::vector<Diagnostic>& diagnostics);

} // namespace mailgate::config

// Where mailgatectl's API token comes from: --token-file FILE, else MAILGATE_TOKEN, else
// MAILGATE_TOKEN_FILE. Never from a command-line argument (it would show in `ps`).
#pragma once

#include "base/error.h"
#include "base/secret.h"

#include <optional>
#include <string>

namespace mailgate::ctl {

struct TokenSources {
  std::optional<std::string> file_option; // --token-file
  std::optional<std::string> env_token;   // MAILGATE_TOKEN (empty counts as unset)
  std::optional<std::string> env_file;    // MAILGATE_TOKEN_FILE (empty counts as unset)
};

// The token from the first source that is set. Trailing CR/LF are removed (as mailgated does for
// secret_file); what remains must be non-empty printable ASCII without spaces. Errors, all
// "ctl.token", name the source (a variable or a file path), never the token's text.
Result<Secret> loadToken(const TokenSources& sources);

// The token held in `path` (at most 64 KiB), checked as above.
Result<Secret> readTokenFile(const std::string& path);

} // namespace mailgate::ctl

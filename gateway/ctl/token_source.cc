#include "gateway/ctl/token_source.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace mailgate::ctl {

namespace {

constexpr std::size_t kMaxTokenFileBytes = 64 * 1024;
constexpr std::string_view kSourcesHint =
    "set MAILGATE_TOKEN, or put the token in a file and pass --token-file FILE (or set "
    "MAILGATE_TOKEN_FILE); the token is never taken as a command-line argument";

Result<Secret> checkToken(std::string value, const std::string& source) {
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) {
    value.pop_back();
  }
  if (value.empty()) {
    return fail("ctl.token", source + " is empty", std::string(kSourcesHint));
  }
  for (const char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7F) {
      return fail("ctl.token",
                  source + " holds spaces, line breaks, control or non-ASCII characters",
                  "a token is one line of printable ASCII: the secret of a listeners.api.tokens "
                  "entry, and nothing else");
    }
  }
  return Secret(std::move(value));
}

bool set(const std::optional<std::string>& v) {
  return v.has_value() && !v->empty();
}

} // namespace

Result<Secret> readTokenFile(const std::string& path) {
  using FilePtr = std::unique_ptr<std::FILE, int (*)(std::FILE*)>;
  FilePtr f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) {
    return fail("ctl.token", "cannot read token file " + path + ": " + std::strerror(errno),
                "check the path and that this user may read it");
  }
  std::string data(kMaxTokenFileBytes + 1, '\0');
  const std::size_t n = std::fread(data.data(), 1, data.size(), f.get());
  if (std::ferror(f.get()) != 0) {
    return fail("ctl.token", "cannot read token file " + path + ": " + std::strerror(errno),
                "check the path and that this user may read it");
  }
  if (n > kMaxTokenFileBytes) {
    return fail("ctl.token", "token file " + path + " is larger than 64 KiB",
                "the file must hold the token alone");
  }
  data.resize(n);
  return checkToken(std::move(data), "token file " + path);
}

Result<Secret> loadToken(const TokenSources& sources) {
  if (sources.file_option) {
    return readTokenFile(*sources.file_option);
  }
  if (set(sources.env_token)) {
    return checkToken(*sources.env_token, "MAILGATE_TOKEN");
  }
  if (set(sources.env_file)) {
    return readTokenFile(*sources.env_file);
  }
  return fail("ctl.token", "no API token given", std::string(kSourcesHint));
}

} // namespace mailgate::ctl

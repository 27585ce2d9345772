#include "gateway/ctl/api_url.h"

#include <algorithm>
#include <cctype>

namespace mailgate::ctl {

namespace {

bool unreserved(unsigned char c) {
  return std::isalnum(c) != 0 || c == '-' || c == '.' || c == '_' || c == '~';
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::ranges::transform(out, out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

} // namespace

std::string percentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (unreserved(c)) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0x0F]);
    }
  }
  return out;
}

Result<std::string> normalizeBaseUrl(std::string_view url) {
  const std::string hint = "give the API's address as http://HOST:PORT or https://HOST:PORT "
                           "(listeners.api.address), e.g. http://127.0.0.1:8025";
  for (const char ch : url) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7F) {
      return fail("ctl.url", "the URL holds spaces, control or non-ASCII characters", hint);
    }
  }
  const auto sep = url.find("://");
  if (sep == std::string_view::npos) {
    return fail("ctl.url", "the URL has no http:// or https:// in front", hint);
  }
  const std::string scheme = lower(url.substr(0, sep));
  if (scheme != "http" && scheme != "https") {
    return fail("ctl.url", "the URL's scheme is " + scheme + ", not http or https", hint);
  }
  if (url.find_first_of("?#") != std::string_view::npos) {
    return fail("ctl.url", "the URL has a query or fragment", hint);
  }
  const std::string_view rest = url.substr(sep + 3);
  const std::string_view authority = rest.substr(0, rest.find('/'));
  if (authority.find('@') != std::string_view::npos) {
    return fail("ctl.url", "the URL holds a user name or password",
                "give the token through MAILGATE_TOKEN or --token-file, never in the URL");
  }
  if (authority.empty() || authority.front() == ':') {
    return fail("ctl.url", "the URL has no host", hint);
  }
  std::string out = scheme + "://" + std::string(rest);
  while (out.back() == '/') {
    out.pop_back();
  }
  return out;
}

std::string apiUrl(std::string_view base, std::string_view path, const QueryParams& query) {
  std::string out(base);
  out += path;
  char sep = '?';
  for (const auto& [name, value] : query) {
    if (value.empty()) {
      continue;
    }
    out.push_back(sep);
    out += percentEncode(name);
    out.push_back('=');
    out += percentEncode(value);
    sep = '&';
  }
  return out;
}

bool isHttps(std::string_view url) {
  return lower(url.substr(0, 8)) == "https://";
}

} // namespace mailgate::ctl

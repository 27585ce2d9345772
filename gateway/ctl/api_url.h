// URLs of the control API: the base URL an operator gives, paths with percent-encoded segments,
// query strings.
#pragma once

#include "base/error.h"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mailgate::ctl {

using QueryParams = std::vector<std::pair<std::string, std::string>>;

// Every byte except ALPHA, DIGIT, '-', '.', '_', '~' as %XX (upper-case hex), so the result is
// safe as one path segment or one query value: "rep1@acme.example" -> "rep1%40acme.example".
std::string percentEncode(std::string_view text);

// Checks an operator's base URL: http or https, a host, no user name or password (they would
// show in `ps`), no query or fragment. An optional path prefix is kept (a gateway behind a
// reverse proxy at https://ops.example/mailgate). Returns it without trailing slashes.
// Errors: "ctl.url" with a hint.
Result<std::string> normalizeBaseUrl(std::string_view url);

// base (normalized) + path (starting with '/', segments already encoded) + "?k=v&..." with the
// names and values percent-encoded; parameters with empty values are left out.
std::string apiUrl(std::string_view base, std::string_view path, const QueryParams& query = {});

// True when the URL's scheme is https.
bool isHttps(std::string_view url);

} // namespace mailgate::ctl

#include "gateway/auth/api_auth.h"

#include "base/secret.h"

#include <algorithm>

namespace mailgate::api {

namespace {

bool startsWithBearer(std::string_view value) {
  constexpr std::string_view kScheme = "bearer";
  if (value.size() < kScheme.size()) {
    return false;
  }
  for (size_t i = 0; i < kScheme.size(); ++i) {
    const char c = value[i];
    const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    if (lower != kScheme[i]) {
      return false;
    }
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

} // namespace

Result<const config::ApiToken*> authenticate(const std::vector<config::ApiToken>& tokens,
                                             std::string_view authorization) {
  authorization = trim(authorization);
  if (authorization.empty()) {
    return fail("auth.missing", "the request has no Authorization header",
                "send 'Authorization: Bearer <token>' with a token from listeners.api.tokens");
  }
  if (!startsWithBearer(authorization) || authorization.size() < 8 ||
      (authorization[6] != ' ' && authorization[6] != '\t')) {
    return fail("auth.malformed", "the Authorization header is not 'Bearer <token>'",
                "send 'Authorization: Bearer <token>'");
  }
  const std::string_view presented = trim(authorization.substr(7));
  if (presented.empty()) {
    return fail("auth.malformed", "the Authorization header has no token after 'Bearer'",
                "send 'Authorization: Bearer <token>'");
  }
  const config::ApiToken* found = nullptr;
  for (const auto& token : tokens) {
    // No early exit: every secret is compared.
    const bool equal = constantTimeEquals(presented, token.secret.reveal());
    if (equal && found == nullptr) {
      found = &token;
    }
  }
  if (found == nullptr) {
    return fail("auth.invalid", "the bearer token is not valid",
                "check the token against listeners.api.tokens (it may have been rotated)");
  }
  return found;
}

bool permits(const config::ApiToken& token, Permission permission) {
  using config::Role;
  if (token.hasRole(Role::kAdmin)) {
    return true;
  }
  switch (permission) {
  case Permission::kRead:
    return token.hasRole(Role::kReader) || token.hasRole(Role::kOperator) ||
           token.hasRole(Role::kSubmitter) || token.hasRole(Role::kConnector);
  case Permission::kOperate:
    return token.hasRole(Role::kOperator);
  case Permission::kSubmit:
    return token.hasRole(Role::kSubmitter);
  case Permission::kConnect:
    return token.hasRole(Role::kConnector);
  case Permission::kAdminister:
    return false;
  }
  return false;
}

bool inScope(const config::ApiToken& token, std::string_view tenant) {
  return token.allTenants() ||
         std::find(token.tenants.begin(), token.tenants.end(), tenant) != token.tenants.end();
}

} // namespace mailgate::api

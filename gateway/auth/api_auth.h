// Who may call the control API, and what for: bearer tokens from listeners.api.tokens, their roles
// and their tenant scope. Plain functions over the configuration; no I/O, any thread.
//
// Roles grant permissions (docs/api.md lists them per endpoint):
//   admin      everything
//   operator   read, and act on mail and routes (failover/failback, retry, delete, reload)
//   submitter  submit messages, and read the messages it may see
//   connector  connect and disconnect mailboxes, and read them
//   reader     read
// A token's `tenants` scope limits every permission to those tenants ("*": all of them).
#pragma once

#include "base/error.h"
#include "config/config.h"

#include <string_view>

namespace mailgate::api {

enum class Permission { kRead, kOperate, kSubmit, kConnect, kAdminister };

// The token named by an `Authorization: Bearer <secret>` header value. Every configured secret is
// compared in constant time, and all of them are compared whatever matches, so the time taken
// tells nothing about which token (if any) was close. Errors (HTTP 401):
//   "auth.missing"   no Authorization header (empty value)
//   "auth.malformed" not "Bearer <token>" (scheme case-insensitive, one space or more)
//   "auth.invalid"   no configured token has this secret
// Error texts never contain the presented secret.
[[nodiscard]] Result<const config::ApiToken*>
authenticate(const std::vector<config::ApiToken>& tokens, std::string_view authorization);

// Whether the token's roles grant `permission` (HTTP 403 when not).
[[nodiscard]] bool permits(const config::ApiToken& token, Permission permission);

// Whether the token may see `tenant` at all. Callers answer 404 (not 403) for a mailbox or message
// of a tenant outside the scope, so a token cannot learn what exists elsewhere.
[[nodiscard]] bool inScope(const config::ApiToken& token, std::string_view tenant);

} // namespace mailgate::api

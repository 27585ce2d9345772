// What the control API (gateway/api/) asks of the SQLite store beyond relay::QueueStore: the
// vocabulary of SqliteQueueStore's gateway-only calls and the limits they apply.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace mailgate::store {

// The tenants a scope names, as config::ApiToken::tenants does: std::nullopt for every tenant
// ("*" alone), else the listed names in order, without duplicates and without "" (a message
// without a tenant is visible only to "*"). An empty list, or "*" among other names, names no
// tenant but the listed ones.
[[nodiscard]] std::optional<std::vector<std::string>>
scopedTenants(const std::vector<std::string>& scope);

} // namespace mailgate::store

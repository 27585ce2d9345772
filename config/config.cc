#include "config/config.h"

#include "config/enum_names.h"

#include <algorithm>

namespace mailgate::config {

std::string_view toString(TlsMode v) {
  return enumName(kTlsModeNames, v);
}
std::string_view toString(StorageBackend v) {
  return enumName(kStorageBackendNames, v);
}
std::string_view toString(Role v) {
  return enumName(kRoleNames, v);
}
std::string_view toString(Access v) {
  return enumName(kAccessNames, v);
}
std::string_view toString(AuthMethod v) {
  return enumName(kAuthMethodNames, v);
}
std::string_view toString(SyncMode v) {
  return enumName(kSyncModeNames, v);
}
std::string_view toString(OnDisconnect v) {
  return enumName(kOnDisconnectNames, v);
}

bool ApiToken::hasRole(Role r) const {
  return std::ranges::find(roles, r) != roles.end();
}

const Relay* Config::findRelay(std::string_view name) const {
  const auto it = relays.find(std::string(name));
  return it == relays.end() ? nullptr : &it->second;
}

const Tenant* Config::findTenant(std::string_view id) const {
  const auto it = std::ranges::find(tenants, id, &Tenant::id);
  return it == tenants.end() ? nullptr : &*it;
}

const ApiToken* Config::findToken(std::string_view name) const {
  const auto& tokens = listeners.api.tokens;
  const auto it = std::ranges::find(tokens, name, &ApiToken::name);
  return it == tokens.end() ? nullptr : &*it;
}

} // namespace mailgate::config

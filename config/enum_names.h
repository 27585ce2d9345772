// The YAML spelling of every configuration enum, shared by the loader (text -> value) and
// toString() (value -> text). Internal to config/.
#pragma once

#include "config/config.h"

#include <array>
#include <string_view>

namespace mailgate::config {

template <typename E> struct EnumName {
  std::string_view name;
  E value;
};

inline constexpr std::array<EnumName<TlsMode>, 3> kTlsModeNames{{
    {"implicit", TlsMode::kImplicit},
    {"starttls", TlsMode::kStarttls},
    {"none", TlsMode::kNone},
}};
inline constexpr std::array<EnumName<StorageBackend>, 2> kStorageBackendNames{{
    {"sqlite", StorageBackend::kSqlite},
    {"redis", StorageBackend::kRedis},
}};
inline constexpr std::array<EnumName<Role>, 5> kRoleNames{{
    {"admin", Role::kAdmin},
    {"operator", Role::kOperator},
    {"submitter", Role::kSubmitter},
    {"connector", Role::kConnector},
    {"reader", Role::kReader},
}};
inline constexpr std::array<EnumName<Access>, 3> kAccessNames{{
    {"imap", Access::kImap},
    {"graph", Access::kGraph},
    {"custom", Access::kCustom},
}};
inline constexpr std::array<EnumName<AuthMethod>, 2> kAuthMethodNames{{
    {"app_password", AuthMethod::kAppPassword},
    {"oauth2", AuthMethod::kOauth2},
}};
inline constexpr std::array<EnumName<SyncMode>, 3> kSyncModeNames{{
    {"two_way", SyncMode::kTwoWay},
    {"one_way", SyncMode::kOneWay},
    {"none", SyncMode::kNone},
}};
inline constexpr std::array<EnumName<OnDisconnect>, 2> kOnDisconnectNames{{
    {"hold", OnDisconnect::kHold},
    {"fallback", OnDisconnect::kFallback},
}};
inline constexpr std::array<EnumName<LogLevel>, 5> kLogLevelNames{{
    {"trace", LogLevel::kTrace},
    {"debug", LogLevel::kDebug},
    {"info", LogLevel::kInfo},
    {"warn", LogLevel::kWarn},
    {"error", LogLevel::kError},
}};
inline constexpr std::array<EnumName<LogFormat>, 2> kLogFormatNames{{
    {"text", LogFormat::kText},
    {"json", LogFormat::kJson},
}};

template <typename E, std::size_t N>
std::string_view enumName(const std::array<EnumName<E>, N>& table, E value) {
  for (const auto& entry : table) {
    if (entry.value == value) {
      return entry.name;
    }
  }
  return "?";
}

} // namespace mailgate::config

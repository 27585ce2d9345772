#include "imap/mailbox_status.h"

namespace mailgate::imap {

// These names are part of the API (docs/api.md, openapi.json) and of the metrics' labels:
// renaming one breaks clients and dashboards.
std::string_view poolStateName(PoolState state) {
  switch (state) {
  case PoolState::kOff:
    return "off";
  case PoolState::kConnecting:
    return "connecting";
  case PoolState::kConnected:
    return "connected";
  case PoolState::kThrottled:
    return "throttled";
  case PoolState::kBackoff:
    return "backoff";
  case PoolState::kDisconnected:
    return "disconnected";
  }
  // Only a value cast from outside the enum gets here; "off" keeps the API's enum closed.
  return "off";
}

} // namespace mailgate::imap

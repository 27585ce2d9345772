// What a live reload (reconfigure(next)) did, for the daemon's log and the answer of
// POST /v1/config/reload.
#pragma once

#include <string>
#include <vector>

namespace mailgate::relay {

struct ReloadReport {
  // One sentence per change that is in force now, e.g. "relay default: server changed".
  std::vector<std::string> applied;
  // Configuration keys that changed but apply only at the next start, e.g.
  // "listeners.smtp.address".
  std::vector<std::string> restart_required;
};

} // namespace mailgate::relay

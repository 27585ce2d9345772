#include "gateway/ctl/exit_codes.h"

namespace mailgate::ctl {

int exitCodeForStatus(int status, bool reload) {
  if (status >= 200 && status < 300) {
    return kExitOk;
  }
  switch (status) {
  case 401:
  case 403:
    return kExitAuth;
  case 404:
    return kExitNotFound;
  case 409:
    return kExitConflict;
  case 422:
    return reload ? kExitConfigInvalid : kExitApiError;
  default:
    return kExitApiError;
  }
}

int exitCodeForError(const Error& e) {
  if (e.code.starts_with("net.")) {
    return kExitUnreachable;
  }
  if (e.code == "ctl.usage" || e.code == "ctl.url" || e.code == "ctl.cacert") {
    return kExitUsage;
  }
  if (e.code == "ctl.token") {
    return kExitAuth;
  }
  return kExitApiError;
}

} // namespace mailgate::ctl

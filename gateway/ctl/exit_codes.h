// mailgatectl's exit codes: the contract with scripts (docs/cli.md, `mailgatectl --help`).
#pragma once

#include "base/error.h"

namespace mailgate::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitApiError = 1;      // any other API error, or an answer not understood
inline constexpr int kExitUsage = 2;         // bad command line, URL or --cacert file
inline constexpr int kExitAuth = 3;          // 401/403, or no usable token on this side
inline constexpr int kExitNotFound = 4;      // 404
inline constexpr int kExitConflict = 5;      // 409
inline constexpr int kExitConfigInvalid = 6; // 422 from POST /v1/config/reload
inline constexpr int kExitUnreachable = 7;   // connect, TLS, timeout, connection lost
inline constexpr int kExitNotReady = 8;      // `status`: the gateway is draining

// The exit code for an HTTP answer with `status`; `reload` says whether it answered
// POST /v1/config/reload (where 422 means the file is invalid). 2xx gives kExitOk.
int exitCodeForStatus(int status, bool reload);

// The exit code for an error that happened on this side: a transport error ("net.*": 7), a
// usage error ("ctl.usage", "ctl.url", "ctl.cacert": 2), a token problem ("ctl.token": 3);
// anything else is 1.
int exitCodeForError(const Error& e);

} // namespace mailgate::ctl

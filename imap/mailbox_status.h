// The IMAP side of one mailbox as the control API and metrics show it. Plain data, copied out of
// the mailbox's session pool on the loop thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mailgate::imap {

enum class PoolState {
  kOff,          // no IMAP for this mailbox: access graph, or no credentials yet
  kConnecting,   // the first session is being opened
  kConnected,    // at least one session is logged in
  kThrottled,    // the server asked us to slow down: nothing is sent until next_retry_at_ms
  kBackoff,      // no session: the last attempt failed (network, TLS, server); retrying
  kDisconnected, // credentials refused or login disabled: retrying slowly; `hint` says what to do
};

[[nodiscard]] std::string_view poolStateName(PoolState state); // "off", "connecting", ...

struct MailboxImapStatus {
  PoolState state = PoolState::kOff;
  uint32_t max_sessions = 0;  // the pool's cap (imap.pool.max_sessions, lowered by a tenant cap)
  uint32_t sessions_open = 0; // logged in, every kind
  uint32_t sessions_idle = 0; // of those, in IDLE on INBOX
  uint32_t sessions_busy = 0; // of those, leased to a job
  uint32_t sessions_connecting = 0; // connecting or logging in
  uint32_t jobs_waiting = 0;        // lease requests queued for a session
  std::string sent_folder;          // the Sent folder found (UTF-8), empty until found
  // The last failure: code ("imap.auth", "net.connect", ...), message and hint; empty if none.
  std::string last_error_code, last_error, hint;
  int64_t last_error_at_ms = 0;   // wall clock, ms since the epoch; 0: never
  int64_t next_retry_at_ms = 0;   // wall clock; 0: no retry scheduled
  int64_t connected_since_ms = 0; // wall clock of the first session of the current run; 0: none
  uint64_t logins = 0;            // successful logins since start
  uint64_t failures = 0;          // failed session attempts since start

  bool operator==(const MailboxImapStatus&) const = default;
};

} // namespace mailgate::imap

// Every mailbox's IMAP session pool, built from the configuration and kept in step with it on
// reload; per-tenant session budgets; the status the API shows. Loop thread only.
#pragma once

#include "base/error.h"
#include "base/token_source.h"
#include "config/config.h"
#include "imap/mailbox_pool.h"
#include "imap/mailbox_status.h"
#include "net/tls_context.h"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace mailgate::imap {

struct ImapServiceOptions {
  std::string version; // sent in ID
  // The token source of an oauth2 mailbox; null (or a null result): the mailbox shows
  // disconnected with "imap.no_token_source".
  std::function<std::shared_ptr<TokenSource>(const config::Tenant&, const config::Mailbox&)> tokens;
  SessionTimeouts timeouts;
  // Sessions connecting and logging in at once, across every mailbox: a start, a reload or a
  // server coming back opens thousands of sessions as a steady ramp, not as one burst that times
  // itself out (docs/imap.md).
  uint32_t max_connecting = 64;
  net::BackoffOptions reconnect{std::chrono::seconds(1), std::chrono::minutes(5), 2.0, 0.2, {}};
};

class ImapService {
public:
  ImapService(net::Loop& loop, ImapServiceOptions options);
  ~ImapService();
  ImapService(const ImapService&) = delete;
  ImapService& operator=(const ImapService&) = delete;

  // Makes the pools match `config`: mailboxes with `access: imap` or `custom` and credentials get
  // a pool (started at once); pools of mailboxes that are gone or lost IMAP are stopped; the
  // others are reconfigured. The first call starts everything.
  void apply(const config::Config& config);

  // LOGOUT on every session; `done` runs when all are closed.
  void stop(std::function<void()> done);

  // The IMAP side of `address` (any case). False when the mailbox has no pool.
  bool status(std::string_view address, MailboxImapStatus& out) const;
  // The pool of `address` (any case), or null.
  [[nodiscard]] MailboxPool* pool(std::string_view address) const;
  [[nodiscard]] std::size_t poolCount() const { return pools_.size(); }

private:
  PoolSettings settingsFor(const config::Config& config, const config::Tenant& tenant,
                           const config::Mailbox& mailbox);
  Result<net::TlsContextPtr> tlsContext(const config::Upstream& upstream);

  net::Loop& loop_;
  ImapServiceOptions options_;
  // The budgets before the pools: pools use them until they are destroyed.
  std::map<std::string, std::unique_ptr<SessionBudget>, std::less<>> budgets_; // by tenant id
  SessionBudget connect_gate_;
  std::map<std::string, std::unique_ptr<MailboxPool>, std::less<>> pools_; // by lower-case address
  std::map<std::tuple<std::string, bool, std::vector<std::string>>, net::TlsContextPtr> tls_;
  std::vector<std::unique_ptr<MailboxPool>> stopping_;
};

} // namespace mailgate::imap

#include "imap/imap_service.h"

#include "config/values.h"
#include "net/loop.h"

#include <utility>

namespace mailgate::imap {

ImapService::ImapService(net::Loop& loop, ImapServiceOptions options)
    : loop_(loop), options_(std::move(options)), connect_gate_(options_.max_connecting) {}

ImapService::~ImapService() = default;

Result<net::TlsContextPtr> ImapService::tlsContext(const config::Upstream& upstream) {
  auto key = std::make_tuple(upstream.ca_file, upstream.allow_self_signed, upstream.pins);
  if (auto it = tls_.find(key); it != tls_.end()) {
    return it->second;
  }
  net::TlsClientOptions tls;
  tls.ca_file = upstream.ca_file;
  tls.allow_self_signed = upstream.allow_self_signed;
  tls.pins = upstream.pins;
  auto context = net::TlsContext::client(tls);
  if (!context) {
    return std::unexpected(context.error());
  }
  tls_.emplace(std::move(key), *context);
  return *context;
}

PoolSettings ImapService::settingsFor(const config::Config& config, const config::Tenant& tenant,
                                      const config::Mailbox& mailbox) {
  PoolSettings settings;
  settings.tenant = tenant.id;
  settings.address = config::lowerAscii(mailbox.address);
  settings.max_sessions = mailbox.imap_max_sessions;
  settings.sent_folder = mailbox.imap_sent_folder;
  settings.reconnect = options_.reconnect;
  // Bad credentials: the delivery side's login retry policy, five times slower (docs/imap.md).
  settings.login_retry_initial = std::chrono::duration_cast<std::chrono::milliseconds>(
                                     config.microsoft365.login_retry_initial) *
                                 5;
  settings.login_retry_max =
      std::chrono::duration_cast<std::chrono::milliseconds>(config.microsoft365.login_retry_max) *
      2;
  auto& s = settings.session;
  s.mailbox = settings.address;
  s.endpoint = net::Endpoint{mailbox.imap.host, mailbox.imap.port};
  s.tls = mailbox.imap.tls;
  s.bind_address = config.egress.bind_address;
  s.username = mailbox.address;
  s.client_version = options_.version;
  s.timeouts = options_.timeouts;
  if (s.tls != config::TlsMode::kNone) {
    auto context = tlsContext(mailbox.imap);
    if (!context) {
      settings.setup = context.error();
    } else {
      s.tls_context = *context;
    }
  }
  if (mailbox.auth && mailbox.auth->method == config::AuthMethod::kOauth2) {
    s.auth = AuthKind::kXOAuth2;
    if (options_.tokens) {
      s.tokens = options_.tokens(tenant, mailbox);
    }
  } else if (mailbox.auth && mailbox.auth->password) {
    s.auth = AuthKind::kPassword;
    s.password = *mailbox.auth->password;
  }
  return settings;
}

void ImapService::apply(const config::Config& config) {
  std::map<std::string, std::unique_ptr<MailboxPool>, std::less<>> next;
  for (const auto& tenant : config.tenants) {
    auto& budget = budgets_[tenant.id];
    if (!budget) {
      budget = std::make_unique<SessionBudget>(tenant.imap_max_sessions);
    } else {
      budget->setCap(tenant.imap_max_sessions);
    }
    for (const auto& mailbox : tenant.mailboxes) {
      if (mailbox.access == config::Access::kGraph || !mailbox.auth ||
          mailbox.imap_max_sessions == 0) {
        continue;
      }
      auto settings = settingsFor(config, tenant, mailbox);
      auto key = settings.address;
      if (auto it = pools_.find(key);
          it != pools_.end() && it->second->settings().tenant == tenant.id) {
        auto pool = std::move(it->second);
        pools_.erase(it);
        pool->reconfigure(std::move(settings));
        next.emplace(key, std::move(pool));
        continue;
      }
      auto pool =
          std::make_unique<MailboxPool>(loop_, std::move(settings), budget.get(), &connect_gate_);
      pool->start();
      next.emplace(key, std::move(pool));
    }
  }
  // What is left lost its IMAP side: log out, then free.
  for (auto& [address, pool] : pools_) {
    MailboxPool* raw = pool.get();
    stopping_.push_back(std::move(pool));
    raw->stop(
        [this, raw] { std::erase_if(stopping_, [raw](const auto& p) { return p.get() == raw; }); });
  }
  pools_ = std::move(next);
}

void ImapService::stop(std::function<void()> done) {
  auto remaining = std::make_shared<std::size_t>(pools_.size());
  auto finish = std::make_shared<std::function<void()>>(std::move(done));
  if (*remaining == 0) {
    loop_.defer([finish] { (*finish)(); });
    return;
  }
  for (auto& [address, pool] : pools_) {
    pool->stop([remaining, finish] {
      if (--*remaining == 0) {
        (*finish)();
      }
    });
  }
}

bool ImapService::status(std::string_view address, MailboxImapStatus& out) const {
  auto* p = pool(address);
  if (!p) {
    return false;
  }
  p->statusInto(out);
  return true;
}

MailboxPool* ImapService::pool(std::string_view address) const {
  auto it = pools_.find(address);
  if (it == pools_.end() && config::hasUpperAscii(address)) {
    it = pools_.find(config::lowerAscii(address)); // the API asks with the address as configured
  }
  return it == pools_.end() ? nullptr : it->second.get();
}

} // namespace mailgate::imap

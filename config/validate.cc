#include "config/validate.h"

#include <algorithm>
#include <fmt/format.h>
#include <map>
#include <set>

namespace mailgate::config {
namespace {

bool isIdentifier(std::string_view s, std::string_view extra) {
  return !s.empty() && s.size() <= 64 && std::ranges::all_of(s, [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           extra.find(c) != std::string_view::npos;
  });
}

bool isEventName(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::ranges::all_of(s, [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_';
  });
}

class Validator {
public:
  explicit Validator(const Config& c) : c_(c) {}

  std::vector<Diagnostic> run() {
    node();
    smtpListener();
    tokens();
    storage();
    upstream("microsoft365.smtp", c_.microsoft365.smtp);
    upstream("microsoft365.imap", c_.microsoft365.imap);
    limits("microsoft365.limits", c_.microsoft365.limits);
    relays();
    webhooks();
    tenants();
    mailboxes();
    loginRetry();
    queue();
    return std::move(out_);
  }

private:
  void error(std::string path, std::string reason) {
    out_.push_back(c_.source.diagnose(std::move(path), std::move(reason)));
  }

  // " (first at line N)" when the first occurrence has a position.
  [[nodiscard]] std::string firstAt(std::string_view path) const {
    const Position p = c_.source.find(path);
    return p.line > 0 ? fmt::format(" (first at line {})", p.line)
                      : std::string(" (first at ") + std::string(path) + ")";
  }

  void node() {
    if (!isIdentifier(c_.node.id, ".-_")) {
      error("node.id", "must be 1..64 letters, digits, '.', '-' or '_'");
    }
    if (c_.node.data_dir.empty()) {
      error("node.data_dir", "must not be empty");
    }
  }

  void smtpListener() {
    const SmtpListener& s = c_.listeners.smtp;
    if (s.require_tls && !s.tls) {
      error("listeners.smtp.require_tls",
            "needs listeners.smtp.tls (without a certificate STARTTLS cannot be offered)");
    }
    if (!s.trusted_networks.empty() && s.trusted_as.empty()) {
      error("listeners.smtp.trusted_networks",
            "needs trusted_as: the token whose roles and tenants trusted connections get");
    }
    if (!s.trusted_as.empty() && c_.findToken(s.trusted_as) == nullptr) {
      error("listeners.smtp.trusted_as",
            fmt::format("names no token in listeners.api.tokens ('{}')", s.trusted_as));
    }
    const Endpoint& api = c_.listeners.api.address;
    if (s.address.port != 0 && s.address == api) {
      error("listeners.api.address", "is the same as listeners.smtp.address");
    }
  }

  // A list of tenant ids where "*" means all; used by tokens and webhooks.
  void tenantScope(const std::string& path, const std::vector<std::string>& ids) {
    if (ids.empty()) {
      error(path, "must not be empty (leave it out, or write [\"*\"], for every tenant)");
      return;
    }
    const bool star = std::ranges::find(ids, "*") != ids.end();
    if (star && ids.size() > 1) {
      error(path, "'*' (every tenant) must stand alone");
      return;
    }
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] != "*" && c_.findTenant(ids[i]) == nullptr) {
        error(fmt::format("{}[{}]", path, i),
              fmt::format("names no tenant in tenants[] ('{}')", ids[i]));
      }
    }
  }

  void tokens() {
    std::map<std::string, std::size_t, std::less<>> names;
    const auto& tokens = c_.listeners.api.tokens;
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      const ApiToken& t = tokens[i];
      const std::string path = fmt::format("listeners.api.tokens[{}]", i);
      if (t.name.empty()) {
        error(path + ".name", "is required");
      } else if (!isIdentifier(t.name, ".-_@")) {
        error(path + ".name", "must be 1..64 letters, digits, '.', '-', '_' or '@'");
      } else if (auto [it, fresh] = names.emplace(t.name, i); !fresh) {
        error(path + ".name",
              fmt::format("duplicate token name '{}'{}", t.name,
                          firstAt(fmt::format("listeners.api.tokens[{}].name", it->second))));
      }
      if (t.roles.empty()) {
        error(path + ".roles", "must list at least one of admin, operator, submitter, "
                               "connector, reader");
      }
      tenantScope(path + ".tenants", t.tenants);
      // Two tokens with one secret: a bearer could not tell which token it presents.
      for (std::size_t j = 0; j < i; ++j) {
        if (!t.secret.empty() && t.secret == tokens[j].secret) {
          error(path, fmt::format("has the same secret as token '{}'; give each token its own",
                                  tokens[j].name));
          break;
        }
      }
    }
  }

  void storage() {
    if (c_.storage.backend == StorageBackend::kRedis && !c_.storage.redis_url) {
      error("storage.redis.url", "is required when storage.backend is redis");
    }
  }

  void upstream(const std::string& path, const Upstream& u) {
    if (u.tls == TlsMode::kNone && (u.allow_self_signed || !u.ca_file.empty() || !u.pins.empty())) {
      error(path + ".tls", "tls: none cannot be combined with allow_self_signed, ca_file or pins");
    }
  }

  void limits(const std::string& path, const Microsoft365Limits& l) {
    if (l.recipients_per_message > l.recipients_per_day) {
      error(path + ".recipients_per_message",
            fmt::format("is larger than recipients_per_day ({})", l.recipients_per_day));
    }
  }

  void relays() {
    for (const auto& [name, relay] : c_.relays) {
      const std::string path = "relays." + name;
      upstream(path, relay.server);
      if (relay.auth && relay.auth->username.empty()) {
        error(path + ".auth.username", "must not be empty");
      }
    }
  }

  void webhooks() {
    for (std::size_t i = 0; i < c_.webhooks.size(); ++i) {
      const Webhook& w = c_.webhooks[i];
      const std::string path = fmt::format("webhooks[{}]", i);
      if (w.events.empty()) {
        error(path + ".events", "must not be empty (leave it out, or write [\"*\"], for all)");
      } else if (std::ranges::find(w.events, "*") != w.events.end()) {
        if (w.events.size() > 1) {
          error(path + ".events", "'*' (every event) must stand alone");
        }
      } else {
        for (std::size_t k = 0; k < w.events.size(); ++k) {
          if (!isEventName(w.events[k])) {
            error(fmt::format("{}.events[{}]", path, k),
                  "event types are lower-case words joined by '.', e.g. message.received");
          }
        }
      }
      tenantScope(path + ".tenants", w.tenants);
    }
  }

  void tenants() {
    std::map<std::string, std::size_t, std::less<>> ids;
    std::map<std::string, std::string, std::less<>> bccs;
    for (std::size_t i = 0; i < c_.tenants.size(); ++i) {
      const Tenant& t = c_.tenants[i];
      const std::string path = fmt::format("tenants[{}]", i);
      if (t.id.empty()) {
        error(path + ".id", "is required");
      } else if (!isIdentifier(t.id, "-_")) {
        error(path + ".id", "must be 1..64 letters, digits, '-' or '_'");
      } else if (auto [it, fresh] = ids.emplace(t.id, i); !fresh) {
        error(path + ".id", fmt::format("duplicate tenant id '{}'{}", t.id,
                                        firstAt(fmt::format("tenants[{}].id", it->second))));
      }
      if (t.oauth) {
        if (t.oauth->tenant_id.empty()) {
          error(path + ".oauth.tenant_id", "must not be empty");
        }
        if (t.oauth->client_id.empty()) {
          error(path + ".oauth.client_id", "must not be empty");
        }
      }
      limits(path + ".limits", t.limits);
      std::set<std::string, std::less<>> chain;
      for (std::size_t k = 0; k < t.fallback.size(); ++k) {
        const std::string& name = t.fallback[k];
        const std::string at = fmt::format("{}.fallback[{}]", path, k);
        if (c_.findRelay(name) == nullptr) {
          error(at, fmt::format("names no relay under relays: ('{}')", name));
        } else if (!chain.insert(name).second) {
          error(at, fmt::format("relay '{}' is already in the chain", name));
        }
      }
      if (t.on_disconnect == OnDisconnect::kFallback && t.fallback.empty()) {
        error(path + ".on_disconnect", "fallback needs at least one relay in fallback[]");
      }
      if (!t.bcc_address.empty()) {
        const std::string at = path + ".bcc_address";
        if (!isMailAddress(t.bcc_address)) {
          error(at, fmt::format("'{}' is not a mail address", t.bcc_address));
        } else if (auto [it, fresh] = bccs.emplace(lowerAscii(t.bcc_address), at); !fresh) {
          error(at,
                fmt::format("'{}' is already the bcc_address of {}", t.bcc_address, it->second));
        }
      }
    }
  }

  void mailbox(const std::string& path, const Tenant& t, const Mailbox& mb) {
    if (mb.access == Access::kGraph) {
      if (!mb.aliases.empty()) {
        error(path + ".aliases", "aliases are not available with access: graph");
      }
      if (mb.sync == SyncMode::kTwoWay) {
        error(path + ".sync", "access: graph syncs one way (one_way or none)");
      }
      if (mb.auth && mb.auth->method != AuthMethod::kOauth2) {
        error(path + ".auth.method", "access: graph needs method oauth2");
      }
    }
    if (mb.auth) {
      const MailboxAuth& a = *mb.auth;
      if (a.method == AuthMethod::kAppPassword) {
        if (!a.password) {
          error(path + ".auth.password", "is required for method app_password");
        }
        if (a.refresh_token) {
          error(path + ".auth.refresh_token", "belongs to method oauth2, not app_password");
        }
      } else {
        if (!a.refresh_token) {
          error(path + ".auth.refresh_token", "is required for method oauth2");
        }
        if (a.password) {
          error(path + ".auth.password", "belongs to method app_password, not oauth2");
        }
        if (!t.oauth) {
          error(path + ".auth.method",
                "oauth2 needs the tenant's oauth {tenant_id, client_id, client_secret}");
        }
      }
    }
    if (mb.access == Access::kCustom) {
      if (mb.smtp.host.empty()) {
        error(path + ".smtp.host", "is required for access: custom");
      }
      if (mb.imap.host.empty()) {
        error(path + ".imap.host", "is required for access: custom");
      }
    }
    if (mb.access != Access::kGraph) {
      upstream(path + ".smtp", mb.smtp);
      upstream(path + ".imap", mb.imap);
    }
  }

  // Addresses are global: the gateway resolves a sender to one mailbox across all tenants.
  void mailboxes() {
    std::map<std::string, std::string, std::less<>> owners; // lower-case address -> key path
    for (std::size_t i = 0; i < c_.tenants.size(); ++i) {
      const Tenant& t = c_.tenants[i];
      for (std::size_t j = 0; j < t.mailboxes.size(); ++j) {
        const Mailbox& mb = t.mailboxes[j];
        const std::string path = fmt::format("tenants[{}].mailboxes[{}]", i, j);
        mailbox(path, t, mb);
        if (mb.address.empty()) {
          error(path + ".address", "is required");
        } else if (!isMailAddress(mb.address)) {
          error(path + ".address", fmt::format("'{}' is not a mail address", mb.address));
        } else if (auto [it, fresh] = owners.emplace(lowerAscii(mb.address), path); !fresh) {
          error(path + ".address",
                fmt::format("duplicate mailbox address '{}' (also {})", mb.address, it->second));
        }
      }
    }
    for (std::size_t i = 0; i < c_.tenants.size(); ++i) {
      const Tenant& t = c_.tenants[i];
      for (std::size_t j = 0; j < t.mailboxes.size(); ++j) {
        const Mailbox& mb = t.mailboxes[j];
        const std::string path = fmt::format("tenants[{}].mailboxes[{}]", i, j);
        for (std::size_t k = 0; k < mb.aliases.size(); ++k) {
          const std::string& alias = mb.aliases[k];
          const std::string at = fmt::format("{}.aliases[{}]", path, k);
          if (!isMailAddress(alias)) {
            error(at, fmt::format("'{}' is not a mail address", alias));
            continue;
          }
          const std::string key = lowerAscii(alias);
          if (key == lowerAscii(mb.address)) {
            error(at, "repeats the mailbox's own address");
            continue;
          }
          if (auto [it, fresh] = owners.emplace(key, path); !fresh) {
            if (it->second == path) {
              error(at, fmt::format("alias '{}' is listed twice", alias));
            } else {
              error(at, fmt::format("alias '{}' is already claimed by {}", alias, it->second));
            }
          }
        }
      }
    }
    for (std::size_t i = 0; i < c_.tenants.size(); ++i) {
      const Tenant& t = c_.tenants[i];
      if (auto it = owners.find(lowerAscii(t.bcc_address));
          !t.bcc_address.empty() && it != owners.end()) {
        error(fmt::format("tenants[{}].bcc_address", i),
              fmt::format("'{}' is also an address of {}", t.bcc_address, it->second));
      }
    }
  }

  void loginRetry() {
    const Microsoft365& m = c_.microsoft365;
    if (m.login_retry_max < m.login_retry_initial) {
      error("microsoft365.login_retry_max", fmt::format("must be at least login_retry_initial ({})",
                                                        formatDuration(m.login_retry_initial)));
    }
  }

  void queue() {
    const QueueConfig& q = c_.queue;
    if (q.retry_max < q.retry_initial) {
      error("queue.retry_max",
            fmt::format("must be at least retry_initial ({})", formatDuration(q.retry_initial)));
    }
    if (q.lifetime < q.retry_initial) {
      error("queue.lifetime",
            fmt::format("must be at least retry_initial ({})", formatDuration(q.retry_initial)));
    }
  }

  const Config& c_;
  std::vector<Diagnostic> out_;
};

} // namespace

std::vector<Diagnostic> validate(const Config& config) {
  return Validator(config).run();
}

} // namespace mailgate::config

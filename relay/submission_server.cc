#include "relay/submission_server.h"

#include "base/log.h"
#include "net/listener.h"
#include "net/loop.h"
#include "net/tls_context.h"
#include "relay/submission_session.h"

#include <algorithm>
#include <fmt/format.h>
#include <unistd.h>
#include <unordered_map>

namespace mailgate::relay {

struct SubmissionServer::State : std::enable_shared_from_this<State> {
  std::shared_ptr<SubmissionContext> ctx;
  net::ListenerPtr listener;
  std::unordered_map<uint64_t, SubmissionSessionPtr> sessions;
  bool draining = false;
  std::function<void()> drained;

  void accept(net::ConnectionPtr conn);
  void finished(uint64_t id);
  void maybeDrained();
};

namespace {

std::string localHostname(const config::Config& config) {
  if (!config.node.id.empty()) {
    return config.node.id;
  }
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) == 0 && buf[0] != '\0') {
    return buf;
  }
  return "localhost";
}

} // namespace

Result<std::unique_ptr<SubmissionServer>>
SubmissionServer::create(net::Loop& loop, const config::Config& config, QueueStore& store,
                         AcceptedFn accepted, BccIngest* bcc) {
  auto state = std::make_shared<State>();
  state->ctx = std::make_shared<SubmissionContext>();
  SubmissionContext& ctx = *state->ctx;
  ctx.loop = &loop;
  ctx.store = &store;
  ctx.bcc = bcc;
  ctx.config = &config;
  ctx.hostname = localHostname(config);
  ctx.accepted = std::move(accepted);
  ctx.log = logger("smtp");
  ctx.directory = std::make_shared<policy::SenderDirectory>(config);

  const auto& l = config.listeners.smtp;
  if (l.tls) {
    auto tls = net::TlsContext::server({l.tls->cert, l.tls->key, {}});
    if (!tls) {
      return std::unexpected(tls.error());
    }
    ctx.tls = std::move(*tls);
  }

  std::weak_ptr<State> weak = state;
  auto listener = net::Listener::listen(loop, net::Endpoint{l.address.host, l.address.port},
                                        [weak](net::ConnectionPtr conn) {
                                          if (auto s = weak.lock()) {
                                            s->accept(std::move(conn));
                                          }
                                        });
  if (!listener) {
    return std::unexpected(listener.error());
  }
  state->listener = std::move(*listener);
  state->listener->onError(
      [log = ctx.log](const Error& e) { log->warn("accept: {}", e.describe()); });
  ctx.log->info("listening on {}:{}{}", l.address.host, state->listener->port(),
                ctx.tls ? " (STARTTLS offered)" : "");
  return std::make_unique<SubmissionServer>(PrivateTag{}, std::move(state));
}

SubmissionServer::SubmissionServer(PrivateTag, std::shared_ptr<State> state)
    : state_(std::move(state)) {}

namespace {

// "added a, b; removed c; changed d" over two token lists (names only: never a secret).
std::string tokenChanges(const std::vector<config::ApiToken>& before,
                         const std::vector<config::ApiToken>& after) {
  std::vector<std::string> added;
  std::vector<std::string> removed;
  std::vector<std::string> changed;
  for (const auto& t : after) {
    auto it = std::find_if(before.begin(), before.end(),
                           [&t](const config::ApiToken& b) { return b.name == t.name; });
    if (it == before.end()) {
      added.push_back(t.name);
    } else if (it->secret.reveal() != t.secret.reveal() || it->roles != t.roles ||
               it->tenants != t.tenants) {
      changed.push_back(t.name);
    }
  }
  for (const auto& b : before) {
    if (std::none_of(after.begin(), after.end(),
                     [&b](const config::ApiToken& t) { return t.name == b.name; })) {
      removed.push_back(b.name);
    }
  }
  std::string out;
  const auto part = [&out](std::string_view what, const std::vector<std::string>& names) {
    if (names.empty()) {
      return;
    }
    out += out.empty() ? "" : "; ";
    out += what;
    for (size_t i = 0; i < names.size(); ++i) {
      out += (i == 0 ? " " : ", ") + names[i];
    }
  };
  part("added", added);
  part("removed", removed);
  part("changed", changed);
  return out;
}

size_t directorySize(const config::Config& c) {
  size_t n = 0;
  for (const auto& t : c.tenants) {
    for (const auto& m : t.mailboxes) {
      n += 1 + m.aliases.size();
    }
  }
  return n;
}

// Whether who may send as whom differs: tenants, their mailboxes and aliases, in order.
bool sameDirectory(const config::Config& a, const config::Config& b) {
  return std::equal(a.tenants.begin(), a.tenants.end(), b.tenants.begin(), b.tenants.end(),
                    [](const config::Tenant& x, const config::Tenant& y) {
                      return x.id == y.id &&
                             std::equal(x.mailboxes.begin(), x.mailboxes.end(), y.mailboxes.begin(),
                                        y.mailboxes.end(),
                                        [](const config::Mailbox& m, const config::Mailbox& n) {
                                          return m.address == n.address && m.aliases == n.aliases;
                                        });
                    });
}

} // namespace

Result<ReloadReport> SubmissionServer::reconfigure(std::shared_ptr<const config::Config> next) {
  if (!next) {
    return fail("config.reload", "no configuration given");
  }
  SubmissionContext& ctx = *state_->ctx;
  const config::Config& old = *ctx.config;
  const auto& o = old.listeners.smtp;
  const auto& n = next->listeners.smtp;
  ReloadReport report;
  const auto say = [&report](std::string line) { report.applied.push_back(std::move(line)); };

  if (!(o.address.host == n.address.host && o.address.port == n.address.port)) {
    report.restart_required.emplace_back("listeners.smtp.address");
  }
  const bool same_tls = o.tls.has_value() == n.tls.has_value() &&
                        (!o.tls || (o.tls->cert == n.tls->cert && o.tls->key == n.tls->key));
  if (!same_tls) {
    report.restart_required.emplace_back("listeners.smtp.tls");
  }
  if (auto t = tokenChanges(old.listeners.api.tokens, next->listeners.api.tokens); !t.empty()) {
    say("listeners.api.tokens (SMTP AUTH): " + t);
  }
  if (o.trusted_networks != n.trusted_networks || o.trusted_as != n.trusted_as) {
    say("listeners.smtp.trusted_networks/trusted_as changed: new connections get the new trust");
  }
  if (o.max_message_bytes != n.max_message_bytes || o.max_recipients != n.max_recipients ||
      o.max_line_length != n.max_line_length || o.max_auth_failures != n.max_auth_failures ||
      o.require_tls != n.require_tls) {
    say("listeners.smtp max_message_bytes/max_recipients/max_line_length/max_auth_failures/"
        "require_tls: apply to connections accepted from now on");
  }
  if (o.max_connections != n.max_connections) {
    say(fmt::format("listeners.smtp.max_connections is {}", n.max_connections));
  }
  if (o.idle_timeout != n.idle_timeout || o.command_timeout != n.command_timeout ||
      o.data_timeout != n.data_timeout) {
    say("listeners.smtp timeouts changed: apply from each session's next wait");
  }
  if (old.queue.lifetime != next->queue.lifetime) {
    say("queue.lifetime changed: applies to messages accepted from now on");
  }
  if (old.node.id != next->node.id) {
    say("node.id changed: new sessions greet as " + localHostname(*next));
  }
  // Rebuilt in any case: its entries point into the configuration they were built from.
  auto directory = std::make_shared<policy::SenderDirectory>(*next);
  if (!sameDirectory(old, *next)) {
    say(fmt::format("sender directory: {} address(es) of {} tenant(s) (was {} of {})",
                    directorySize(*next), next->tenants.size(), directorySize(old),
                    old.tenants.size()));
  }

  const bool same_bcc =
      std::equal(old.tenants.begin(), old.tenants.end(), next->tenants.begin(), next->tenants.end(),
                 [](const config::Tenant& x, const config::Tenant& y) {
                   return x.id == y.id && x.bcc_address == y.bcc_address;
                 });
  if (!same_bcc) {
    say("tenants[].bcc_address: BCC ingestion applies the new addresses from the next message");
  }

  // Swap. The previous configuration and directory stay alive until this returns; sessions keep
  // no pointer into them across a loop turn.
  const std::shared_ptr<const config::Config> previous = std::move(ctx.config_owner);
  ctx.config_owner = std::move(next);
  ctx.config = ctx.config_owner.get();
  ctx.directory = std::move(directory);
  ctx.hostname = localHostname(*ctx.config);

  size_t revoked = 0;
  for (auto& [id, session] : state_->sessions) {
    revoked += session->revalidate() ? 0 : 1;
  }
  if (revoked > 0) {
    say(fmt::format("{} session(s) whose credentials are no longer accepted close once idle",
                    revoked));
  }
  for (const auto& line : report.applied) {
    ctx.log->info("reload: {}", line);
  }
  for (const auto& key : report.restart_required) {
    ctx.log->warn("reload: {} changed; it applies at the next start (restart required)", key);
  }
  return report;
}

SubmissionServer::~SubmissionServer() {
  // Sessions go first: their destructors close their connections without callbacks.
  state_->sessions.clear();
  state_->listener.reset();
}

uint16_t SubmissionServer::port() const {
  return state_->listener->port();
}

size_t SubmissionServer::sessionCount() const {
  return state_->sessions.size();
}

void SubmissionServer::drain(std::function<void()> done) {
  state_->draining = true;
  state_->drained = std::move(done);
  state_->listener->stop();
  for (auto& [id, session] : state_->sessions) {
    session->shutdown();
  }
  state_->maybeDrained();
}

void SubmissionServer::State::accept(net::ConnectionPtr conn) {
  const auto& l = ctx->config->listeners.smtp;
  if (draining || sessions.size() >= l.max_connections) {
    // Said before any command, as RFC 5321 section 3.1 allows; the client retries later.
    ctx->log->warn("refusing connection from {}: {}", conn->peerAddress(),
                   draining ? "shutting down" : "connection limit reached");
    conn->write(draining
                    ? "421 4.3.2 " + ctx->hostname + " Service shutting down, try again later\r\n"
                    : "421 4.7.0 " + ctx->hostname + " Too many connections, try again later\r\n");
    conn->close(); // goes on in the background after `conn` is dropped
    return;
  }
  const uint64_t id = conn->id();
  std::weak_ptr<State> weak = weak_from_this();
  auto session = std::make_shared<SubmissionSession>(ctx, std::move(conn), [weak](uint64_t id) {
    if (auto s = weak.lock()) {
      s->finished(id);
    }
  });
  sessions.emplace(id, session);
  session->start();
}

void SubmissionServer::State::finished(uint64_t id) {
  sessions.erase(id);
  maybeDrained();
}

void SubmissionServer::State::maybeDrained() {
  if (!draining || !sessions.empty() || !drained) {
    return;
  }
  ctx->loop->defer(std::exchange(drained, nullptr));
}

} // namespace mailgate::relay

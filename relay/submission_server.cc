#include "relay/submission_server.h"

#include "base/log.h"
#include "net/listener.h"
#include "net/loop.h"
#include "net/tls_context.h"
#include "relay/submission_session.h"

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

Result<std::unique_ptr<SubmissionServer>> SubmissionServer::create(net::Loop& loop,
                                                                   const config::Config& config,
                                                                   QueueStore& store,
                                                                   AcceptedFn accepted) {
  auto state = std::make_shared<State>();
  state->ctx = std::make_shared<SubmissionContext>();
  SubmissionContext& ctx = *state->ctx;
  ctx.loop = &loop;
  ctx.store = &store;
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

#include "gateway/api/api_server.h"

#include "base/log.h"
#include "net/connection.h"
#include "net/listener.h"
#include "net/loop.h"
#include "net/timer.h"
#include "net/tls_context.h"

#include <unordered_map>

namespace mailgate::api {

namespace {

// One accepted connection: its socket, its HTTP session and its idle timer.
struct ApiConnection final : net::Connection::Handler, std::enable_shared_from_this<ApiConnection> {
  ApiConnection(ApiServer::State& s, uint64_t i, net::ConnectionPtr c) : server(&s), id(i) {
    conn = std::move(c);
  }

  ApiServer::State* server; // outlives every connection (the state closes them all first)
  uint64_t id;
  net::ConnectionPtr conn;
  std::unique_ptr<HttpServerSession> session;
  net::TimerPtr idle;
  uint64_t last_activity_ms = 0;
  bool flush_scheduled = false;
  bool read_paused = false;
  bool closing = false;

  void start();
  void onRead(std::span<const char> data) override;
  void onClose(const Error* reason) override;
  void onWriteDrained() override { flush(); }
  void scheduleFlush();
  void flush();
  void armIdle();
  void shutdown();
};

} // namespace

struct ApiServer::State : std::enable_shared_from_this<ApiServer::State> {
  net::Loop* loop = nullptr;
  ApiServerOptions options;
  AsyncHttpHandler handler;
  net::TlsContextPtr tls;
  net::ListenerPtr listener;
  std::unordered_map<uint64_t, std::shared_ptr<ApiConnection>> connections;
  std::shared_ptr<spdlog::logger> log = logger("api");
  uint64_t next_id = 0;
  uint64_t accepted = 0;
  uint64_t refused = 0;
  bool draining = false;
  std::vector<std::function<void()>> drained;

  ~State() {
    // Sessions first (their exchanges are detached), then sockets.
    auto all = std::move(connections);
    connections.clear();
    for (auto& [id, c] : all) {
      c->session.reset();
      c->conn->setHandler(nullptr);
    }
  }

  void accept(net::ConnectionPtr conn) {
    if (draining) {
      conn->abort();
      return;
    }
    if (connections.size() >= options.max_connections) {
      ++refused;
      log->warn("refusing connection from {}: {} connections open (the limit)", conn->peerAddress(),
                connections.size());
      conn->abort();
      return;
    }
    ++accepted;
    const uint64_t id = ++next_id;
    auto c = std::make_shared<ApiConnection>(*this, id, std::move(conn));
    connections.emplace(id, c);
    c->start();
  }

  void remove(uint64_t id) {
    const auto it = connections.find(id);
    if (it == connections.end()) {
      return;
    }
    // Destroyed in a later turn: this runs inside the connection's own callback.
    loop->defer([keep = std::move(it->second)] {});
    connections.erase(it);
    maybeDrained();
  }

  void maybeDrained() {
    if (!draining || !connections.empty() || drained.empty()) {
      return;
    }
    auto fns = std::move(drained);
    drained.clear();
    loop->defer([fns = std::move(fns)] {
      for (const auto& fn : fns) {
        fn();
      }
    });
  }
};

namespace {

void ApiConnection::start() {
  HttpServerOptions http = server->options.http;
  http.tls_h2 = conn->alpnSelected() == "h2";
  session = std::make_unique<HttpServerSession>(std::move(http), server->handler);
  std::weak_ptr<ApiConnection> weak = weak_from_this();
  session->setWakeup([weak] {
    if (auto self = weak.lock()) {
      self->scheduleFlush();
    }
  });
  idle = net::Timer::create(*server->loop);
  last_activity_ms = server->loop->nowMs();
  armIdle();
  conn->setHandler(this);
  if (server->draining) {
    shutdown();
  }
  // HTTP/2 over TLS: our SETTINGS go out at once.
  flush();
}

void ApiConnection::armIdle() {
  const uint64_t now = server->loop->nowMs();
  const auto timeout = static_cast<uint64_t>(server->options.idle_timeout.count());
  const uint64_t due = last_activity_ms + timeout;
  const uint64_t wait = due > now ? due - now : 0;
  std::weak_ptr<ApiConnection> weak = weak_from_this();
  idle->start(std::chrono::milliseconds(wait), [weak] {
    auto self = weak.lock();
    if (!self) {
      return;
    }
    const uint64_t since = self->server->loop->nowMs() - self->last_activity_ms;
    if (since < static_cast<uint64_t>(self->server->options.idle_timeout.count())) {
      self->armIdle(); // there was activity meanwhile
      return;
    }
    self->server->log->debug("[a{}] idle for {} ms: closing", self->id, since);
    self->closing = true;
    self->conn->close();
  });
}

void ApiConnection::onRead(std::span<const char> data) {
  last_activity_ms = server->loop->nowMs();
  session->receive(data);
  flush();
}

void ApiConnection::scheduleFlush() {
  if (flush_scheduled) {
    return;
  }
  flush_scheduled = true;
  std::weak_ptr<ApiConnection> weak = weak_from_this();
  server->loop->beforePoll([weak] {
    if (auto self = weak.lock()) {
      self->flush_scheduled = false;
      self->flush();
    }
  });
}

void ApiConnection::flush() {
  if (closing || session == nullptr) {
    return;
  }
  // Under the high-water mark only: beyond it the output waits in the session (where streaming
  // writers see it) and we go on in onWriteDrained().
  if (conn->pendingWriteBytes() <= server->options.write_high_water) {
    std::string out = session->takeOutput();
    if (!out.empty()) {
      last_activity_ms = server->loop->nowMs();
      conn->write(out);
    }
  }
  if (session->wantsClose()) {
    closing = true;
    conn->close(); // flushes what was written first
    return;
  }
  const bool want =
      session->wantsInput() && conn->pendingWriteBytes() <= server->options.write_high_water;
  if (want && read_paused) {
    read_paused = false;
    conn->resumeRead();
  } else if (!want && !read_paused) {
    read_paused = true;
    conn->pauseRead();
  }
}

void ApiConnection::shutdown() {
  session->shutdown();
  scheduleFlush();
}

void ApiConnection::onClose(const Error* reason) {
  if (reason != nullptr) {
    server->log->debug("[a{}] closed: {}", id, reason->describe());
  }
  idle.reset();
  // The session goes now, so that exchanges still held by handlers see the client is gone.
  session.reset();
  server->remove(id);
}

} // namespace

ApiServer::ApiServer(PrivateTag, std::shared_ptr<State> state) : state_(std::move(state)) {}

ApiServer::~ApiServer() = default;

Result<std::unique_ptr<ApiServer>> ApiServer::create(net::Loop& loop, ApiServerOptions options,
                                                     AsyncHttpHandler handler) {
  auto state = std::make_shared<State>();
  state->loop = &loop;
  state->options = std::move(options);
  state->handler = std::move(handler);
  if (!state->options.tls_cert.empty()) {
    auto tls = net::TlsContext::server(
        {state->options.tls_cert, state->options.tls_key, {"h2", "http/1.1"}});
    if (!tls) {
      return std::unexpected(tls.error());
    }
    state->tls = std::move(*tls);
  }
  std::weak_ptr<State> weak = state;
  auto listener =
      net::Listener::listen(loop, state->options.address, [weak](net::ConnectionPtr conn) {
        if (auto s = weak.lock()) {
          s->accept(std::move(conn));
        }
      });
  if (!listener) {
    return std::unexpected(listener.error());
  }
  state->listener = std::move(*listener);
  if (state->tls) {
    state->listener->setTls(state->tls);
  }
  state->listener->onError(
      [log = state->log](const Error& e) { log->warn("accept: {}", e.describe()); });
  state->log->info("control API on {}:{} ({})", state->options.address.host,
                   state->listener->port(),
                   state->tls ? "TLS, ALPN h2 and http/1.1" : "h2c prior knowledge and HTTP/1.1");
  return std::make_unique<ApiServer>(PrivateTag{}, std::move(state));
}

uint16_t ApiServer::port() const {
  return state_->listener ? state_->listener->port() : 0;
}

ApiServerStats ApiServer::stats() const {
  ApiServerStats s;
  s.accepted = state_->accepted;
  s.refused = state_->refused;
  s.open = state_->connections.size();
  for (const auto& [id, c] : state_->connections) {
    if (c->session == nullptr) {
      continue;
    }
    switch (c->session->protocol()) {
    case HttpServerSession::Protocol::kHttp1:
      ++s.http1;
      break;
    case HttpServerSession::Protocol::kHttp2:
      ++s.http2;
      break;
    case HttpServerSession::Protocol::kUnknown:
      break;
    }
  }
  return s;
}

void ApiServer::drain(std::function<void()> done) {
  auto& s = *state_;
  if (done) {
    s.drained.push_back(std::move(done));
  }
  if (!s.draining) {
    s.draining = true;
    if (s.listener) {
      s.listener->stop();
    }
    for (auto& [id, c] : s.connections) {
      c->shutdown();
    }
  }
  s.maybeDrained();
}

} // namespace mailgate::api

#include "net/listener.h"

#include "net/internal/connection_core.h"
#include "net/internal/loop_impl.h"
#include "net/internal/uv_util.h"

#include <fmt/format.h>
#include <unordered_map>

namespace mailgate::net {

// Holds the listening uv_tcp_t and the connections still in their TLS handshake. Shared by the
// Listener and by itself while the handle is open, like ConnectionCore.
class ListenerCore final : public LoopResource, public std::enable_shared_from_this<ListenerCore> {
public:
  ListenerCore(Loop::Impl* loop, Listener::AcceptFn on_accept)
      : loop_(loop), on_accept_(std::move(on_accept)) {}

  Result<void> open(const Endpoint& endpoint) {
    std::string host = endpoint.host;
    if (host == "localhost") {
      host = "127.0.0.1";
    }
    const auto addr = parseIp(host, endpoint.port);
    if (!addr) {
      loop_ = nullptr; // no handle was made: nothing to close
      return fail("net.listen",
                  fmt::format("cannot listen on '{}': not an IP address", formatEndpoint(endpoint)),
                  "listen addresses are IP literals: 0.0.0.0, [::], 127.0.0.1, [::1], ...");
    }
    if (loop_ == nullptr || loop_->finished) {
      loop_ = nullptr;
      return fail("net.loop_stopped", "the event loop has stopped");
    }
    if (int rc = uv_tcp_init(&loop_->uv, &tcp_); rc != 0) {
      loop_ = nullptr;
      return std::unexpected(uvError("net.listen", rc, "cannot create a TCP socket"));
    }
    tcp_.data = this;
    self_ = shared_from_this();
    loop_->add(this);
    const std::string where = formatEndpoint(endpoint);
    // libuv sets SO_REUSEADDR in uv_tcp_bind on Unix.
    if (int rc = uv_tcp_bind(&tcp_, reinterpret_cast<const sockaddr*>(&*addr), 0); rc != 0) {
      return std::unexpected(uvError("net.listen", rc, fmt::format("cannot bind {}", where)));
    }
    if (int rc = uv_listen(reinterpret_cast<uv_stream_t*>(&tcp_), 511, onConnection); rc != 0) {
      return std::unexpected(uvError("net.listen", rc, fmt::format("cannot listen on {}", where)));
    }
    sockaddr_storage bound{};
    int len = sizeof bound;
    uv_tcp_getsockname(&tcp_, reinterpret_cast<sockaddr*>(&bound), &len);
    const uint16_t port = bound.ss_family == AF_INET6
                              ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                              : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    bound_ = Endpoint{host, port};
    return {};
  }

  void setTls(TlsContextPtr context, std::chrono::milliseconds timeout) {
    tls_ = std::move(context);
    handshake_timeout_ = timeout;
  }
  void setOnError(Listener::ErrorFn fn) { on_error_ = std::move(fn); }
  [[nodiscard]] const Endpoint& bound() const { return bound_; }

  void stop() { closeHandle(); }

  // The user's Listener is gone.
  void release() {
    on_accept_ = nullptr;
    on_error_ = nullptr;
    closeHandle();
    // Destroying these detaches their cores, so their startTls callbacks never reach us.
    auto handshaking = std::move(handshaking_);
    handshaking.clear();
  }

  void shutdown() override {
    on_accept_ = nullptr;
    on_error_ = nullptr;
    closeHandle();
  }

private:
  void closeHandle() {
    if (loop_ == nullptr || closing_) {
      return;
    }
    closing_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), onClosed);
  }

  void report(const Error& error) {
    if (auto fn = on_error_) {
      fn(error);
    }
  }

  static void onConnection(uv_stream_t* server, int status) {
    auto* core = static_cast<ListenerCore*>(server->data);
    auto keep = core->shared_from_this();
    if (status < 0) {
      core->report(uvError("net.accept", status, "accept failed"));
      return;
    }
    auto conn_core = std::make_shared<ConnectionCore>(core->loop_);
    if (auto ok = conn_core->init(); !ok) {
      core->report(ok.error());
      return;
    }
    auto conn = std::make_unique<Connection>(conn_core);
    if (int rc = conn_core->accept(server); rc != 0) {
      core->report(uvError("net.accept", rc, "accept failed"));
      return; // `conn` closes the handle
    }
    if (!core->tls_) {
      if (auto fn = core->on_accept_) {
        fn(std::move(conn));
      }
      return;
    }
    const uint64_t id = conn->id();
    Connection* raw = conn.get();
    core->handshaking_.emplace(id, std::move(conn));
    raw->setHandshakeTimeout(core->handshake_timeout_);
    // The callback cannot outlive `core`: destroying a handshaking connection (release(), or the
    // core's own destruction) drops it.
    raw->startTls(core->tls_, {}, [core = core, id](Result<void> result) {
      core->onHandshake(id, std::move(result));
    });
  }

  void onHandshake(uint64_t id, Result<void> result) {
    auto keep = shared_from_this();
    auto node = handshaking_.extract(id);
    if (node.empty()) {
      return;
    }
    ConnectionPtr conn = std::move(node.mapped());
    if (!result) {
      Error error = result.error();
      error.message += fmt::format(" (peer {})", conn->peerAddress());
      report(error);
      return; // the failed connection is already closing; dropping it is enough
    }
    if (auto fn = on_accept_) {
      fn(std::move(conn));
    }
  }

  static void onClosed(uv_handle_t* handle) {
    auto* core = static_cast<ListenerCore*>(handle->data);
    std::shared_ptr<ListenerCore> keep = std::move(core->self_);
    core->loop_->remove(core);
    core->loop_ = nullptr;
  }

  Loop::Impl* loop_;
  uv_tcp_t tcp_{};
  std::shared_ptr<ListenerCore> self_;
  bool closing_ = false;
  Listener::AcceptFn on_accept_;
  Listener::ErrorFn on_error_;
  TlsContextPtr tls_;
  std::chrono::milliseconds handshake_timeout_{30000};
  std::unordered_map<uint64_t, ConnectionPtr> handshaking_;
  Endpoint bound_;
};

Result<ListenerPtr> Listener::listen(Loop& loop, const Endpoint& endpoint, AcceptFn on_accept) {
  auto core = std::make_shared<ListenerCore>(&loop.impl(), std::move(on_accept));
  auto listener = std::make_unique<Listener>(core);
  if (auto ok = core->open(endpoint); !ok) {
    return std::unexpected(ok.error()); // `listener` closes whatever was opened
  }
  return listener;
}

Listener::Listener(std::shared_ptr<ListenerCore> core) : core_(std::move(core)) {}
Listener::~Listener() {
  core_->release();
}

void Listener::setTls(TlsContextPtr context, std::chrono::milliseconds handshake_timeout) {
  core_->setTls(std::move(context), handshake_timeout);
}
void Listener::onError(ErrorFn on_error) {
  core_->setOnError(std::move(on_error));
}
uint16_t Listener::port() const {
  return core_->bound().port;
}
Endpoint Listener::endpoint() const {
  return core_->bound();
}
void Listener::stop() {
  core_->stop();
}

} // namespace mailgate::net

#include "net/connector.h"

#include "net/internal/connection_core.h"
#include "net/internal/loop_impl.h"
#include "net/internal/uv_util.h"
#include "net/timer.h"

#include <cstring>
#include <fmt/format.h>
#include <optional>
#include <vector>

namespace mailgate::net {

class ConnectOp;

// One uv_getaddrinfo request. libuv owns it until its callback runs, even when cancelled, so it
// lives on the heap on its own, keeps itself alive (self) until then, and reaches its operation
// only through a weak pointer.
struct ResolveRequest {
  uv_getaddrinfo_t req{};
  std::shared_ptr<ResolveRequest> self;
  std::weak_ptr<ConnectOp> op;
};

class ConnectOp final : public std::enable_shared_from_this<ConnectOp> {
public:
  ConnectOp(Loop& loop, Endpoint endpoint, ConnectOptions options,
            std::function<void(Result<ConnectionPtr>)> done)
      : loop_(loop), endpoint_(std::move(endpoint)), options_(std::move(options)),
        done_(std::move(done)) {}

  void start() {
    Loop::Impl& impl = loop_.impl();
    if (impl.finished) {
      return; // the loop is gone: nothing can complete
    }
    where_ = formatEndpoint(endpoint_);
    if (options_.tls && options_.tls->isServer()) {
      finishLater(Error("tls.config", "connect() needs a client TLS context, got a server one"));
      return;
    }
    if (!options_.bind_address.empty() && !isUnspecifiedAddress(options_.bind_address)) {
      auto source = parseIp(options_.bind_address, 0);
      if (!source) {
        finishLater(
            Error("net.bind",
                  fmt::format("bind address '{}' is not an IP address", options_.bind_address),
                  "egress.bind_address takes an IP literal of this machine"));
        return;
      }
      source_ = *source;
    }
    timer_ = Timer::create(loop_);
    timer_->start(options_.timeout, [weak = weak_from_this()] {
      if (auto op = weak.lock()) {
        op->finish(Error("net.connect_timeout",
                         fmt::format("no connection to {} within {} ms", op->where_,
                                     op->options_.timeout.count()),
                         "the host did not answer: check the host, the port, firewalls, and "
                         "whether the peer allow-lists our source address"));
      }
    });
    if (auto literal = parseIp(endpoint_.host, endpoint_.port)) {
      addresses_.push_back(*literal);
      loop_.defer([weak = weak_from_this()] {
        if (auto op = weak.lock()) {
          op->tryNext();
        }
      });
      return;
    }
    resolve();
  }

  void cancel() {
    done_ = nullptr;
    timer_.reset();
    attempt_.reset();
  }

private:
  void resolve() {
    auto request = std::make_shared<ResolveRequest>();
    request->self = request;
    request->op = weak_from_this();
    request->req.data = request.get();
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    const int rc = uv_getaddrinfo(&loop_.impl().uv, &request->req, onResolved,
                                  endpoint_.host.c_str(), nullptr, &hints);
    if (rc != 0) {
      request->self.reset();
      finishLater(uvError("net.resolve", rc, fmt::format("cannot resolve '{}'", endpoint_.host)));
    }
  }

  static void onResolved(uv_getaddrinfo_t* req, int status, addrinfo* result) {
    auto* request = static_cast<ResolveRequest*>(req->data);
    std::shared_ptr<ResolveRequest> keep = std::move(request->self);
    std::unique_ptr<addrinfo, decltype(&uv_freeaddrinfo)> list(result, uv_freeaddrinfo);
    auto op = request->op.lock();
    // During loop shutdown the lookup is only waited for: no user callback may run then.
    if (!op || !op->done_ || status == UV_ECANCELED || op->loop_.impl().finished) {
      return;
    }
    if (status != 0) {
      op->finish(
          uvError("net.resolve", status, fmt::format("cannot resolve '{}'", op->endpoint_.host)));
      return;
    }
    for (const addrinfo* ai = list.get(); ai != nullptr; ai = ai->ai_next) {
      if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) {
        continue;
      }
      sockaddr_storage addr{};
      std::memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
      if (ai->ai_family == AF_INET) {
        reinterpret_cast<sockaddr_in*>(&addr)->sin_port = htons(op->endpoint_.port);
      } else {
        reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port = htons(op->endpoint_.port);
      }
      op->addresses_.push_back(addr);
    }
    if (op->addresses_.empty()) {
      op->finish(Error("net.resolve",
                       fmt::format("'{}' has no IPv4 or IPv6 address", op->endpoint_.host),
                       "check the host name"));
      return;
    }
    op->tryNext();
  }

  // Tries the next address; reports the last error when none is left.
  void tryNext() {
    auto keep = shared_from_this();
    while (next_ < addresses_.size()) {
      const sockaddr_storage& target = addresses_[next_++];
      const sockaddr* source = nullptr;
      if (source_) {
        if (source_->ss_family != target.ss_family) {
          last_error_ =
              Error("net.bind",
                    fmt::format("bind address {} cannot reach {} (IPv4 and IPv6 differ)",
                                options_.bind_address,
                                formatSockaddr(reinterpret_cast<const sockaddr*>(&target))),
                    "set egress.bind_address to an address of the target's family");
          continue;
        }
        source = reinterpret_cast<const sockaddr*>(&*source_);
      }
      auto core = std::make_shared<ConnectionCore>(&loop_.impl());
      if (auto ok = core->init(); !ok) {
        finish(ok.error());
        return;
      }
      core->setRemoteHost(options_.sni.empty() ? endpoint_.host : options_.sni);
      attempt_ = std::make_unique<Connection>(core);
      const std::string target_text = formatSockaddr(reinterpret_cast<const sockaddr*>(&target));
      const int rc = core->connect(reinterpret_cast<const sockaddr*>(&target), source,
                                   [weak = weak_from_this(), target_text](int status) {
                                     if (auto op = weak.lock()) {
                                       op->onConnected(status, target_text);
                                     }
                                   });
      if (rc == 0) {
        return;
      }
      last_error_ = errorFor(rc, target_text, source != nullptr);
      attempt_.reset();
    }
    finish(last_error_.value_or(
        Error("net.connect", fmt::format("no address to connect to for {}", where_))));
  }

  Error errorFor(int status, const std::string& target, bool bound) const {
    if (bound && (status == UV_EADDRNOTAVAIL || status == UV_EADDRINUSE || status == UV_EINVAL)) {
      return uvError(
          "net.bind", status,
          fmt::format("cannot use source address {} to reach {}", options_.bind_address, target));
    }
    return uvError("net.connect", status, fmt::format("cannot connect to {} ({})", where_, target));
  }

  void onConnected(int status, const std::string& target) {
    auto keep = shared_from_this();
    if (!done_) {
      return;
    }
    if (status != 0) {
      last_error_ = errorFor(status, target, source_.has_value());
      attempt_.reset();
      tryNext();
      return;
    }
    timer_.reset(); // the handshake has its own timeout
    if (!options_.tls) {
      finish(std::move(attempt_));
      return;
    }
    attempt_->setHandshakeTimeout(options_.handshake_timeout);
    attempt_->startTls(options_.tls, options_.sni.empty() ? endpoint_.host : options_.sni,
                       [weak = weak_from_this()](Result<void> result) {
                         auto op = weak.lock();
                         if (!op) {
                           return;
                         }
                         if (result) {
                           op->finish(std::move(op->attempt_));
                         } else {
                           op->finish(result.error());
                         }
                       });
  }

  // Calls done once. It must be the last thing the caller does with the op's state: done may
  // destroy the PendingConnect (`keep` in the callers holds the op itself alive).
  void finish(Result<ConnectionPtr> result) {
    auto done = std::move(done_);
    done_ = nullptr;
    timer_.reset();
    if (!result) {
      attempt_.reset();
    }
    if (done) {
      done(std::move(result));
    }
  }
  void finish(Error error) { finish(Result<ConnectionPtr>(std::unexpected(std::move(error)))); }
  void finish(ConnectionPtr conn) { finish(Result<ConnectionPtr>(std::move(conn))); }

  void finishLater(Error error) {
    loop_.defer([weak = weak_from_this(), error = std::move(error)] {
      if (auto op = weak.lock()) {
        op->finish(error);
      }
    });
  }

  Loop& loop_;
  Endpoint endpoint_;
  ConnectOptions options_;
  std::function<void(Result<ConnectionPtr>)> done_;
  std::string where_;
  std::optional<sockaddr_storage> source_;
  std::vector<sockaddr_storage> addresses_;
  size_t next_ = 0;
  std::optional<Error> last_error_;
  TimerPtr timer_;
  ConnectionPtr attempt_;
};

PendingConnect::PendingConnect(std::shared_ptr<ConnectOp> op) : op_(std::move(op)) {}
PendingConnect::~PendingConnect() {
  op_->cancel();
}

PendingConnectPtr connect(Loop& loop, const Endpoint& endpoint, ConnectOptions options,
                          std::function<void(Result<ConnectionPtr>)> done) {
  auto op = std::make_shared<ConnectOp>(loop, endpoint, std::move(options), std::move(done));
  op->start();
  return std::make_unique<PendingConnect>(std::move(op));
}

} // namespace mailgate::net

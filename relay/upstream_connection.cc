#include "relay/upstream_connection.h"

#include "base/log.h"
#include "net/loop.h"

#include <algorithm>
#include <utility>
#include <variant>

namespace mailgate::relay {
namespace {

// Bytes pulled from the session per write() call, and the socket buffer level above which we stop
// pulling until onWriteDrained. Together they bound what a 36 MiB body costs beyond the session's
// own copy: at most about kWriteHighWater + kWriteChunk bytes sit in the connection's buffers.
constexpr size_t kWriteChunk = size_t{64} * 1024;
constexpr size_t kWriteHighWater = size_t{256} * 1024;

template <class... Ts> struct Overloaded : Ts... {
  using Ts::operator()...;
};

} // namespace

UpstreamConnection::UpstreamConnection(net::Loop& loop, UpstreamSettings settings,
                                       Observer& observer)
    : loop_(loop), settings_(std::move(settings)), observer_(observer), log_(logger("delivery")),
      stall_timer_(net::Timer::create(loop)) {}

UpstreamConnection::~UpstreamConnection() {
  alive_.reset();
  if (conn_) {
    conn_->setHandler(nullptr);
  }
}

void UpstreamConnection::start() {
  if (started_) {
    return;
  }
  started_ = true;
  if (settings_.client.auth == smtp::ClientAuth::kXOAuth2 && settings_.token_source) {
    std::weak_ptr<char> alive = alive_;
    settings_.token_source->token([this, alive](Result<Secret> token) {
      if (alive.expired()) {
        return;
      }
      if (!token) {
        reportClosed(std::move(token.error()));
        return;
      }
      settings_.client.password = token->reveal();
      connect();
    });
    return;
  }
  connect();
}

void UpstreamConnection::connect() {
  net::ConnectOptions options;
  options.bind_address = settings_.bind_address;
  options.timeout = settings_.timeouts.connect;
  options.handshake_timeout = settings_.timeouts.connect;
  if (settings_.client.tls == smtp::ClientTls::kImplicit) {
    options.tls = settings_.tls;
  }
  session_.emplace(settings_.client);
  // The password now lives in the session only; the settings copy is not needed any more.
  settings_.client.password.clear();
  // pending_ is a member: destroying this object cancels the connect, so `this` stays valid.
  pending_ =
      net::connect(loop_, settings_.endpoint, std::move(options),
                   [this](Result<net::ConnectionPtr> result) { onConnected(std::move(result)); });
}

void UpstreamConnection::onConnected(Result<net::ConnectionPtr> result) {
  if (!result) {
    reportClosed(std::move(result.error()));
    return;
  }
  conn_ = std::move(*result);
  log_->debug("conn=u{} relay={} connected to {} from {} (net id {}){}", settings_.id,
              settings_.relay, conn_->peerAddress(), conn_->localAddress(), conn_->id(),
              conn_->tlsActive() ? fmt::format(" with {}", conn_->tlsVersion()) : "");
  conn_->setCloseTimeout(settings_.timeouts.quit);
  conn_->setHandler(this);
  armStallTimer();
}

Result<void> UpstreamConnection::send(const smtp::Envelope& envelope, std::string_view body) {
  if (!ready()) {
    return fail("smtp.not_ready", "the upstream connection is not ready for a message");
  }
  if (auto r = session_->send(envelope, body); !r) {
    return r;
  }
  in_transaction_ = true;
  body_size_ = body.size();
  pulled_ = 0;
  tail_.clear();
  end_of_data_sent_ = false;
  pumpOutput();
  armStallTimer();
  return {};
}

void UpstreamConnection::quit() {
  if (closed_reported_ || quitting_ || socket_closing_) {
    return;
  }
  quitting_ = true;
  if (!conn_) {
    // Still resolving, connecting, handshaking TLS or waiting for a token: just give up.
    pending_.reset();
    std::weak_ptr<char> alive = alive_;
    loop_.defer([this, alive] {
      if (!alive.expired()) {
        reportClosed(std::nullopt);
      }
    });
    return;
  }
  session_->quit();
  scheduleDrive();
}

void UpstreamConnection::onRead(std::span<const char> data) {
  session_->receive(data);
  if (drive()) {
    armStallTimer();
  }
}

void UpstreamConnection::onClose(const Error* reason) {
  if (closed_reported_) {
    return;
  }
  if (socket_closing_) {
    // The session had ended; this is the socket finishing. Report the session's reason.
    reportClosed(std::move(close_error_));
    return;
  }
  Error error =
      reason != nullptr ? *reason : Error("net.closed", "the server closed the connection");
  transport_error_ = error;
  session_->connectionLost(std::move(error));
  drive();
}

void UpstreamConnection::onWriteDrained() {
  pumpOutput();
  armStallTimer();
}

void UpstreamConnection::pumpOutput() {
  if (!conn_ || !session_) {
    return;
  }
  while (session_->hasOutput() && conn_->pendingWriteBytes() < kWriteHighWater) {
    std::string chunk = session_->takeOutput(kWriteChunk);
    if (in_transaction_) {
      pulled_ += chunk.size();
      tail_ += chunk.size() >= 5 ? std::string_view(chunk).substr(chunk.size() - 5) : chunk;
      if (tail_.size() > 5) {
        tail_.erase(0, tail_.size() - 5);
      }
    }
    if (!conn_->write(chunk)) {
      return;
    }
  }
  // The end of data is the only output of a transaction that ends in ".\r\n" (commands end in
  // ">\r\n", parameters or a keyword), and it comes after at least the whole body. Knowing that it
  // left tells a lost connection before the dot (not delivered) from one after it (unknown).
  if (in_transaction_ && !end_of_data_sent_ && !session_->hasOutput() &&
      pulled_ >= body_size_ + 3 && tail_.ends_with(".\r\n")) {
    end_of_data_sent_ = true;
  }
}

bool UpstreamConnection::drive() {
  std::weak_ptr<char> alive = alive_;
  pumpOutput();
  while (session_) {
    std::optional<smtp::ClientSession::Event> event = session_->nextEvent();
    if (!event) {
      break;
    }
    bool go_on = true;
    std::visit(Overloaded{
                   [&](smtp::ClientSession::StartTls&) {
                     pumpOutput();
                     log_->debug("conn=u{} relay={} starting TLS", settings_.id, settings_.relay);
                     conn_->startTls(settings_.tls, "", [this, alive](Result<void> r) {
                       if (alive.expired()) {
                         return;
                       }
                       if (r) {
                         log_->debug("conn=u{} relay={} STARTTLS done: {}", settings_.id,
                                     settings_.relay, conn_->tlsVersion());
                         session_->tlsStarted();
                       } else {
                         transport_error_ = r.error();
                         session_->connectionLost(r.error());
                       }
                       if (drive()) {
                         armStallTimer();
                       }
                     });
                   },
                   [&](smtp::ClientSession::Ready&) {
                     established_ = true;
                     stall_timer_->stop();
                     observer_.onUpstreamReady(*this);
                     go_on = !alive.expired();
                   },
                   [&](smtp::ClientSession::MessageResult& result) {
                     const bool eod = end_of_data_sent_;
                     in_transaction_ = false;
                     end_of_data_sent_ = false;
                     observer_.onUpstreamResult(*this, std::move(result), eod);
                     go_on = !alive.expired();
                   },
                   [&](smtp::ClientSession::Closed& closed) {
                     std::optional<Error> error = std::move(closed.error);
                     if (error && error->code == "smtp.connection_lost" && transport_error_) {
                       // The transport's own error (tls.verify, net.read, ...) says more.
                       error = std::move(transport_error_);
                     }
                     if (error && closed.reply &&
                         error->message.find(closed.reply->describe()) == std::string::npos) {
                       error->message += " (" + closed.reply->describe() + ")";
                     }
                     closing_reply_ = std::move(closed.reply);
                     pumpOutput(); // it may hold a QUIT
                     if (conn_ && conn_->isOpen()) {
                       // Reported once the socket is closed, so the connection still counts against
                       // the pool's cap until the upstream has really let it go.
                       socket_closing_ = true;
                       close_error_ = std::move(error);
                       stall_timer_->stop();
                       conn_->close();
                     } else {
                       reportClosed(std::move(error));
                     }
                     go_on = false;
                   },
               },
               *event);
    if (!go_on || alive.expired()) {
      return false;
    }
  }
  return !alive.expired();
}

void UpstreamConnection::scheduleDrive() {
  if (drive_scheduled_) {
    return;
  }
  drive_scheduled_ = true;
  std::weak_ptr<char> alive = alive_;
  loop_.defer([this, alive] {
    if (alive.expired()) {
      return;
    }
    drive_scheduled_ = false;
    if (drive()) {
      armStallTimer();
    }
  });
}

void UpstreamConnection::armStallTimer() {
  if (closed_reported_ || socket_closing_ || !conn_ || !session_ || session_->closed()) {
    stall_timer_->stop();
    return;
  }
  if (session_->ready() && !quitting_) {
    stall_timer_->stop(); // idle: the engine's idle timer decides
    return;
  }
  const std::chrono::milliseconds timeout = quitting_           ? settings_.timeouts.quit
                                            : end_of_data_sent_ ? settings_.timeouts.data_end
                                                                : settings_.timeouts.reply;
  stall_timer_->start(timeout, [this] { onStall(); });
}

void UpstreamConnection::onStall() {
  if (closed_reported_ || !session_) {
    return;
  }
  const auto timeout = quitting_           ? settings_.timeouts.quit
                       : end_of_data_sent_ ? settings_.timeouts.data_end
                                           : settings_.timeouts.reply;
  Error error("smtp.timeout", fmt::format("no reply from the server for {} ms", timeout.count()),
              "the upstream is overloaded or a firewall drops the connection; mail is retried");
  transport_error_ = error;
  if (conn_) {
    conn_->abort();
  }
  session_->connectionLost(std::move(error));
  drive();
}

void UpstreamConnection::reportClosed(std::optional<Error> error) {
  if (closed_reported_) {
    return;
  }
  closed_reported_ = true;
  stall_timer_->stop();
  observer_.onUpstreamClosed(*this, std::move(error));
}

} // namespace mailgate::relay

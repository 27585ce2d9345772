#include "net/connection.h"

#include "net/internal/connection_core.h"
#include "net/internal/uv_util.h"

#include <atomic>
#include <fmt/format.h>

namespace mailgate::net {
namespace {

std::atomic<uint64_t> next_connection_id{1};

} // namespace

// ---------------------------------------------------------------------------------------------
// ConnectionCore

ConnectionCore::ConnectionCore(Loop::Impl* loop)
    : loop_(loop), id_(next_connection_id.fetch_add(1, std::memory_order_relaxed)) {}

ConnectionCore::~ConnectionCore() = default;

Result<void> ConnectionCore::init() {
  if (loop_ == nullptr || loop_->finished) {
    loop_ = nullptr;
    state_ = State::kClosed;
    handle_closing_ = true;
    return fail("net.loop_stopped", "the event loop has stopped");
  }
  if (int rc = uv_tcp_init(&loop_->uv, &tcp_); rc != 0) {
    loop_ = nullptr;
    state_ = State::kClosed;
    handle_closing_ = true;
    return std::unexpected(uvError("net.socket", rc, "cannot create a TCP socket"));
  }
  tcp_.data = this;
  self_ = shared_from_this();
  loop_->add(this);
  return {};
}

int ConnectionCore::connect(const sockaddr* target, const sockaddr* source,
                            std::function<void(int)> done) {
  if (loop_ == nullptr || state_ != State::kInit) {
    return UV_EINVAL;
  }
  if (source != nullptr) {
    if (int rc = uv_tcp_bind(&tcp_, source, 0); rc != 0) {
      return rc;
    }
  }
  connect_req_.data = this;
  if (int rc = uv_tcp_connect(&connect_req_, &tcp_, target, onConnect); rc != 0) {
    return rc;
  }
  state_ = State::kConnecting;
  connect_done_ = std::move(done);
  return 0;
}

int ConnectionCore::accept(uv_stream_t* server) {
  if (int rc = uv_accept(server, stream()); rc != 0) {
    return rc;
  }
  state_ = State::kOpen;
  uv_tcp_nodelay(&tcp_, 1);
  cacheAddresses();
  return 0;
}

void ConnectionCore::onConnect(uv_connect_t* req, int status) {
  auto* core = static_cast<ConnectionCore*>(req->data);
  auto done = std::move(core->connect_done_);
  core->connect_done_ = nullptr;
  if (status == 0 && core->state_ == State::kConnecting) {
    core->state_ = State::kOpen;
    uv_tcp_nodelay(&core->tcp_, 1);
    core->cacheAddresses();
  }
  if (done && !core->shutting_down_) {
    done(status);
  }
}

void ConnectionCore::cacheAddresses() {
  sockaddr_storage addr{};
  int len = sizeof addr;
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    peer_address_ = formatSockaddr(reinterpret_cast<sockaddr*>(&addr));
  }
  len = sizeof addr;
  if (uv_tcp_getsockname(&tcp_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    local_address_ = formatSockaddr(reinterpret_cast<sockaddr*>(&addr));
  }
}

void ConnectionCore::detach() {
  attached_ = false;
  handler_ = nullptr;
  tls_done_ = nullptr;
  connect_done_ = nullptr;
  if (state_ == State::kClosing) {
    return; // the graceful close finishes on its own, bounded by the close timer
  }
  closeHandle();
}

void ConnectionCore::setHandler(Connection::Handler* handler) {
  handler_ = handler;
  updateReading();
  if (tlsActive() && tls_->hasPendingInput()) {
    scheduleDrain();
  }
}

bool ConnectionCore::write(std::string_view data) {
  if (state_ != State::kOpen || handle_closing_) {
    return false;
  }
  app_out_.append(data);
  scheduleFlush();
  return true;
}

size_t ConnectionCore::pendingWriteBytes() const {
  return app_out_.size() + wire_out_.size() + in_flight_.size();
}

void ConnectionCore::pauseRead() {
  read_paused_ = true;
  updateReading();
}

void ConnectionCore::resumeRead() {
  read_paused_ = false;
  updateReading();
  if (tlsActive() && tls_->hasPendingInput()) {
    scheduleDrain();
  }
}

void ConnectionCore::rejectStartTls(std::function<void(Result<void>)> done, Error error) {
  if (loop_ == nullptr || !done) {
    return;
  }
  loop_->defer([weak = weak_from_this(), done = std::move(done), error = std::move(error)] {
    auto core = weak.lock();
    if (core && core->attached_ && !core->shutting_down_) {
      done(std::unexpected(error));
    }
  });
}

void ConnectionCore::startTls(TlsContextPtr context, std::string sni,
                              std::function<void(Result<void>)> done) {
  if (state_ != State::kOpen || handle_closing_) {
    rejectStartTls(std::move(done), Error("tls.state", "the connection is not open"));
    return;
  }
  if (tls_) {
    rejectStartTls(std::move(done), Error("tls.state", "TLS is already on for this connection"));
    return;
  }
  if (!context) {
    rejectStartTls(std::move(done), Error("tls.config", "no TLS context given"));
    return;
  }
  auto session = TlsSession::create(context, sni.empty() ? remote_host_ : sni);
  if (!session) {
    rejectStartTls(std::move(done), session.error());
    return;
  }
  // Cleartext written before the upgrade (e.g. "220 Ready to start TLS") goes out first, as is.
  moveAppToWire();
  tls_ = std::move(*session);
  tls_done_ = std::move(done);
  if (!handshake_timer_) {
    handshake_timer_ = Timer::create(*loop_->owner);
  }
  handshake_timer_->start(handshake_timeout_, [this] {
    failConnection(Error("tls.handshake_timeout",
                         fmt::format("TLS handshake with {} did not finish within {} ms",
                                     peer_address_, handshake_timeout_.count()),
                         "the peer stopped answering mid-handshake, or does not speak TLS here"));
  });
  if (!tls_->isServer()) {
    // Produces the ClientHello; it cannot complete without the server's answer.
    auto started = tls_->handshake();
    if (!started) {
      failConnection(started.error());
      return;
    }
  }
  tls_->takeOutput(wire_out_);
  scheduleFlush();
  updateReading();
}

void ConnectionCore::close() {
  if (state_ == State::kInit || state_ == State::kConnecting) {
    abort();
    return;
  }
  if (state_ != State::kOpen) {
    return;
  }
  beginClose();
}

void ConnectionCore::abort() {
  if (state_ == State::kClosed) {
    return;
  }
  closeHandle();
}

void ConnectionCore::shutdown() {
  shutting_down_ = true;
  handler_ = nullptr;
  tls_done_ = nullptr;
  connect_done_ = nullptr;
  closeHandle();
}

// --- writing ---------------------------------------------------------------------------------

void ConnectionCore::scheduleFlush() {
  if (flush_scheduled_ || loop_ == nullptr || handle_closing_) {
    return;
  }
  flush_scheduled_ = true;
  loop_->beforePoll([weak = weak_from_this()] {
    if (auto core = weak.lock()) {
      core->flush();
    }
  });
}

void ConnectionCore::moveAppToWire() {
  if (app_out_.empty()) {
    return;
  }
  if (wire_out_.empty()) {
    wire_out_.swap(app_out_);
  } else {
    wire_out_ += app_out_;
    app_out_.clear();
  }
}

void ConnectionCore::flush() {
  flush_scheduled_ = false;
  if (handle_closing_) {
    return;
  }
  if (tls_) {
    if (tls_->established()) {
      if (!app_out_.empty()) {
        auto written = tls_->write(app_out_);
        app_out_.clear();
        if (!written) {
          failConnection(written.error());
          return;
        }
      }
      if (state_ == State::kClosing) {
        tls_->shutdown(); // close_notify after the last application byte; sent once
      }
    } else if (state_ == State::kClosing) {
      app_out_.clear(); // closing mid-handshake: there is no channel to send it on
    }
    tls_->takeOutput(wire_out_);
  } else {
    moveAppToWire();
  }
  startWrite();
  if (state_ == State::kClosing) {
    maybeSendFin();
  }
}

void ConnectionCore::startWrite() {
  if (writing_ || wire_out_.empty() || handle_closing_) {
    return;
  }
  in_flight_.swap(wire_out_);
  uv_buf_t buf = uv_buf_init(in_flight_.data(), static_cast<unsigned>(in_flight_.size()));
  write_req_.data = this;
  if (int rc = uv_write(&write_req_, stream(), &buf, 1, onWrite); rc != 0) {
    in_flight_.clear();
    failConnection(uvError("net.write", rc, fmt::format("write to {} failed", peer_address_)));
    return;
  }
  writing_ = true;
  ++stats_.socket_writes;
}

void ConnectionCore::onWrite(uv_write_t* req, int status) {
  auto* core = static_cast<ConnectionCore*>(req->data);
  core->writing_ = false;
  const size_t written = core->in_flight_.size();
  core->in_flight_.clear();
  if (status == UV_ECANCELED || core->handle_closing_) {
    return;
  }
  if (status < 0) {
    if (core->state_ == State::kClosing && core->peer_eof_) {
      core->closeHandle(); // the peer left first; nothing more to tell anyone
    } else {
      core->failConnection(
          uvError("net.write", status, fmt::format("write to {} failed", core->peer_address_)));
    }
    return;
  }
  core->stats_.bytes_written += written;
  if (!core->wire_out_.empty()) {
    core->startWrite();
    return;
  }
  if (core->state_ == State::kClosing) {
    core->maybeSendFin();
    return;
  }
  if (core->pendingWriteBytes() == 0 && core->state_ == State::kOpen && core->handler_ != nullptr) {
    core->handler_->onWriteDrained();
  }
}

void ConnectionCore::maybeSendFin() {
  if (fin_requested_ || writing_ || flush_scheduled_ || !wire_out_.empty() || handle_closing_) {
    return;
  }
  fin_requested_ = true;
  shutdown_req_.data = this;
  if (uv_shutdown(&shutdown_req_, stream(), onShutdown) != 0) {
    closeHandle();
  }
}

void ConnectionCore::onShutdown(uv_shutdown_t* req, int status) {
  auto* core = static_cast<ConnectionCore*>(req->data);
  if (status == UV_ECANCELED || core->handle_closing_) {
    return;
  }
  core->fin_done_ = true;
  // Without the peer's FIN yet, keep reading (and discarding) until it comes or the close timer
  // fires: closing a socket with unread input makes the kernel send a reset, which can destroy
  // our last reply before the peer reads it.
  if (status < 0 || core->peer_eof_) {
    core->closeHandle();
  }
}

// --- reading ---------------------------------------------------------------------------------

void ConnectionCore::updateReading() {
  if (loop_ == nullptr || handle_closing_ ||
      (state_ != State::kOpen && state_ != State::kClosing)) {
    return;
  }
  bool want = false;
  if (state_ == State::kClosing) {
    want = !peer_eof_;
  } else if (tls_ && !tls_->established()) {
    want = true; // the handshake needs input whatever the user paused
  } else {
    want = handler_ != nullptr && !read_paused_;
  }
  if (want && !reading_) {
    if (int rc = uv_read_start(stream(), onAlloc, onRead); rc != 0) {
      failConnection(uvError("net.read", rc, fmt::format("cannot read from {}", peer_address_)));
      return;
    }
    reading_ = true;
  } else if (!want && reading_) {
    uv_read_stop(stream());
    reading_ = false;
  }
}

void ConnectionCore::onAlloc(uv_handle_t* handle, size_t /*suggested*/, uv_buf_t* buf) {
  auto* core = static_cast<ConnectionCore*>(handle->data);
  buf->base = core->loop_->read_buffer.get();
  buf->len = Loop::Impl::kReadBufferSize;
}

void ConnectionCore::onRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* core = static_cast<ConnectionCore*>(stream->data);
  if (nread == 0 || core->handle_closing_) {
    return;
  }
  if (nread < 0) {
    core->reading_ = false;
    if (nread == UV_EOF) {
      core->onPeerEof();
    } else if (core->state_ == State::kClosing) {
      core->closeHandle();
    } else {
      core->failConnection(uvError("net.read", static_cast<int>(nread),
                                   fmt::format("connection to {} failed", core->peer_address_)));
    }
    return;
  }
  core->stats_.bytes_read += static_cast<uint64_t>(nread);
  const std::span<const char> data(buf->base, static_cast<size_t>(nread));
  if (core->state_ != State::kOpen) {
    return; // closing: input is read only so the peer's FIN can arrive; it is discarded
  }
  if (!core->tls_) {
    if (core->handler_ != nullptr) {
      core->handler_->onRead(data);
    }
    return;
  }
  core->tls_->feed(data);
  core->processTls();
}

void ConnectionCore::processTls() {
  if (!tls_->established()) {
    auto done = tls_->handshake();
    if (tls_->takeOutput(wire_out_)) {
      scheduleFlush();
    }
    if (!done) {
      failWithAlert(done.error());
      return;
    }
    if (!*done) {
      return;
    }
    onHandshakeDone();
    if (state_ != State::kOpen || handle_closing_) {
      return;
    }
  }
  drainTls();
}

void ConnectionCore::onHandshakeDone() {
  if (handshake_timer_) {
    handshake_timer_->stop();
  }
  scheduleFlush(); // application bytes written during the handshake
  updateReading();
  auto done = std::move(tls_done_);
  tls_done_ = nullptr;
  if (done) {
    done({});
  }
}

void ConnectionCore::scheduleDrain() {
  if (drain_scheduled_ || loop_ == nullptr) {
    return;
  }
  drain_scheduled_ = true;
  loop_->defer([weak = weak_from_this()] {
    if (auto core = weak.lock()) {
      core->drain_scheduled_ = false;
      core->drainTls();
    }
  });
}

void ConnectionCore::drainTls() {
  if (!tlsActive() || handle_closing_ || loop_ == nullptr || state_ != State::kOpen ||
      handler_ == nullptr || read_paused_) {
    return;
  }
  const std::span<char> buffer(loop_->plain_buffer.get(), Loop::Impl::kPlainBufferSize);
  auto status = tls_->read(buffer, [this](std::span<const char> data) {
    handler_->onRead(data);
    return state_ == State::kOpen && !handle_closing_ && handler_ != nullptr && !read_paused_;
  });
  if (handle_closing_) {
    return;
  }
  // Reading can make TLS output (TLS 1.3 key update answers).
  if (tls_->takeOutput(wire_out_)) {
    scheduleFlush();
  }
  if (!status) {
    failConnection(status.error());
    return;
  }
  if (*status == TlsSession::ReadStatus::kPeerClosed) {
    onPeerEof();
  }
}

void ConnectionCore::onPeerEof() {
  peer_eof_ = true;
  if (state_ == State::kClosing) {
    if (fin_done_) {
      closeHandle();
    }
    return; // otherwise onShutdown closes once our side is flushed
  }
  if (state_ != State::kOpen) {
    return;
  }
  if (tls_ && !tls_->established()) {
    failConnection(Error(
        "tls.handshake",
        fmt::format("{} closed the connection during the TLS handshake", peer_address_),
        tls_->isServer()
            ? "the client gave up: it may not trust our certificate or support TLS 1.2+"
            : "the server gave up: it may not speak TLS on this port, or refused our TLS offer"));
    return;
  }
  // Orderly end from the peer: still send what we owe (a half-closed peer may be reading), then
  // close. onClose(nullptr) follows.
  beginClose();
}

// --- closing ---------------------------------------------------------------------------------

void ConnectionCore::beginClose() {
  state_ = State::kClosing;
  if (handshake_timer_) {
    handshake_timer_->stop();
  }
  if (loop_ == nullptr) {
    return;
  }
  if (!close_timer_) {
    close_timer_ = Timer::create(*loop_->owner);
  }
  close_timer_->start(close_timeout_, [this] {
    if (fin_done_) {
      closeHandle(); // everything was sent; the peer just never closed its side
    } else {
      failConnection(Error("net.close_timeout",
                           fmt::format("could not flush {} bytes to {} within {} ms; closed anyway",
                                       pendingWriteBytes(), peer_address_, close_timeout_.count()),
                           "the peer stopped reading"));
    }
  });
  scheduleFlush();
  updateReading();
}

void ConnectionCore::failConnection(Error error) {
  if (state_ == State::kClosed) {
    return;
  }
  close_reason_ = std::move(error);
  closeHandle();
}

// A failed handshake leaves a TLS alert in wire_out_ that tells the peer why ("protocol version",
// "unknown ca"). Send it if the socket takes it right now, without waiting, then close.
void ConnectionCore::failWithAlert(Error error) {
  if (!writing_ && !wire_out_.empty() && !handle_closing_ && loop_ != nullptr) {
    uv_buf_t buf = uv_buf_init(wire_out_.data(), static_cast<unsigned>(wire_out_.size()));
    const int n = uv_try_write(stream(), &buf, 1);
    if (n > 0) {
      stats_.bytes_written += static_cast<uint64_t>(n);
    }
  }
  failConnection(std::move(error));
}

void ConnectionCore::closeHandle() {
  state_ = State::kClosed;
  if (handshake_timer_) {
    handshake_timer_->stop();
  }
  if (close_timer_) {
    close_timer_->stop();
  }
  app_out_.clear();
  wire_out_.clear();
  if (handle_closing_ || loop_ == nullptr) {
    return;
  }
  handle_closing_ = true;
  // Pending write/shutdown/connect requests complete with UV_ECANCELED before onClosed runs.
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), onClosed);
}

void ConnectionCore::onClosed(uv_handle_t* handle) {
  auto* core = static_cast<ConnectionCore*>(handle->data);
  // Keeps the core alive to the end of this function even if a callback below destroys the
  // user's Connection; the memory goes when `keep` does, if nobody else holds it.
  std::shared_ptr<ConnectionCore> keep = std::move(core->self_);
  core->reading_ = false;
  core->loop_->remove(core);
  core->loop_ = nullptr;
  core->handshake_timer_.reset();
  core->close_timer_.reset();
  if (core->shutting_down_) {
    return;
  }
  const std::optional<Error> reason = core->close_reason_;
  if (auto done = std::move(core->tls_done_)) {
    core->tls_done_ = nullptr;
    done(std::unexpected(reason.value_or(
        Error("net.closed", "the connection closed before the TLS handshake finished"))));
  }
  if (core->handler_ != nullptr) {
    core->handler_->onClose(reason ? &*reason : nullptr);
  }
}

// ---------------------------------------------------------------------------------------------
// Connection

Connection::Connection(std::shared_ptr<ConnectionCore> core) : core_(std::move(core)) {}

Connection::~Connection() {
  core_->detach();
}

void Connection::setHandler(Handler* handler) {
  core_->setHandler(handler);
}
bool Connection::write(std::string_view data) {
  return core_->write(data);
}
size_t Connection::pendingWriteBytes() const {
  return core_->pendingWriteBytes();
}
void Connection::pauseRead() {
  core_->pauseRead();
}
void Connection::resumeRead() {
  core_->resumeRead();
}
void Connection::startTls(TlsContextPtr context, std::string sni,
                          std::function<void(Result<void>)> done) {
  core_->startTls(std::move(context), std::move(sni), std::move(done));
}
void Connection::setHandshakeTimeout(std::chrono::milliseconds timeout) {
  core_->setHandshakeTimeout(timeout);
}
void Connection::setCloseTimeout(std::chrono::milliseconds timeout) {
  core_->setCloseTimeout(timeout);
}
bool Connection::tlsActive() const {
  return core_->tlsActive();
}
std::string Connection::tlsVersion() const {
  return core_->tlsVersion();
}
std::string Connection::alpnSelected() const {
  return core_->alpnSelected();
}
std::string Connection::peerAddress() const {
  return core_->peerAddress();
}
std::string Connection::localAddress() const {
  return core_->localAddress();
}
uint64_t Connection::id() const {
  return core_->id();
}
bool Connection::isOpen() const {
  return core_->isOpen();
}
ConnectionStats Connection::stats() const {
  return core_->stats();
}
void Connection::close() {
  core_->close();
}
void Connection::abort() {
  core_->abort();
}

} // namespace mailgate::net

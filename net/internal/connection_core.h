// Internal to net/: the object behind a Connection. It holds the uv_tcp_t (so it never moves and
// is freed only after libuv closed it), the write buffers and the TLS session. It is shared by the
// user's Connection and by itself while the handle is open (self_), so it lives until both the
// user let go and the handle's close callback ran.
#pragma once

#include "net/connection.h"
#include "net/internal/loop_impl.h"
#include "net/internal/tls_session.h"
#include "net/timer.h"

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <uv.h>

namespace mailgate::net {

class ConnectionCore final : public LoopResource,
                             public std::enable_shared_from_this<ConnectionCore> {
public:
  explicit ConnectionCore(Loop::Impl* loop);
  ~ConnectionCore() override;

  // Initialises the TCP handle. Fails (and the core stays inert) if the loop has stopped.
  Result<void> init();

  // Client side: binds to `source` when given, then connects. Returns a libuv status if that fails
  // at once; otherwise `done(status)` fires later from the loop (0 = connected).
  int connect(const sockaddr* target, const sockaddr* source, std::function<void(int)> done);

  // Server side: takes the next connection waiting on `server`. Returns a libuv status.
  int accept(uv_stream_t* server);

  // The name this connection was opened to; startTls() verifies against it when given no SNI.
  void setRemoteHost(std::string host) { remote_host_ = std::move(host); }

  // The user's Connection is gone: no more callbacks; close unless a graceful close runs.
  void detach();

  // Connection's API; see net/connection.h for the contracts.
  void setHandler(Connection::Handler* handler);
  bool write(std::string_view data);
  [[nodiscard]] size_t pendingWriteBytes() const;
  void pauseRead();
  void resumeRead();
  void startTls(TlsContextPtr context, std::string sni, std::function<void(Result<void>)> done);
  void setHandshakeTimeout(std::chrono::milliseconds t) { handshake_timeout_ = t; }
  void setCloseTimeout(std::chrono::milliseconds t) { close_timeout_ = t; }
  [[nodiscard]] bool tlsActive() const { return tls_ && tls_->established(); }
  [[nodiscard]] std::string tlsVersion() const { return tls_ ? tls_->version() : std::string(); }
  [[nodiscard]] std::string alpnSelected() const { return tls_ ? tls_->alpn() : std::string(); }
  [[nodiscard]] const std::string& peerAddress() const { return peer_address_; }
  [[nodiscard]] const std::string& localAddress() const { return local_address_; }
  [[nodiscard]] uint64_t id() const { return id_; }
  [[nodiscard]] bool isOpen() const { return state_ == State::kOpen; }
  [[nodiscard]] ConnectionStats stats() const { return stats_; }
  void close();
  void abort();

  void shutdown() override;

private:
  enum class State { kInit, kConnecting, kOpen, kClosing, kClosed };

  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }
  void cacheAddresses();
  void scheduleFlush();
  void flush();
  void moveAppToWire();
  void startWrite();
  void updateReading();
  void processTls();
  void onHandshakeDone();
  void scheduleDrain();
  void drainTls();
  void onPeerEof();
  void beginClose();
  void maybeSendFin();
  void failConnection(Error error);
  void failWithAlert(Error error);
  void closeHandle();
  void rejectStartTls(std::function<void(Result<void>)> done, Error error);

  static void onConnect(uv_connect_t* req, int status);
  static void onAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void onRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void onWrite(uv_write_t* req, int status);
  static void onShutdown(uv_shutdown_t* req, int status);
  static void onClosed(uv_handle_t* handle);

  Loop::Impl* loop_; // null once the handle is closed or the loop went away
  uv_tcp_t tcp_{};
  uv_connect_t connect_req_{};
  uv_write_t write_req_{};
  uv_shutdown_t shutdown_req_{};
  std::shared_ptr<ConnectionCore> self_; // set while the handle is open

  const uint64_t id_;
  State state_ = State::kInit;
  bool handle_closing_ = false; // uv_close was called
  bool shutting_down_ = false;  // the loop is going away: no user callbacks
  bool attached_ = true;        // the user's Connection exists
  Connection::Handler* handler_ = nullptr;
  std::function<void(int)> connect_done_;
  std::function<void(Result<void>)> tls_done_;

  bool read_paused_ = false;
  bool reading_ = false;
  bool peer_eof_ = false;
  bool drain_scheduled_ = false;

  // Write path: user cleartext -> (TLS) -> wire bytes -> the one uv_write in flight.
  std::string app_out_;
  std::string wire_out_;
  std::string in_flight_;
  bool writing_ = false;
  bool flush_scheduled_ = false;
  bool fin_requested_ = false;
  bool fin_done_ = false;

  std::unique_ptr<TlsSession> tls_;
  TimerPtr handshake_timer_;
  TimerPtr close_timer_;
  std::chrono::milliseconds handshake_timeout_{30000};
  std::chrono::milliseconds close_timeout_{10000};

  std::optional<Error> close_reason_;
  std::string peer_address_;
  std::string local_address_;
  std::string remote_host_;
  ConnectionStats stats_;
};

} // namespace mailgate::net

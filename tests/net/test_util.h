// Helpers shared by the net/ tests: a loop with a safety stop, recording handlers, an echo
// server, and a throwaway PKI made with the openssl command line.
#pragma once

#include "net/connection.h"
#include "net/connector.h"
#include "net/listener.h"
#include "net/loop.h"
#include "net/timer.h"

#include <chrono>
#include <functional>
#include <gtest/gtest.h>
#include <optional>
#include <string>
#include <vector>

namespace mailgate::net::test {

// A loop for one test. run() stops on its own after `limit` (a safety net against hangs, which
// fails the test; no test relies on it to pass).
class TestLoop {
public:
  TestLoop();
  Loop& operator*() { return *loop_; }
  Loop* operator->() { return loop_.get(); }
  void run(std::chrono::milliseconds limit = std::chrono::seconds(20));
  [[nodiscard]] bool timedOut() const { return timed_out_; }

private:
  LoopPtr loop_;
  bool timed_out_ = false;
};

// Records everything a connection reports; optional hooks run after recording.
class RecordingHandler : public Connection::Handler {
public:
  void onRead(std::span<const char> data) override;
  void onClose(const Error* reason) override;
  void onWriteDrained() override;

  std::string received;
  bool closed = false;
  std::optional<Error> close_error;
  int drained = 0;
  std::function<void(std::span<const char>)> on_read;
  std::function<void()> on_close;
  std::function<void()> on_drained;
};

// Echoes every byte back, with backpressure: stops reading while more than `kHighWater` bytes
// wait to be sent. Closes when the peer closes.
class EchoServer {
public:
  static constexpr size_t kHighWater = 256 * 1024;

  // Listens on host:0. Fails the test if it cannot.
  EchoServer(Loop& loop, const std::string& host, TlsContextPtr implicit_tls = nullptr);
  ~EchoServer();
  [[nodiscard]] Endpoint endpoint() const { return listener_->endpoint(); }
  Listener& listener() { return *listener_; }
  // Peer addresses of every accepted connection, in order.
  std::vector<std::string> peers;
  std::vector<std::string> errors;
  size_t echoed = 0;

private:
  struct Session;
  ListenerPtr listener_;
  std::vector<std::unique_ptr<Session>> sessions_;
};

// What echo() saw.
struct EchoResult {
  std::optional<Error> connect_error; // the connect failed; nothing else was tried
  std::string echoed;
  bool closed = false;
  std::optional<Error> close_error;
};

// Connects to `endpoint` (an EchoServer), runs `connected` on the new connection, writes
// `message`, waits until as many bytes came back, then closes and waits for onClose.
EchoResult echo(TestLoop& loop, const Endpoint& endpoint, ConnectOptions options,
                const std::string& message,
                const std::function<void(Connection&)>& connected = nullptr);

// Listens on 127.0.0.1:0 (implicit TLS with `implicit_tls`) and keeps the connection it accepts
// last in `conn`, reporting to `handler`. Fails the test if it cannot listen.
class RecordingServer {
public:
  explicit RecordingServer(Loop& loop, TlsContextPtr implicit_tls = nullptr);
  [[nodiscard]] Endpoint endpoint() const { return listener_ ? listener_->endpoint() : Endpoint{}; }
  RecordingHandler handler;
  ConnectionPtr conn;

private:
  ListenerPtr listener_;
};

// Listens on 127.0.0.1:0 and keeps every connection it accepts without ever reading from it,
// writing to it or closing it: a peer that never answers. Fails the test if it cannot listen.
class SilentServer {
public:
  explicit SilentServer(Loop& loop);
  [[nodiscard]] Endpoint endpoint() const { return listener_ ? listener_->endpoint() : Endpoint{}; }

private:
  std::vector<ConnectionPtr> accepted_;
  ListenerPtr listener_;
};

// A callback that stops `loop` the `n`-th time it is called, through any of its copies (for
// example as the on_close of both ends of a connection).
std::function<void()> stopAfter(TestLoop& loop, int n);

// Connects to `endpoint` and runs the loop until the attempt completes; returns its error, or
// nullopt when it connected (the connection is then closed). Also checks that the completion
// never fires inside connect().
std::optional<Error> connectError(TestLoop& loop, const Endpoint& endpoint,
                                  ConnectOptions options = {});

// A deterministic byte pattern of `size` bytes.
std::string pattern(size_t size, unsigned seed = 1);

// Throwaway certificates, made once per test run in a temporary directory (removed at exit).
struct Pki {
  std::string dir;
  std::string ca_cert;     // a CA
  std::string server_cert; // issued by the CA for localhost, 127.0.0.1 and ::1
  std::string server_key;
  std::string self_cert; // self-signed, for localhost and 127.0.0.1
  std::string self_key;
  std::string server_fingerprint; // as `openssl x509 -fingerprint -sha256` prints it (AA:BB:..)
};
// nullptr if the openssl command is missing or failed (tests then skip).
const Pki* pki();

// Runs a shell command, returns its exit status.
int shell(const std::string& command);

} // namespace mailgate::net::test

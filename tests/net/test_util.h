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

#include "test_util.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <memory>

namespace mailgate::net::test {

TestLoop::TestLoop() {
  auto loop = Loop::create();
  if (!loop) {
    ADD_FAILURE() << loop.error().describe();
    std::abort();
  }
  loop_ = std::move(*loop);
}

void TestLoop::run(std::chrono::milliseconds limit) {
  auto guard = Timer::create(*loop_);
  guard->start(limit, [this] {
    timed_out_ = true;
    ADD_FAILURE() << "test loop did not finish within its time limit";
    loop_->stop();
  });
  loop_->run();
}

void RecordingHandler::onRead(std::span<const char> data) {
  received.append(data.data(), data.size());
  if (on_read) {
    on_read(data);
  }
}

void RecordingHandler::onClose(const Error* reason) {
  EXPECT_FALSE(closed) << "onClose fired twice";
  closed = true;
  if (reason != nullptr) {
    close_error = *reason;
  }
  if (on_close) {
    on_close();
  }
}

void RecordingHandler::onWriteDrained() {
  ++drained;
  if (on_drained) {
    on_drained();
  }
}

struct EchoServer::Session : Connection::Handler {
  EchoServer* server;
  ConnectionPtr conn;

  void onRead(std::span<const char> data) override {
    server->echoed += data.size();
    conn->write(std::string_view(data.data(), data.size()));
    if (conn->pendingWriteBytes() > kHighWater) {
      conn->pauseRead();
    }
  }
  void onClose(const Error* reason) override {
    if (reason != nullptr) {
      server->errors.push_back(reason->describe());
    }
  }
  void onWriteDrained() override { conn->resumeRead(); }
};

EchoServer::EchoServer(Loop& loop, const std::string& host, TlsContextPtr implicit_tls) {
  auto listener = Listener::listen(loop, Endpoint{host, 0}, [this](ConnectionPtr conn) {
    peers.push_back(conn->peerAddress());
    auto session = std::make_unique<Session>();
    session->server = this;
    session->conn = std::move(conn);
    session->conn->setHandler(session.get());
    sessions_.push_back(std::move(session));
  });
  if (!listener) {
    ADD_FAILURE() << listener.error().describe();
    return;
  }
  listener_ = std::move(*listener);
  listener_->onError([this](const Error& e) { errors.push_back(e.describe()); });
  if (implicit_tls) {
    listener_->setTls(implicit_tls);
  }
}

EchoServer::~EchoServer() = default;

EchoResult echo(TestLoop& loop, const Endpoint& endpoint, ConnectOptions options,
                const std::string& message, const std::function<void(Connection&)>& connected) {
  EchoResult out;
  RecordingHandler handler;
  ConnectionPtr conn;
  handler.on_read = [&](std::span<const char>) {
    if (handler.received.size() >= message.size()) {
      conn->close();
    }
  };
  handler.on_close = [&] { loop->stop(); };
  auto pending = connect(*loop, endpoint, std::move(options), [&](Result<ConnectionPtr> result) {
    if (!result) {
      out.connect_error = result.error();
      loop->stop();
      return;
    }
    conn = std::move(*result);
    if (connected) {
      connected(*conn);
    }
    conn->setHandler(&handler);
    conn->write(message);
  });
  loop.run();
  out.echoed = handler.received;
  out.closed = handler.closed;
  out.close_error = handler.close_error;
  return out;
}

RecordingServer::RecordingServer(Loop& loop, TlsContextPtr implicit_tls) {
  auto listener = Listener::listen(loop, Endpoint{"127.0.0.1", 0}, [this](ConnectionPtr c) {
    conn = std::move(c);
    conn->setHandler(&handler);
  });
  if (!listener) {
    ADD_FAILURE() << listener.error().describe();
    return;
  }
  listener_ = std::move(*listener);
  if (implicit_tls) {
    listener_->setTls(std::move(implicit_tls));
  }
}

SilentServer::SilentServer(Loop& loop) {
  auto listener = Listener::listen(loop, Endpoint{"127.0.0.1", 0},
                                   [this](ConnectionPtr c) { accepted_.push_back(std::move(c)); });
  if (!listener) {
    ADD_FAILURE() << listener.error().describe();
    return;
  }
  listener_ = std::move(*listener);
}

std::function<void()> stopAfter(TestLoop& loop, int n) {
  auto calls = std::make_shared<int>(0);
  return [&loop, n, calls] {
    if (++*calls == n) {
      loop->stop();
    }
  };
}

std::optional<Error> connectError(TestLoop& loop, const Endpoint& endpoint,
                                  ConnectOptions options) {
  std::optional<Error> error;
  bool inside_connect = true;
  auto pending = connect(*loop, endpoint, std::move(options), [&](Result<ConnectionPtr> result) {
    EXPECT_FALSE(inside_connect) << "connect() completed inline";
    if (!result) {
      error = result.error();
    }
    loop->stop();
  });
  inside_connect = false;
  loop.run();
  return error;
}

std::string pattern(size_t size, unsigned seed) {
  std::string out(size, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < size; ++i) {
    x = x * 1103515245u + 12345u;
    out[i] = static_cast<char>(x >> 16);
  }
  return out;
}

int shell(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

namespace {

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) {
    out.pop_back();
  }
  return out;
}

struct PkiHolder {
  std::optional<Pki> pki;
  ~PkiHolder() {
    if (pki) {
      std::error_code ec;
      std::filesystem::remove_all(pki->dir, ec);
    }
  }
};

std::optional<Pki> makePki() {
  if (shell("openssl version > /dev/null 2>&1") != 0) {
    return std::nullopt;
  }
  char tmpl[] = "/tmp/mailgate-net-test-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    return std::nullopt;
  }
  Pki p;
  p.dir = tmpl;
  p.ca_cert = p.dir + "/ca.pem";
  p.server_cert = p.dir + "/server.pem";
  p.server_key = p.dir + "/server.key";
  p.self_cert = p.dir + "/self.pem";
  p.self_key = p.dir + "/self.key";
  const std::string d = p.dir;
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
  const std::string commands[] = {
      fmt::format("openssl req -x509 {} -keyout {}/ca.key -out {} -days 2 "
                  "-subj /CN=mailgate-test-ca -addext basicConstraints=critical,CA:TRUE "
                  "-addext keyUsage=critical,keyCertSign,cRLSign",
                  ec, d, p.ca_cert),
      fmt::format("openssl req {} -keyout {} -out {}/server.csr -subj /CN=localhost", ec,
                  p.server_key, d),
      fmt::format("printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\\n"
                  "basicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > {}/server.ext",
                  d),
      fmt::format("openssl x509 -req -in {0}/server.csr -CA {1} -CAkey {0}/ca.key "
                  "-CAcreateserial -out {2} -days 2 -extfile {0}/server.ext",
                  d, p.ca_cert, p.server_cert),
      fmt::format("openssl req -x509 {} -keyout {} -out {} -days 2 -subj /CN=localhost "
                  "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
                  "-addext basicConstraints=critical,CA:FALSE",
                  ec, p.self_key, p.self_cert),
      fmt::format("openssl x509 -in {} -noout -fingerprint -sha256 | sed 's/^.*=//' > {}/fp",
                  p.server_cert, d),
  };
  for (const auto& c : commands) {
    if (shell("(" + c + ") > /dev/null 2>&1") != 0) {
      ADD_FAILURE() << "failed: " << c;
      std::error_code err;
      std::filesystem::remove_all(p.dir, err);
      return std::nullopt;
    }
  }
  p.server_fingerprint = readFile(d + "/fp");
  return p;
}

} // namespace

const Pki* pki() {
  static PkiHolder holder{makePki()};
  return holder.pki ? &*holder.pki : nullptr;
}

} // namespace mailgate::net::test

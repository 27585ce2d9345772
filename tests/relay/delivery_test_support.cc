#include "tests/relay/delivery_test_support.h"

#include "net/endpoint.h"
#include "net/tls_context.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <mutex>

namespace mailgate::relay::test {

int64_t wallClockMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "mailgate-relay-XXXXXX").string();
  if (mkdtemp(tmpl.data()) != nullptr) {
    path_ = tmpl;
  }
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

LoopThread::LoopThread() {
  auto loop = net::Loop::create();
  if (!loop) {
    ADD_FAILURE() << loop.error().describe();
    std::abort();
  }
  loop_ = std::move(*loop);
  thread_ = std::thread([this] { loop_->run(); });
}

LoopThread::~LoopThread() {
  stop();
}

void LoopThread::stop() {
  if (stopped_) {
    return;
  }
  stopped_ = true;
  loop_->stop();
  thread_.join();
}

bool LoopThread::eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (call([&] { return pred(); })) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return call([&] { return pred(); });
}

// ----------------------------------------------------------------------------------------------

namespace {

template <typename T, typename Start> Result<T> await(Start start) {
  auto promise = std::make_shared<std::promise<Result<T>>>();
  auto future = promise->get_future();
  start([promise](Result<T> r) { promise->set_value(std::move(r)); });
  if (future.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    ADD_FAILURE() << "store completion never arrived";
    std::abort();
  }
  return future.get();
}

} // namespace

TestStore::TestStore(LoopThread& loop) {
  store::SqliteStoreOptions options;
  options.data_dir = dir_.path();
  net::Loop* l = &loop.loop();
  options.post = [l](std::function<void()> fn) { l->post(std::move(fn)); };
  auto s = store::openSqliteQueueStore(std::move(options));
  if (!s) {
    ADD_FAILURE() << s.error().describe();
    std::abort();
  }
  store_ = std::move(*s);
}

QueuedMessage TestStore::add(NewMessage msg) {
  auto id = await<std::string>([&](auto done) { store_->enqueue(std::move(msg), done); });
  EXPECT_TRUE(id.has_value()) << id.error().describe();
  return get(*id);
}

QueuedMessage TestStore::get(const std::string& id) {
  auto m = await<QueuedMessage>([&](auto done) { store_->get(id, done); });
  EXPECT_TRUE(m.has_value()) << m.error().describe();
  return m ? *m : QueuedMessage{};
}

QueuedMessage TestStore::waitFinal(const std::string& id, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    QueuedMessage m = get(id);
    if (m.state == MessageState::kSent || m.state == MessageState::kFailed ||
        std::chrono::steady_clock::now() > until) {
      return m;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::vector<store::StoredEvent> TestStore::events() {
  auto evs = await<std::vector<store::StoredEvent>>(
      [&](auto done) { store_->listEvents(0, 100000, done); });
  EXPECT_TRUE(evs.has_value()) << evs.error().describe();
  return evs ? *evs : std::vector<store::StoredEvent>{};
}

std::vector<store::StoredEvent> TestStore::events(const std::string& type) {
  std::vector<store::StoredEvent> out;
  for (auto& e : events()) {
    if (e.type == type) {
      out.push_back(std::move(e));
    }
  }
  return out;
}

NewMessage makeMessage(std::vector<std::string> recipients, std::string body,
                       std::chrono::milliseconds lifetime) {
  NewMessage m;
  m.mail_from = "sender@crm.example";
  m.recipients = std::move(recipients);
  m.body = body.empty() ? std::string("Subject: test\r\n\r\nhello\r\n") : std::move(body);
  m.submitter = "crm";
  m.now_ms = wallClockMs();
  m.expires_at_ms = m.now_ms + lifetime.count();
  return m;
}

config::Config makeConfig(uint16_t port, uint32_t max_connections) {
  config::Config c;
  c.node.id = "gw-test";
  config::Relay r;
  r.name = "default";
  r.server.host = "127.0.0.1";
  r.server.port = port;
  r.server.tls = config::TlsMode::kNone;
  r.limits.max_connections = max_connections;
  c.relays["default"] = r;
  c.queue.retry_initial = std::chrono::milliseconds(30);
  c.queue.retry_max = std::chrono::milliseconds(120);
  c.queue.lifetime = std::chrono::hours(1);
  c.queue.messages_per_connection = 100;
  return c;
}

config::Mailbox makeMailbox(const std::string& address, uint16_t m365_port,
                            const std::string& password) {
  config::Mailbox m;
  m.address = address;
  m.auth = config::MailboxAuth{config::AuthMethod::kAppPassword, Secret(password), std::nullopt};
  m.smtp.host = "127.0.0.1";
  m.smtp.port = m365_port;
  m.smtp.tls = config::TlsMode::kNone;
  return m;
}

config::Config makeM365Config(uint16_t m365_port, uint16_t relay_port, const std::string& address,
                              const std::string& password) {
  config::Config c = makeConfig(relay_port, 2);
  config::Tenant t;
  t.id = "acme";
  t.limits.messages_per_minute = 6'000'000; // one start every 10 µs: no pacing in the way
  t.fallback = {"default"};
  t.mailboxes.push_back(makeMailbox(address, m365_port, password));
  c.tenants.push_back(std::move(t));
  return c;
}

NewMessage makeMailboxMessage(const std::string& mailbox, std::vector<std::string> recipients,
                              std::chrono::milliseconds lifetime) {
  NewMessage m = makeMessage(std::move(recipients), {}, lifetime);
  m.mail_from = mailbox;
  m.tenant = "acme";
  m.mailbox = mailbox;
  m.route.clear();
  return m;
}

FakeSmtpServer::Options m365ServerOptions(const std::string& address, const std::string& password,
                                          uint16_t port) {
  FakeSmtpServer::Options o;
  o.auth_mechanisms = "LOGIN";
  o.username = address;
  o.password = password;
  o.port = port;
  return o;
}

uint16_t unusedPort() {
  auto loop = net::Loop::create();
  if (!loop) {
    return 0;
  }
  auto l = net::Listener::listen(**loop, net::Endpoint{"127.0.0.1", 0}, [](net::ConnectionPtr) {});
  return l ? (*l)->port() : 0;
}

// ----------------------------------------------------------------------------------------------

struct FakeSmtpServer::Session : net::Connection::Handler {
  enum class Mode { kCommand, kData, kAuthLoginUser, kAuthLoginPass };

  Session(FakeSmtpServer& s, net::ConnectionPtr c, int n)
      : server(s), conn(std::move(c)), number(n) {
    tls = conn->tlsActive();
    conn->setHandler(this);
    send("220 fake.test ESMTP ready");
  }
  ~Session() override {
    if (conn) {
      conn->setHandler(nullptr);
    }
  }

  void send(const std::string& line) { conn->write(line + "\r\n"); }

  // Sends `reply` unless the hook asked for something else; returns false when the session ended.
  bool answer(std::string reply, const std::string& fallback) {
    if (reply.empty()) {
      reply = fallback;
    }
    if (reply == kDrop) {
      conn->abort();
      ended = true;
      return false;
    }
    if (reply == kHold) {
      server.held_ = this;
      server.holding = true;
      return true;
    }
    send(reply);
    if (reply.starts_with("421")) {
      conn->close();
      ended = true;
      return false;
    }
    return true;
  }

  void onRead(std::span<const char> data) override {
    if (ended) {
      return;
    }
    buffer.append(data.data(), data.size());
    size_t pos = 0;
    while (!ended) {
      const size_t eol = buffer.find("\r\n", pos);
      if (eol == std::string::npos) {
        break;
      }
      std::string line = buffer.substr(pos, eol - pos);
      pos = eol + 2;
      if (!handleLine(line)) {
        buffer.clear();
        return;
      }
    }
    buffer.erase(0, pos);
  }

  void onClose(const Error*) override {
    if (!closed) {
      closed = true;
      --server.active;
    }
    ended = true;
  }

  static std::string upper(std::string s) {
    for (auto& c : s) {
      c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return s;
  }

  static std::string addressOf(const std::string& line) {
    const auto open = line.find('<');
    const auto close = line.find('>', open);
    if (open == std::string::npos || close == std::string::npos) {
      return {};
    }
    return line.substr(open + 1, close - open - 1);
  }

  static std::string b64decode(const std::string& in) {
    static const std::string chars =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    int val = 0;
    int bits = -8;
    for (char c : in) {
      const auto p = chars.find(c);
      if (p == std::string::npos) {
        break;
      }
      val = (val << 6) + static_cast<int>(p);
      bits += 6;
      if (bits >= 0) {
        out.push_back(static_cast<char>((val >> bits) & 0xFF));
        bits -= 8;
      }
    }
    return out;
  }

  void authResult(bool ok) {
    mode = Mode::kCommand;
    if (ok) {
      authenticated = true;
      send("235 2.7.0 Authentication successful");
    } else {
      ++server.auth_failures;
      send("535 5.7.8 Error: authentication failed");
    }
  }

  // Returns false when the rest of the buffer must be dropped (STARTTLS, end of session).
  bool handleLine(const std::string& line) {
    const Options& o = server.options_;
    if (mode == Mode::kData) {
      if (line == ".") {
        mode = Mode::kCommand;
        ++server.data_ends;
        Message msg{number, mail_from, rcpts, body, tls, authenticated};
        std::string reply = server.on_data_end ? server.on_data_end(txn, msg) : std::string();
        const std::string effective = reply.empty() ? "250 2.0.0 queued" : reply;
        if (effective.starts_with("2")) {
          server.accepted.push_back(msg);
        } else if (effective == kHold) {
          server.held_message_ = msg;
        }
        mail_from.clear();
        rcpts.clear();
        body.clear();
        return answer(reply, "250 2.0.0 queued");
      }
      body += (line.starts_with(".") ? line.substr(1) : line) + "\r\n";
      return true;
    }
    if (mode == Mode::kAuthLoginUser) {
      login_user = b64decode(line);
      mode = Mode::kAuthLoginPass;
      send("334 UGFzc3dvcmQ6");
      return true;
    }
    if (mode == Mode::kAuthLoginPass) {
      authResult(login_user == o.username && b64decode(line) == o.password);
      return true;
    }
    const std::string verb = upper(line.substr(0, line.find(' ')));
    if (verb == "EHLO") {
      std::string r = "250-fake.test\r\n";
      if (o.pipelining) {
        r += "250-PIPELINING\r\n";
      }
      if (o.starttls && !tls) {
        r += "250-STARTTLS\r\n";
      }
      if (!o.auth_mechanisms.empty()) {
        r += "250-AUTH " + o.auth_mechanisms + "\r\n";
      }
      r += "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE 100000000";
      send(r);
    } else if (verb == "HELO") {
      send("250 fake.test");
    } else if (verb == "STARTTLS") {
      send("220 2.0.0 Ready to start TLS");
      conn->startTls(o.starttls, "", [this](Result<void> r) {
        if (r) {
          tls = true;
        } else {
          server.errors.push_back(r.error().describe());
        }
      });
      return false; // what followed in plaintext is not read as protected data
    } else if (verb == "AUTH") {
      const std::string rest = line.size() > 5 ? line.substr(5) : std::string();
      const std::string mech = upper(rest.substr(0, rest.find(' ')));
      const std::string arg =
          rest.find(' ') == std::string::npos ? "" : rest.substr(rest.find(' ') + 1);
      if (mech == "PLAIN") {
        authResult(b64decode(arg) ==
                   std::string("\0", 1) + o.username + std::string("\0", 1) + o.password);
      } else if (mech == "LOGIN") {
        mode = Mode::kAuthLoginUser;
        send("334 VXNlcm5hbWU6");
      } else if (mech == "XOAUTH2") {
        authResult(b64decode(arg) ==
                   "user=" + o.username + "\x01" + "auth=Bearer " + o.password + "\x01\x01");
      } else {
        send("504 5.5.4 unknown mechanism");
      }
    } else if (verb == "MAIL") {
      txn = ++server.transactions;
      mail_from = addressOf(line);
      rcpts.clear();
      std::string reply = server.on_mail ? server.on_mail(txn, mail_from) : std::string();
      if (!reply.empty() && !reply.starts_with("2")) {
        mail_from.clear();
        txn_failed = true;
      } else {
        txn_failed = false;
      }
      return answer(reply, "250 2.1.0 ok");
    } else if (verb == "RCPT") {
      const std::string rcpt = addressOf(line);
      std::string reply = server.on_rcpt ? server.on_rcpt(txn, rcpt) : std::string();
      if (txn_failed) {
        reply = "503 5.5.1 need MAIL first";
      }
      if (reply.empty() || reply.starts_with("2")) {
        rcpts.push_back(rcpt);
      }
      return answer(reply, "250 2.1.5 ok");
    } else if (verb == "DATA") {
      if (rcpts.empty()) {
        send("554 5.5.1 no valid recipients");
        return true;
      }
      std::string reply = server.on_data ? server.on_data(txn) : std::string();
      if (reply.empty() || reply.starts_with("354")) {
        mode = Mode::kData;
        body.clear();
      }
      return answer(reply, "354 go ahead");
    } else if (verb == "RSET") {
      mail_from.clear();
      rcpts.clear();
      send("250 2.0.0 ok");
    } else if (verb == "NOOP") {
      send("250 2.0.0 ok");
    } else if (verb == "QUIT") {
      ++server.quits;
      send("221 2.0.0 bye");
      conn->close();
      ended = true;
      return false;
    } else {
      send("502 5.5.2 unknown command");
    }
    return true;
  }

  FakeSmtpServer& server;
  net::ConnectionPtr conn;
  int number;
  Mode mode = Mode::kCommand;
  std::string buffer;
  std::string mail_from;
  std::vector<std::string> rcpts;
  std::string body;
  std::string login_user;
  int txn = 0;
  bool txn_failed = false;
  bool tls = false;
  bool authenticated = false;
  bool ended = false;
  bool closed = false;
};

FakeSmtpServer::FakeSmtpServer(net::Loop& loop) : FakeSmtpServer(loop, Options{}) {}

FakeSmtpServer::FakeSmtpServer(net::Loop& loop, Options options)
    : loop_(loop), options_(std::move(options)) {
  auto l = net::Listener::listen(
      loop_, net::Endpoint{"127.0.0.1", options_.port}, [this](net::ConnectionPtr c) {
        ++connections;
        ++active;
        max_active = std::max(max_active, active);
        sessions_.push_back(std::make_unique<Session>(*this, std::move(c), connections));
      });
  if (!l) {
    ADD_FAILURE() << l.error().describe();
    return;
  }
  listener_ = std::move(*l);
  if (options_.implicit_tls) {
    listener_->setTls(options_.implicit_tls);
  }
  listener_->onError([this](const Error& e) { errors.push_back(e.describe()); });
}

FakeSmtpServer::~FakeSmtpServer() = default;

uint16_t FakeSmtpServer::port() const {
  return listener_ ? listener_->port() : 0;
}

void FakeSmtpServer::releaseHeld(const std::string& reply) {
  holding = false;
  Session* s = held_;
  held_ = nullptr;
  if (s != nullptr && !s->ended) {
    s->send(reply);
    if (reply.starts_with("2") && held_message_) {
      accepted.push_back(*held_message_);
    }
  }
  held_message_.reset();
}

// ----------------------------------------------------------------------------------------------

const TestCert& testCert() {
  static TestCert cert;
  static std::once_flag once;
  static TempDir dir;
  std::call_once(once, [] {
    const std::string c = dir.path() + "/cert.pem";
    const std::string k = dir.path() + "/key.pem";
    const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost"
                            " -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout '" +
                            k + "' -out '" + c + "' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) {
      cert.cert = c;
      cert.key = k;
    }
  });
  return cert;
}

DeliveryOptions fastOptions() {
  DeliveryOptions o;
  o.connect_backoff = net::BackoffOptions{std::chrono::milliseconds(10),
                                          std::chrono::milliseconds(80), 2.0, 0.2, 7};
  o.store_retry = std::chrono::milliseconds(20);
  o.retry_jitter = 0;
  return o;
}

std::unique_ptr<FakeSmtpServer> EngineTest::makeServer(FakeSmtpServer::Options o) {
  return loop.call([&] { return std::make_unique<FakeSmtpServer>(loop.loop(), o); });
}

uint16_t EngineTest::portOf(const std::unique_ptr<FakeSmtpServer>& s) {
  return loop.call([&] { return s->port(); });
}

void EngineTest::createEngine(const config::Config& config) {
  engine = loop.call([&]() -> std::unique_ptr<DeliveryEngine> {
    auto e = DeliveryEngine::create(loop.loop(), config, store->store(), options);
    EXPECT_TRUE(e.has_value()) << e.error().describe();
    return e ? std::move(*e) : nullptr;
  });
  ASSERT_NE(engine, nullptr);
}

std::string EngineTest::submit(NewMessage m) {
  QueuedMessage q = store->add(std::move(m));
  loop.call([&] { engine->schedule(q); });
  return q.id;
}

MailboxStatus EngineTest::status(const std::string& address) {
  auto s = loop.call([&] { return engine->mailboxStatus(address); });
  EXPECT_TRUE(s.has_value()) << address;
  return s ? *s : MailboxStatus{};
}

bool EngineTest::statusIs(const std::function<bool(const MailboxStatus&)>& pred,
                          const std::string& address) {
  return loop.eventually([&] {
    auto s = engine->mailboxStatus(address);
    return s && pred(*s);
  });
}

} // namespace mailgate::relay::test

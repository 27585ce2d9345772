// Helpers for the delivery tests: a net::Loop running on its own thread (so a test reads like a
// sequence of steps), a scripted SMTP server on that loop, the real SQLite store in a temporary
// directory, and throwaway certificates made with the openssl command.
#pragma once

#include "config/config.h"
#include "gateway/store/sqlite_queue_store.h"
#include "net/connection.h"
#include "net/listener.h"
#include "net/loop.h"
#include "relay/delivery_engine.h"
#include "relay/queue_store.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <gtest/gtest.h>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace mailgate::relay::test {

int64_t wallClockMs();

class TempDir {
public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }

private:
  std::string path_;
};

// A loop run by a background thread. Everything that touches net/ objects or the engine goes
// through call(), which runs on the loop thread and waits.
class LoopThread {
public:
  LoopThread();
  ~LoopThread(); // stops the loop and joins
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  net::Loop& loop() { return *loop_; }

  // Runs `fn` on the loop thread and returns its result.
  template <typename Fn> auto call(Fn fn) -> decltype(fn()) {
    using R = decltype(fn());
    auto promise = std::make_shared<std::promise<R>>();
    auto future = promise->get_future();
    loop_->post([promise, &fn] {
      if constexpr (std::is_void_v<R>) {
        fn();
        promise->set_value();
      } else {
        promise->set_value(fn());
      }
    });
    return future.get();
  }

  // Polls `pred` on the loop thread until it holds; false after `limit` (a hang guard only).
  bool eventually(const std::function<bool()>& pred,
                  std::chrono::milliseconds limit = std::chrono::seconds(20));

  void stop();

private:
  net::LoopPtr loop_;
  std::thread thread_;
  bool stopped_ = false;
};

// The real store, opened on a temporary directory, completions posted to the loop. Synchronous
// wrappers for the test thread.
class TestStore {
public:
  explicit TestStore(LoopThread& loop);
  store::SqliteQueueStore& store() { return *store_; }
  // Drops the store (completes its operations, posting them to the loop).
  void close() { store_.reset(); }

  // Enqueues a message and returns it as QueuedMessage (as the submission server hands it on).
  QueuedMessage add(NewMessage msg);
  QueuedMessage get(const std::string& id);
  // Waits until the message is sent or failed; returns it.
  QueuedMessage waitFinal(const std::string& id,
                          std::chrono::milliseconds limit = std::chrono::seconds(20));
  // Every event in the outbox, oldest first.
  std::vector<store::StoredEvent> events();
  // Those of one type.
  std::vector<store::StoredEvent> events(const std::string& type);

private:
  TempDir dir_;
  std::unique_ptr<store::SqliteQueueStore> store_;
};

// A NewMessage due now, with the given recipients and a small body.
NewMessage makeMessage(std::vector<std::string> recipients, std::string body = {},
                       std::chrono::milliseconds lifetime = std::chrono::hours(1));

// A Config with one relay "default" at 127.0.0.1:port, no TLS, tiny retry delays.
config::Config makeConfig(uint16_t port, uint32_t max_connections = 2);

// makeConfig(relay_port) plus tenant "acme" with fallback {"default"} and one mailbox, `address`,
// whose Microsoft 365 submission is 127.0.0.1:m365_port without TLS (AUTH LOGIN with the address
// and `password`). No pacing, so tests do not wait for it.
config::Config makeM365Config(uint16_t m365_port, uint16_t relay_port,
                              const std::string& address = "rep1@acme.example",
                              const std::string& password = "app-password");
// A mailbox of that shape, for a test to add to a tenant.
config::Mailbox makeMailbox(const std::string& address, uint16_t m365_port,
                            const std::string& password = "app-password");
// A message of `mailbox` (tenant "acme"), routed by the router.
NewMessage makeMailboxMessage(const std::string& mailbox, std::vector<std::string> recipients,
                              std::chrono::milliseconds lifetime = std::chrono::hours(1));
// A port nobody listens on right now (bound, then released).
uint16_t unusedPort();

// Scripted SMTP server on the loop. Hooks run on the loop thread and return the reply line
// (without CRLF); an empty string means the default reply, kDrop closes the connection without
// a reply, kHold keeps the reply until releaseHeld(). A 421 reply closes the connection after it.
class FakeSmtpServer {
public:
  static constexpr const char* kDrop = "DROP";
  static constexpr const char* kHold = "HOLD";

  struct Options {
    bool pipelining = true;
    net::TlsContextPtr starttls; // offers STARTTLS when set
    net::TlsContextPtr implicit_tls;
    std::string auth_mechanisms; // e.g. "PLAIN LOGIN"; empty: no AUTH
    std::string username;
    std::string password; // the password, or the token for XOAUTH2
    uint16_t port = 0;
  };

  struct Message {
    int connection = 0; // 1-based connection number
    std::string mail_from;
    std::vector<std::string> recipients; // accepted ones
    std::string body;                    // un-dot-stuffed
    bool tls = false;
    bool authenticated = false;
  };

  struct Session;

  // Hooks: `n` is the 1-based number of the transaction (MAIL command) across all connections.
  std::function<std::string(int n, const std::string& from)> on_mail;
  std::function<std::string(int n, const std::string& rcpt)> on_rcpt;
  std::function<std::string(int n)> on_data;
  std::function<std::string(int n, const Message& msg)> on_data_end;

  // Call on the loop thread.
  explicit FakeSmtpServer(net::Loop& loop);
  FakeSmtpServer(net::Loop& loop, Options options);
  ~FakeSmtpServer();
  [[nodiscard]] uint16_t port() const;
  void releaseHeld(const std::string& reply = "250 2.0.0 released");

  // Read on the loop thread.
  std::vector<Message> accepted; // answered 2xx at the end of data
  int connections = 0;
  int active = 0;
  int max_active = 0;
  int transactions = 0;
  int quits = 0;
  int auth_failures = 0;
  int data_ends = 0; // complete bodies received, whatever the reply
  std::vector<std::string> errors;
  bool holding = false;

private:
  friend struct Session;
  net::Loop& loop_;
  Options options_;
  net::ListenerPtr listener_;
  std::vector<std::unique_ptr<Session>> sessions_;
  Session* held_ = nullptr;
  std::optional<Message> held_message_;
};

// A fake Microsoft 365 submission server: AUTH LOGIN for `address` with `password`.
FakeSmtpServer::Options m365ServerOptions(const std::string& address = "rep1@acme.example",
                                          const std::string& password = "app-password",
                                          uint16_t port = 0);

// A self-signed certificate for 127.0.0.1 and localhost, made once per run. Empty paths if the
// openssl command is missing (TLS tests then skip).
struct TestCert {
  std::string cert;
  std::string key;
};
const TestCert& testCert();

// Short backoffs and no jitter, so that engine tests do not wait for production timers.
DeliveryOptions fastOptions();

// What the engine tests share: a loop thread, the real store, an engine and fake servers made on
// the loop. Each fixture creates its engine (and owns the configuration it gives it).
class EngineTest : public ::testing::Test {
protected:
  std::unique_ptr<FakeSmtpServer> makeServer(FakeSmtpServer::Options o = {});
  uint16_t portOf(const std::unique_ptr<FakeSmtpServer>& s);
  // Creates the engine over `config` (which must outlive it) with `options`; fails the test when
  // create() fails.
  void createEngine(const config::Config& config);
  // Stores the message and hands it to the engine, as the submission server does; its id.
  std::string submit(NewMessage m);
  // The engine's status of `address` (a test failure when there is none).
  MailboxStatus status(const std::string& address = "rep1@acme.example");
  // Waits until the status of `address` satisfies `pred`.
  bool statusIs(const std::function<bool(const MailboxStatus&)>& pred,
                const std::string& address = "rep1@acme.example");

  LoopThread loop;
  std::unique_ptr<TestStore> store = std::make_unique<TestStore>(loop);
  std::unique_ptr<DeliveryEngine> engine;
  DeliveryOptions options = fastOptions();
};

} // namespace mailgate::relay::test

// Delivery to a real SMTP server nobody on this project wrote: Postfix's smtp-sink, started by
// the test on a free loopback port and stopped by PID. It dumps each transaction to a file, which
// is how the test counts what arrived.
#include "relay/delivery_engine.h"
#include "tests/relay/delivery_test_support.h"

#include <csignal>
#include <filesystem>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace mailgate::relay::test {
namespace {

constexpr const char* kSmtpSink = "/usr/sbin/smtp-sink";

class SmtpSink {
public:
  // Listens on 127.0.0.1:port, dumping each transaction into dir.
  SmtpSink(uint16_t port, const std::string& dir) {
    chmod(dir.c_str(), 0777); // as root it runs as nobody, which must write here
    std::vector<std::string> args{kSmtpSink};
    if (geteuid() == 0) {
      args.insert(args.end(), {"-u", "nobody"});
    }
    args.insert(args.end(), {"-d", dir + "/msg.", "127.0.0.1:" + std::to_string(port), "64"});
    std::vector<char*> argv;
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, kSmtpSink, nullptr, nullptr, argv.data(), environ) != 0) {
      pid_ = -1;
    }
  }
  ~SmtpSink() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
  }
  SmtpSink(const SmtpSink&) = delete;
  SmtpSink& operator=(const SmtpSink&) = delete;
  [[nodiscard]] bool running() const { return pid_ > 0; }

private:
  pid_t pid_ = -1;
};

size_t countFiles(const std::string& dir) {
  size_t n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    n += e.path().filename().string().starts_with("msg.") ? 1 : 0;
  }
  return n;
}

TEST(SmtpSinkPeer, DeliversEveryMessageOverPooledConnections) {
  if (access(kSmtpSink, X_OK) != 0) {
    GTEST_SKIP() << kSmtpSink << " is not installed";
  }
  TempDir dumps;
  const uint16_t port = unusedPort();
  ASSERT_NE(port, 0);
  SmtpSink sink(port, dumps.path());
  ASSERT_TRUE(sink.running());

  LoopThread loop;
  TestStore store(loop);
  DeliveryOptions options;
  // smtp-sink may need a moment to listen: the engine's backoff covers it, as for any relay.
  options.connect_backoff = net::BackoffOptions{std::chrono::milliseconds(20),
                                                std::chrono::milliseconds(200), 2.0, 0.2, 1};
  auto config = makeConfig(port, 2);
  config.queue.messages_per_connection = 4;
  auto engine = loop.call([&] {
    return std::move(*DeliveryEngine::create(loop.loop(), config, store.store(), options));
  });
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) {
    QueuedMessage q = store.add(makeMessage(
        {"r" + std::to_string(i) + "@example.net", "s" + std::to_string(i) + "@example.net"},
        "Subject: sink " + std::to_string(i) + "\r\n\r\n.leading dot\r\nbody\r\n"));
    ids.push_back(q.id);
    loop.call([&] { engine->schedule(q); });
  }
  for (const auto& id : ids) {
    QueuedMessage m = store.waitFinal(id);
    EXPECT_EQ(m.state, MessageState::kSent) << m.last_reply;
    EXPECT_EQ(m.attempts, 1);
    for (const auto& r : m.recipients) {
      EXPECT_EQ(r.status, RecipientStatus::kSent) << r.last_reply;
    }
  }
  EXPECT_TRUE(loop.eventually([&] { return countFiles(dumps.path()) == 10; }));
  const DeliveryStats stats = loop.call([&] { return engine->stats(); });
  EXPECT_EQ(stats.delivered, 10U);
  EXPECT_GE(stats.connections_ready, 3U); // 4 messages per connection at most
  loop.call([&] { engine.reset(); });
  store.close();
}

} // namespace
} // namespace mailgate::relay::test

#include "gateway/daemon.h"

#include "base/log.h"
#include "config/loader.h"
#include "gateway/store/sqlite_queue_store.h"
#include "net/loop.h"
#include "net/timer.h"
#include "relay/delivery_engine.h"
#include "relay/submission_server.h"

#include <chrono>
#include <csignal>

namespace mailgate::gateway {

namespace {

// How long SIGTERM waits for SMTP sessions and delivery attempts in flight. Past it, whatever is
// still sending is left `sending` in the store and goes out again after the next start
// (at-least-once; docs/queue.md).
constexpr std::chrono::seconds kDrainDeadline{60};

int64_t wallClockMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

} // namespace

struct Daemon::Impl {
  config::Config config;
  std::string config_path;
  std::shared_ptr<spdlog::logger> log = logger("main");
  net::LoopPtr loop;
  std::unique_ptr<store::SqliteQueueStore> store;
  std::unique_ptr<relay::DeliveryEngine> delivery;
  std::unique_ptr<relay::SubmissionServer> smtp;
  net::TimerPtr drain_deadline;
  bool draining = false;

  void onTerminate();
  void onReload();
  void finish();
};

Daemon::Daemon(PrivateTag, std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Daemon::~Daemon() = default;

Result<std::unique_ptr<Daemon>> Daemon::create(config::Config config, std::string config_path) {
  auto impl = std::make_unique<Impl>();
  impl->config = std::move(config);
  impl->config_path = std::move(config_path);

  auto loop = net::Loop::create();
  if (!loop) {
    return std::unexpected(loop.error());
  }
  impl->loop = std::move(*loop);
  net::Loop* loop_ptr = impl->loop.get();

  store::SqliteStoreOptions store_options;
  store_options.data_dir = impl->config.node.data_dir;
  store_options.batch_max = impl->config.queue.commit_batch_max;
  store_options.post = [loop_ptr](std::function<void()> fn) { loop_ptr->post(std::move(fn)); };
  auto store = store::openSqliteQueueStore(std::move(store_options));
  if (!store) {
    return std::unexpected(store.error());
  }
  impl->store = std::move(*store);

  auto recovered = impl->store->recover(wallClockMs());
  if (!recovered) {
    return std::unexpected(recovered.error());
  }

  auto delivery = relay::DeliveryEngine::create(*impl->loop, impl->config, *impl->store);
  if (!delivery) {
    return std::unexpected(delivery.error());
  }
  impl->delivery = std::move(*delivery);

  relay::DeliveryEngine* engine = impl->delivery.get();
  auto smtp = relay::SubmissionServer::create(
      *impl->loop, impl->config, *impl->store,
      [engine](relay::QueuedMessage msg) { engine->schedule(std::move(msg)); });
  if (!smtp) {
    return std::unexpected(smtp.error());
  }
  impl->smtp = std::move(*smtp);

  impl->log->info("{} unsent message(s) recovered from {}", recovered->size(), impl->store->path());
  for (auto& msg : *recovered) {
    impl->delivery->schedule(std::move(msg));
  }

  Impl* raw = impl.get();
  for (int sig : {SIGTERM, SIGINT}) {
    if (auto r = impl->loop->onSignal(sig, [raw] { raw->onTerminate(); }); !r) {
      return std::unexpected(r.error());
    }
  }
  if (auto r = impl->loop->onSignal(SIGHUP, [raw] { raw->onReload(); }); !r) {
    return std::unexpected(r.error());
  }
  impl->log->info("SMTP submission on {}, relay default at {}",
                  impl->config.listeners.smtp.address.str(), [&] {
                    const auto* relay = impl->config.findRelay("default");
                    return relay ? relay->server.host + ":" + std::to_string(relay->server.port)
                                 : std::string("(none)");
                  }());
  return std::make_unique<Daemon>(PrivateTag{}, std::move(impl));
}

void Daemon::Impl::onTerminate() {
  if (draining) {
    return;
  }
  draining = true;
  log->info("draining: no new connections; finishing sessions and deliveries in flight");
  drain_deadline = net::Timer::create(*loop);
  drain_deadline->start(kDrainDeadline, [this] {
    log->warn("drain deadline of {} s passed; stopping with work in flight (it is recovered at "
              "the next start)",
              kDrainDeadline.count());
    finish();
  });
  smtp->drain([this] {
    log->info("submission sessions finished");
    delivery->drain([this] {
      log->info("deliveries in flight finished");
      finish();
    });
  });
}

void Daemon::Impl::onReload() {
  // Applying a new configuration to live components is the control API's issue; until then a
  // reload validates the file so the operator learns at once whether the next start will work.
  auto fresh = config::loadFile(config_path);
  if (!fresh) {
    log->error("reload: {} is invalid; the running configuration stays:\n{}", config_path,
               fresh.error().message);
    return;
  }
  log->warn("reload: {} is valid; changes take effect at the next restart (live reload is not "
            "implemented yet)",
            config_path);
}

void Daemon::Impl::finish() {
  drain_deadline.reset();
  smtp.reset();
  delivery.reset();
  // Completes every store operation still queued; their completions run in one more loop turn.
  store.reset();
  loop->stop();
}

int Daemon::run() {
  impl_->loop->run();
  impl_->log->info("stopped");
  return 0;
}

} // namespace mailgate::gateway

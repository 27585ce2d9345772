// Internal to net/: what a Loop holds. Never include this outside net/.
#pragma once

#include "net/loop.h"

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <uv.h>
#include <vector>

namespace mailgate::net {

// An internal object that owns uv handles or requests (timer, connection, listener, resolver).
// It registers with its loop while a handle is open and unregisters in that handle's close
// callback, so the loop can close everything when it shuts down.
class LoopResource {
public:
  virtual ~LoopResource() = default;
  // Called once by the loop when it shuts down: close handles / cancel requests now and never call
  // user code again. Must tolerate being called while a close is already in progress.
  virtual void shutdown() = 0;
};

struct Loop::Impl {
  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  void add(LoopResource* r) { resources.insert(r); }
  void remove(LoopResource* r) { resources.erase(r); }
  void defer(std::function<void()> fn);
  void beforePoll(std::function<void()> fn);
  // Closes every handle and request and runs libuv until they are gone. Idempotent.
  void shutdown();

  // Reads land here: one buffer per loop is enough because a read callback consumes its bytes
  // before returning and callbacks never nest.
  static constexpr size_t kReadBufferSize = 64 * 1024;
  std::unique_ptr<char[]> read_buffer = std::make_unique<char[]>(kReadBufferSize);
  // Decrypted TLS records are read into this one before they reach Handler::onRead.
  static constexpr size_t kPlainBufferSize = 16 * 1024;
  std::unique_ptr<char[]> plain_buffer = std::make_unique<char[]>(kPlainBufferSize);

  Loop* owner = nullptr;
  uv_loop_t uv{};
  uv_async_t async{};     // wakes the loop for post() and stop()
  uv_idle_t idle{};       // active while deferred work waits: runs it and keeps poll from blocking
  uv_prepare_t prepare{}; // active while before-poll hooks wait
  bool idle_active = false;
  bool prepare_active = false;

  std::thread::id thread;
  bool running = false;
  bool finished = false; // shutdown() has run: nothing new may start

  std::atomic<bool> stop_requested{false};
  std::mutex post_mutex;
  bool accepting_posts = true;               // guarded by post_mutex; false once `async` is closing
  std::vector<std::function<void()>> posted; // guarded by post_mutex

  std::vector<std::function<void()>> deferred;
  std::vector<std::function<void()>> before_poll;

  struct SignalWatch {
    uv_signal_t handle{};
    std::function<void()> fn;
  };
  std::map<int, std::unique_ptr<SignalWatch>> signals;
  std::vector<std::unique_ptr<SignalWatch>> failed_signals; // initialised, never started

  std::unordered_set<LoopResource*> resources;
};

} // namespace mailgate::net

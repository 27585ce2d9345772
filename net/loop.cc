#include "net/loop.h"

#include "net/internal/loop_impl.h"
#include "net/internal/uv_util.h"

#include <cassert>
#include <csignal>
#include <fmt/format.h>

namespace mailgate::net {
namespace {

void onAsync(uv_async_t* handle) {
  auto* impl = static_cast<Loop::Impl*>(handle->data);
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard lock(impl->post_mutex);
    batch.swap(impl->posted);
  }
  for (auto& fn : batch) {
    fn();
  }
  if (impl->stop_requested.load()) {
    uv_stop(&impl->uv);
  }
}

void onIdle(uv_idle_t* handle) {
  auto* impl = static_cast<Loop::Impl*>(handle->data);
  std::vector<std::function<void()>> batch;
  batch.swap(impl->deferred);
  for (auto& fn : batch) {
    fn();
  }
  if (impl->deferred.empty() && impl->idle_active) {
    uv_idle_stop(&impl->idle);
    impl->idle_active = false;
  }
}

void onPrepare(uv_prepare_t* handle) {
  auto* impl = static_cast<Loop::Impl*>(handle->data);
  // Hooks added while hooks run belong to this same pass (a flush may schedule another flush).
  while (!impl->before_poll.empty()) {
    std::vector<std::function<void()>> batch;
    batch.swap(impl->before_poll);
    for (auto& fn : batch) {
      fn();
    }
  }
  uv_prepare_stop(&impl->prepare);
  impl->prepare_active = false;
}

void onSignalHandle(uv_signal_t* handle, int /*signum*/) {
  auto* watch = static_cast<Loop::Impl::SignalWatch*>(handle->data);
  // A copy, so the handler may replace itself with onSignal() while it runs.
  auto fn = watch->fn;
  if (fn) {
    fn();
  }
}

void onCloseNoop(uv_handle_t* /*handle*/) {}

} // namespace

void Loop::Impl::defer(std::function<void()> fn) {
  if (finished) {
    return;
  }
  deferred.push_back(std::move(fn));
  if (!idle_active) {
    uv_idle_start(&idle, onIdle);
    idle_active = true;
  }
}

void Loop::Impl::beforePoll(std::function<void()> fn) {
  if (finished) {
    return;
  }
  before_poll.push_back(std::move(fn));
  if (!prepare_active) {
    uv_prepare_start(&prepare, onPrepare);
    prepare_active = true;
  }
}

void Loop::Impl::shutdown() {
  if (finished) {
    return;
  }
  finished = true;
  std::vector<std::function<void()>> dropped;
  {
    std::lock_guard lock(post_mutex);
    accepting_posts = false;
    dropped.swap(posted);
  }
  // Destroying these may release the last reference to internal objects; their handles are
  // already closed by then (an object with an open handle keeps itself alive), so nothing here
  // reaches back into libuv.
  dropped.clear();
  deferred.clear();
  before_poll.clear();

  std::vector<LoopResource*> open(resources.begin(), resources.end());
  for (LoopResource* r : open) {
    if (resources.contains(r)) {
      r->shutdown();
    }
  }
  for (auto& [signum, watch] : signals) {
    uv_close(reinterpret_cast<uv_handle_t*>(&watch->handle), onCloseNoop);
  }
  for (auto& watch : failed_signals) {
    uv_close(reinterpret_cast<uv_handle_t*>(&watch->handle), onCloseNoop);
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&async), onCloseNoop);
  uv_close(reinterpret_cast<uv_handle_t*>(&idle), onCloseNoop);
  uv_close(reinterpret_cast<uv_handle_t*>(&prepare), onCloseNoop);
  // Runs the close callbacks and waits for cancelled requests (a name lookup in the thread pool
  // cannot be interrupted, only waited for).
  uv_run(&uv, UV_RUN_DEFAULT);
  for (int attempt = 0; attempt < 8 && uv_loop_close(&uv) == UV_EBUSY; ++attempt) {
    // Something outside the registry left a handle open: close it so the loop can be freed.
    uv_walk(
        &uv,
        [](uv_handle_t* h, void*) {
          if (!uv_is_closing(h)) {
            uv_close(h, onCloseNoop);
          }
        },
        nullptr);
    uv_run(&uv, UV_RUN_DEFAULT);
  }
  deferred.clear();
  before_poll.clear();
  signals.clear();
  failed_signals.clear();
}

Result<LoopPtr> Loop::create() {
  // libuv writes with writev(); without this a peer's reset would deliver SIGPIPE and kill us.
  std::signal(SIGPIPE, SIG_IGN);
  auto impl = std::make_unique<Impl>();
  if (int rc = uv_loop_init(&impl->uv); rc != 0) {
    return std::unexpected(uvError("net.loop", rc, "cannot create the event loop"));
  }
  impl->uv.data = impl.get();
  impl->async.data = impl.get();
  impl->idle.data = impl.get();
  impl->prepare.data = impl.get();
  if (int rc = uv_async_init(&impl->uv, &impl->async, onAsync); rc != 0) {
    uv_loop_close(&impl->uv);
    return std::unexpected(uvError("net.loop", rc, "cannot create the loop's wake-up handle"));
  }
  uv_idle_init(&impl->uv, &impl->idle);
  uv_prepare_init(&impl->uv, &impl->prepare);
  impl->thread = std::this_thread::get_id();
  auto loop = std::make_unique<Loop>(PrivateTag{}, std::move(impl));
  return loop;
}

Loop::Loop(PrivateTag, std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  impl_->owner = this;
}

Loop::~Loop() {
  impl_->shutdown();
}

void Loop::run() {
  if (impl_->finished) {
    return;
  }
  impl_->thread = std::this_thread::get_id();
  impl_->running = true;
  do {
    // uv_run returns only after uv_stop(); the wake-up handle keeps it alive otherwise. At least
    // one turn runs, so functions posted before an early stop() still run.
    uv_run(&impl_->uv, UV_RUN_DEFAULT);
  } while (!impl_->stop_requested.load());
  impl_->running = false;
  impl_->shutdown();
}

void Loop::stop() {
  impl_->stop_requested.store(true);
  std::lock_guard lock(impl_->post_mutex);
  if (impl_->accepting_posts) {
    uv_async_send(&impl_->async);
  }
}

void Loop::post(std::function<void()> fn) {
  std::function<void()> dropped;
  {
    std::lock_guard lock(impl_->post_mutex);
    if (!impl_->accepting_posts) {
      dropped = std::move(fn); // destroyed outside the lock: its destructor may call post()
    } else {
      impl_->posted.push_back(std::move(fn));
      uv_async_send(&impl_->async);
    }
  }
}

void Loop::defer(std::function<void()> fn) {
  assert(inLoopThread());
  impl_->defer(std::move(fn));
}

void Loop::beforePoll(std::function<void()> fn) {
  assert(inLoopThread());
  impl_->beforePoll(std::move(fn));
}

uint64_t Loop::nowMs() const {
  return uv_now(&impl_->uv);
}

Result<void> Loop::onSignal(int signum, std::function<void()> fn) {
  assert(inLoopThread());
  if (impl_->finished) {
    return fail("net.signal", "the loop has stopped");
  }
  if (auto it = impl_->signals.find(signum); it != impl_->signals.end()) {
    it->second->fn = std::move(fn);
    return {};
  }
  auto watch = std::make_unique<Impl::SignalWatch>();
  watch->fn = std::move(fn);
  watch->handle.data = watch.get();
  if (int rc = uv_signal_init(&impl_->uv, &watch->handle); rc != 0) {
    return std::unexpected(
        uvError("net.signal", rc, fmt::format("cannot watch signal {}", signum)));
  }
  if (int rc = uv_signal_start(&watch->handle, onSignalHandle, signum); rc != 0) {
    // The handle was initialised: it must be closed before its memory goes, so keep it until
    // shutdown() closes it with the others.
    watch->fn = nullptr;
    impl_->failed_signals.push_back(std::move(watch));
    return std::unexpected(
        uvError("net.signal", rc, fmt::format("cannot watch signal {}", signum)));
  }
  impl_->signals.emplace(signum, std::move(watch));
  return {};
}

bool Loop::inLoopThread() const {
  return std::this_thread::get_id() == impl_->thread;
}

} // namespace mailgate::net

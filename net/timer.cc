#include "net/timer.h"

#include "net/internal/loop_impl.h"

namespace mailgate::net {

// Holds the uv_timer_t. Shared by the Timer (user side) and by itself while the handle is open
// (self_), so the memory outlives whichever of "user destroyed the Timer" and "libuv closed the
// handle" comes last.
class TimerCore final : public LoopResource, public std::enable_shared_from_this<TimerCore> {
public:
  explicit TimerCore(Loop::Impl* loop) : loop_(loop) {}

  void init() {
    if (loop_ == nullptr || loop_->finished) {
      loop_ = nullptr;
      return;
    }
    uv_timer_init(&loop_->uv, &timer_);
    timer_.data = this;
    self_ = shared_from_this();
    loop_->add(this);
  }

  void start(std::chrono::milliseconds delay, std::chrono::milliseconds repeat,
             std::function<void()> fn) {
    ++generation_;
    if (!isOpen()) {
      return;
    }
    fn_ = std::move(fn);
    uint64_t d = delay.count() < 0 ? 0 : static_cast<uint64_t>(delay.count());
    uint64_t r = repeat.count() < 0 ? 0 : static_cast<uint64_t>(repeat.count());
    uv_timer_start(&timer_, onTimer, d, r);
  }

  void stop() {
    ++generation_;
    fn_ = nullptr;
    if (isOpen()) {
      uv_timer_stop(&timer_);
    }
  }

  [[nodiscard]] bool active() const {
    return isOpen() && uv_is_active(reinterpret_cast<const uv_handle_t*>(&timer_)) != 0;
  }

  // The user's Timer is gone.
  void release() {
    stop();
    closeHandle();
  }

  void shutdown() override {
    fn_ = nullptr;
    closeHandle();
  }

private:
  [[nodiscard]] bool isOpen() const { return loop_ != nullptr && !closing_; }

  void closeHandle() {
    if (loop_ == nullptr || closing_) {
      return;
    }
    closing_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), onClosed);
  }

  static void onTimer(uv_timer_t* handle) {
    auto* core = static_cast<TimerCore*>(handle->data);
    auto keep = core->shared_from_this();
    const uint64_t generation = core->generation_;
    const bool repeating = uv_timer_get_repeat(handle) > 0;
    // Moved out so the callback may call start()/stop() or destroy the Timer while it runs.
    std::function<void()> fn = std::move(core->fn_);
    core->fn_ = nullptr;
    if (fn) {
      fn();
    }
    if (repeating && core->generation_ == generation && !core->closing_) {
      core->fn_ = std::move(fn);
    }
  }

  static void onClosed(uv_handle_t* handle) {
    auto* core = static_cast<TimerCore*>(handle->data);
    std::shared_ptr<TimerCore> keep = std::move(core->self_);
    core->loop_->remove(core);
    core->loop_ = nullptr;
  }

  Loop::Impl* loop_;
  uv_timer_t timer_{};
  std::shared_ptr<TimerCore> self_; // set while the handle is open
  std::function<void()> fn_;
  uint64_t generation_ = 0; // bumped by start()/stop(): tells onTimer its function was replaced
  bool closing_ = false;
};

TimerPtr Timer::create(Loop& loop) {
  auto core = std::make_shared<TimerCore>(&loop.impl());
  core->init();
  return std::make_unique<Timer>(std::move(core));
}

Timer::Timer(std::shared_ptr<TimerCore> core) : core_(std::move(core)) {}

Timer::~Timer() {
  core_->release();
}

void Timer::start(std::chrono::milliseconds delay, std::function<void()> fn) {
  core_->start(delay, std::chrono::milliseconds(0), std::move(fn));
}

void Timer::startRepeating(std::chrono::milliseconds period, std::function<void()> fn) {
  if (period.count() <= 0) {
    period = std::chrono::milliseconds(1);
  }
  core_->start(period, period, std::move(fn));
}

void Timer::stop() {
  core_->stop();
}

bool Timer::active() const {
  return core_->active();
}

} // namespace mailgate::net

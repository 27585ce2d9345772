#include "gateway/api/event_feed.h"

#include "config/values.h"
#include "net/loop.h"
#include "net/timer.h"

#include <algorithm>
#include <fmt/format.h>
#include <list>

namespace mailgate::api {

bool eventMatches(const EventFilter& filter, const store::StoredEvent& event) {
  const bool all = filter.scope.size() == 1 && filter.scope.front() == "*";
  if (!all && (event.tenant.empty() || std::find(filter.scope.begin(), filter.scope.end(),
                                                 event.tenant) == filter.scope.end())) {
    return false;
  }
  if (!filter.tenant.empty() && event.tenant != filter.tenant) {
    return false;
  }
  if (!filter.mailbox.empty() && config::lowerAscii(event.mailbox) != filter.mailbox) {
    return false;
  }
  if (filter.types.empty()) {
    return true;
  }
  return std::any_of(filter.types.begin(), filter.types.end(), [&](const std::string& t) {
    if (t.ends_with(".*")) {
      return event.type.starts_with(std::string_view(t).substr(0, t.size() - 1));
    }
    return event.type == t;
  });
}

namespace {

struct Subscriber {
  HttpExchangePtr exchange;
  EventFilter filter;
  int64_t cursor = 0;   // the last seq handled (sent or filtered out)
  int64_t stop_at = -1; // follow=false: end once cursor reaches it
  bool reading = false; // a store read is in flight
  uint64_t last_write_ms = 0;
  bool gone = false;
};

std::string sseFrame(const store::StoredEvent& e) {
  // The JSON has no raw newline (strings escape them), so one data: line holds it.
  return fmt::format("id: {}\nevent: {}\ndata: {}\n\n", e.seq, e.type, e.toJson());
}

} // namespace

struct EventFeed::State : std::enable_shared_from_this<EventFeed::State> {
  net::Loop* loop = nullptr;
  store::SqliteQueueStore* store = nullptr;
  EventFeedOptions options;
  std::list<std::shared_ptr<Subscriber>> subscribers;
  net::TimerPtr timer;
  bool draining = false;

  void arm() {
    if (subscribers.empty()) {
      timer->stop();
      return;
    }
    if (!timer->active()) {
      std::weak_ptr<State> weak = weak_from_this();
      timer->startRepeating(options.poll, [weak] {
        if (auto self = weak.lock()) {
          self->tick();
        }
      });
    }
  }

  void tick() {
    const int64_t last = store->lastEventSeq();
    const uint64_t now = loop->nowMs();
    for (auto it = subscribers.begin(); it != subscribers.end();) {
      auto& sub = *it;
      if (sub->gone || !sub->exchange->open()) {
        it = subscribers.erase(it);
        continue;
      }
      if (sub->cursor < last) {
        pull(sub);
      } else if (sub->stop_at >= 0 && sub->cursor >= sub->stop_at) {
        sub->exchange->end();
        it = subscribers.erase(it);
        continue;
      } else if (now - sub->last_write_ms >= static_cast<uint64_t>(options.heartbeat.count()) &&
                 sub->exchange->pendingBytes() < options.max_pending) {
        sub->exchange->write(": keep-alive\n\n");
        sub->last_write_ms = now;
      }
      ++it;
    }
    arm();
  }

  void pull(const std::shared_ptr<Subscriber>& sub) {
    if (sub->reading || sub->exchange->pendingBytes() >= options.max_pending) {
      return; // a slow reader falls behind; its cursor keeps its place
    }
    sub->reading = true;
    std::weak_ptr<State> weak = weak_from_this();
    std::weak_ptr<Subscriber> weak_sub = sub;
    store->listEvents(sub->cursor, options.page,
                      [weak, weak_sub](Result<std::vector<store::StoredEvent>> events) {
                        auto self = weak.lock();
                        auto s = weak_sub.lock();
                        if (!self || !s) {
                          return;
                        }
                        s->reading = false;
                        if (!events || s->gone) {
                          return; // tried again at the next tick
                        }
                        self->deliver(*s, *events);
                      });
  }

  void deliver(Subscriber& sub, const std::vector<store::StoredEvent>& events) {
    std::string out;
    for (const auto& e : events) {
      sub.cursor = std::max(sub.cursor, e.seq);
      if (eventMatches(sub.filter, e)) {
        out += sseFrame(e);
      }
    }
    if (!out.empty()) {
      sub.exchange->write(out);
      sub.last_write_ms = loop->nowMs();
    }
    if (sub.stop_at >= 0 && sub.cursor >= sub.stop_at) {
      sub.gone = true; // caught up: the next tick forgets it
      sub.exchange->end();
      return;
    }
    // A full page: there may be more right now, do not wait for the next tick.
    if (events.size() == options.page) {
      for (const auto& s : subscribers) {
        if (s.get() == &sub) {
          pull(s);
          break;
        }
      }
    }
  }
};

EventFeed::EventFeed(net::Loop& loop, store::SqliteQueueStore& store, EventFeedOptions options)
    : state_(std::make_shared<State>()) {
  state_->loop = &loop;
  state_->store = &store;
  state_->options = options;
  state_->timer = net::Timer::create(loop);
}

EventFeed::~EventFeed() {
  drain();
}

void EventFeed::subscribe(const HttpExchangePtr& exchange, EventFilter filter, int64_t after,
                          bool follow) {
  exchange->startStream(200, {{"content-type", "text/event-stream"},
                              {"cache-control", "no-store"},
                              {"x-accel-buffering", "no"}});
  if (state_->draining) {
    exchange->end();
    return;
  }
  auto sub = std::make_shared<Subscriber>();
  sub->exchange = exchange;
  sub->filter = std::move(filter);
  const int64_t last = state_->store->lastEventSeq();
  sub->cursor = after < 0 ? last : after;
  sub->stop_at = follow ? -1 : last;
  sub->last_write_ms = state_->loop->nowMs();
  // Tells the client to come back after a second if the stream breaks (SSE "retry").
  exchange->write("retry: 1000\n\n");
  std::weak_ptr<Subscriber> weak = sub;
  exchange->onAbort([weak] {
    if (auto s = weak.lock()) {
      s->gone = true;
    }
  });
  state_->subscribers.push_back(sub);
  if (sub->cursor < last) {
    state_->pull(sub);
  }
  state_->arm();
}

void EventFeed::drain() {
  state_->draining = true;
  for (auto& sub : state_->subscribers) {
    sub->gone = true;
    sub->exchange->end();
  }
  state_->subscribers.clear();
  state_->timer->stop();
}

std::size_t EventFeed::subscribers() const {
  return state_->subscribers.size();
}

} // namespace mailgate::api

#include "gateway/webhooks/dispatcher.h"

#include "base/log.h"
#include "gateway/store/queue_tables.h"
#include "gateway/webhooks/ack_window.h"
#include "gateway/webhooks/signing.h"
#include "gateway/webhooks/webhook_request.h"
#include "net/backoff.h"
#include "net/loop.h"
#include "net/timer.h"

#include <algorithm>
#include <deque>
#include <fmt/format.h>
#include <utility>

namespace mailgate::webhooks {

namespace {

constexpr std::string_view kSelectCursors = "SELECT webhook, seq FROM webhook_cursors";
constexpr std::string_view kUpsertCursor =
    "INSERT INTO webhook_cursors (webhook, seq, updated_ms) VALUES (?1, ?2, ?3) "
    "ON CONFLICT (webhook) DO UPDATE SET seq = excluded.seq, updated_ms = excluded.updated_ms";

int64_t wallClockMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

using Cursors = std::map<std::string, int64_t, std::less<>>;

// One event owed to one webhook: its attempts and the retry between them.
struct Attempt {
  store::StoredEvent event;
  net::Backoff backoff;
  net::PendingHttpPtr pending; // the request in flight, if any
  net::TimerPtr retry;         // armed while waiting to send again
  uint32_t failures = 0;
};

struct Hook {
  Hook(config::Webhook c, int64_t cursor, std::size_t window)
      : config(std::move(c)), log_url(redactUrl(config.url)), window(cursor, window),
        fetched(cursor) {}

  config::Webhook config;
  std::string log_url;
  AckWindow window;
  std::deque<store::StoredEvent> buffer; // read from the store, not yet skipped or opened
  int64_t fetched;                       // the highest seq read from the store (or skipped past)
  bool reading = false;                  // a listEvents call is out
  bool read_failing = false;             // the last listEvents failed (logged once)
  std::map<int64_t, std::unique_ptr<Attempt>> attempts; // the open events of `window`
  uint64_t delivered = 0;
  uint64_t failed = 0;
  std::string last_error;
};

} // namespace

struct Dispatcher::State : std::enable_shared_from_this<Dispatcher::State> {
  State(net::Loop& l, net::HttpClient& h, store::SqliteQueueStore& s, DispatcherOptions o)
      : loop(l), http(h), store(s), options(std::move(o)) {}

  net::Loop& loop;
  net::HttpClient& http;
  store::SqliteQueueStore& store;
  DispatcherOptions options;
  std::shared_ptr<spdlog::logger> log = logger("webhooks");
  std::map<std::string, std::shared_ptr<Hook>, std::less<>> hooks; // by url
  Cursors stored;  // what webhook_cursors holds (or will once the queued write commits)
  Cursors dropped; // cursors of hooks removed by apply(), still to be written
  net::TimerPtr poll_timer;
  net::TimerPtr persist_timer;
  net::TimerPtr grace_timer;
  bool stopped = false;
  bool draining = false;
  std::function<void()> drain_done;

  void start() {
    poll_timer = net::Timer::create(loop);
    poll_timer->startRepeating(options.poll, [this] {
      for (auto& [url, h] : hooks) {
        fetch(h);
      }
      checkDrain();
    });
    persist_timer = net::Timer::create(loop);
    persist_timer->startRepeating(options.persist_every, [this] { persist(nullptr); });
  }

  void apply(const std::vector<config::Webhook>& configured) {
    if (stopped) {
      return;
    }
    std::map<std::string, std::shared_ptr<Hook>, std::less<>> next;
    bool fresh = false;
    for (const auto& w : configured) {
      if (next.contains(w.url)) {
        log->warn("webhook {} is configured twice; the first entry is used", redactUrl(w.url));
        continue;
      }
      if (auto it = hooks.find(w.url); it != hooks.end()) {
        it->second->config = w; // secret and filters apply to what is sent from now on
        next.emplace(w.url, std::move(it->second));
        continue;
      }
      int64_t cursor = 0;
      bool resumed = false;
      if (auto d = dropped.find(w.url); d != dropped.end()) {
        cursor = d->second;
        resumed = true;
        dropped.erase(d);
      } else if (auto s = stored.find(w.url); s != stored.end()) {
        cursor = s->second;
        resumed = true;
      } else {
        // No replay of history: a new endpoint gets what happens from now on. Its cursor is
        // written below, queued ahead of every write that could add a later event, so that even
        // a crash right after resumes here rather than at a later "now".
        cursor = store.lastEventSeq();
        fresh = true;
      }
      auto h = std::make_shared<Hook>(w, cursor, options.window);
      log->info("webhook {}: {} at event seq {}", h->log_url, resumed ? "resumes" : "starts",
                cursor);
      next.emplace(w.url, std::move(h));
    }
    for (auto& [url, h] : hooks) {
      if (h) { // not moved into `next`
        log->info("webhook {}: removed at event seq {}", h->log_url, h->window.cursor());
        dropped[url] = h->window.cursor();
      }
    }
    hooks = std::move(next); // dropping a Hook cancels its requests and retries
    if (fresh) {
      persist(nullptr);
    }
    for (auto& [url, h] : hooks) {
      pump(h);
    }
  }

  // Reads the next page for `h` when it has nothing buffered and the outbox has more.
  void fetch(const std::shared_ptr<Hook>& h) {
    if (stopped || h->reading || !h->buffer.empty()) {
      return;
    }
    const int64_t target = store.lastEventSeq();
    if (target <= h->fetched) {
      return;
    }
    h->reading = true;
    std::weak_ptr<State> weak_self = weak_from_this();
    std::weak_ptr<Hook> weak_hook = h;
    const std::size_t page = options.page;
    store.listEvents(
        h->fetched, page,
        [weak_self, weak_hook, target, page](Result<std::vector<store::StoredEvent>> r) {
          auto self = weak_self.lock();
          auto hook = weak_hook.lock();
          if (!self || !hook) {
            return;
          }
          self->onPage(hook, target, page, std::move(r));
        });
  }

  void onPage(const std::shared_ptr<Hook>& h, int64_t target, std::size_t page,
              Result<std::vector<store::StoredEvent>> r) {
    h->reading = false;
    if (stopped) {
      return;
    }
    if (!r) {
      // The next poll tries again; one line per outage, not one per poll.
      if (!h->read_failing) {
        log->warn("webhook {}: reading events after seq {} failed: {}; retrying", h->log_url,
                  h->fetched, r.error().describe());
      }
      h->read_failing = true;
      return;
    }
    if (h->read_failing) {
      log->info("webhook {}: reading events works again", h->log_url);
      h->read_failing = false;
    }
    for (auto& e : *r) {
      if (e.seq > h->fetched) {
        h->fetched = e.seq;
        h->buffer.push_back(std::move(e));
      }
    }
    // Seqs are given in commit order, so a short page has everything up to `target`.
    if (r->size() < page) {
      h->fetched = std::max(h->fetched, target);
    }
    pump(h);
  }

  // Skips unwanted events and opens wanted ones while the window has room; reads more when the
  // buffer ran dry.
  void pump(const std::shared_ptr<Hook>& h) {
    if (stopped) {
      return;
    }
    while (!h->buffer.empty()) {
      store::StoredEvent& e = h->buffer.front();
      if (!wants(h->config, e.type, e.tenant)) {
        h->window.skip(e.seq);
        h->buffer.pop_front();
        continue;
      }
      if (!h->window.open(e.seq)) {
        break; // full
      }
      auto a = std::make_unique<Attempt>();
      net::BackoffOptions backoff;
      backoff.initial = options.retry_initial;
      backoff.max = options.retry_max;
      backoff.factor = 2.0;
      backoff.jitter = 0.2;
      a->backoff = net::Backoff(backoff);
      a->event = std::move(e);
      h->buffer.pop_front();
      const int64_t seq = a->event.seq;
      h->attempts.emplace(seq, std::move(a));
      send(*h, seq);
    }
    if (h->buffer.empty()) {
      // Events below the next one read are either open or done: the cursor may pass what was
      // skipped at the end of the page.
      h->window.skip(h->fetched);
      fetch(h);
    }
    checkDrain();
  }

  void send(Hook& h, int64_t seq) {
    auto it = h.attempts.find(seq);
    if (it == h.attempts.end()) {
      return;
    }
    Attempt& a = *it->second;
    a.retry.reset();
    // The Hook owns the attempt that owns the request: the callback cannot outlive either.
    a.pending = http.send(buildRequest(h.config, a.event, options.version, options.timeout),
                          [this, hook = &h, seq](Result<net::HttpClientResponse> r) {
                            onAnswer(*hook, seq, std::move(r));
                          });
  }

  void onAnswer(Hook& h, int64_t seq, Result<net::HttpClientResponse> r) {
    auto it = h.attempts.find(seq);
    if (it == h.attempts.end()) {
      return;
    }
    Attempt& a = *it->second;
    if (r && acknowledges(r->status)) {
      ++h.delivered;
      h.last_error.clear();
      if (a.failures > 0) {
        log->info("webhook {}: event {} ({}) delivered after {} failed attempt(s)", h.log_url,
                  a.event.id, a.event.type, a.failures);
      }
      h.window.ack(seq);
      h.attempts.erase(it); // destroys the finished PendingHttp: harmless
      auto self = hooks.find(h.config.url);
      if (self != hooks.end() && self->second.get() == &h) {
        pump(self->second);
      }
      return;
    }
    ++h.failed;
    ++a.failures;
    h.last_error = r ? fmt::format("HTTP {}", r->status)
                     : fmt::format("{}: {}", r.error().code, r.error().message);
    const auto delay = a.backoff.next();
    log->warn("webhook {}: event {} ({}, seq {}) attempt {} failed: {}; retry in {} ms", h.log_url,
              a.event.id, a.event.type, seq, a.failures, h.last_error, delay.count());
    a.retry = net::Timer::create(loop);
    a.retry->start(delay, [this, hook = &h, seq] { send(*hook, seq); });
    checkDrain();
  }

  // Queues one write of every cursor that differs from what is stored and returns true; `after`
  // then runs once it is committed or failed (a failure is logged and the next persist writes
  // again), unless the dispatcher is gone by then. Returns false, and never runs `after`, when
  // nothing needed writing.
  bool persist(std::function<void()> after) {
    std::vector<std::pair<std::string, int64_t>> rows;
    for (const auto& [url, h] : hooks) {
      const int64_t c = h->window.cursor();
      auto s = stored.find(url);
      if (s == stored.end() || s->second != c) {
        rows.emplace_back(url, c);
      }
    }
    for (auto& [url, c] : dropped) {
      if (auto s = stored.find(url); s == stored.end() || s->second != c) {
        rows.emplace_back(url, c);
      }
    }
    if (rows.empty()) {
      return false;
    }
    for (const auto& [url, c] : rows) {
      stored[url] = c;
    }
    std::weak_ptr<State> weak_self = weak_from_this();
    store.write<void>(
        [rows, now = wallClockMs()](store::QueueTables& t) -> Result<void> {
          auto st = t.cached(kUpsertCursor);
          if (!st) {
            return std::unexpected(st.error());
          }
          for (const auto& [url, c] : rows) {
            store::StatementScope scope(**st);
            (*st)->bind(1, url).bind(2, c).bind(3, now);
            if (auto r = (*st)->run(); !r) {
              return std::unexpected(r.error());
            }
          }
          return {};
        },
        [weak_self, rows, after = std::move(after)](Result<void> r) {
          auto self = weak_self.lock();
          if (!self) {
            return; // the dispatcher is gone, and so is whoever waited (a drain cut short)
          }
          if (!r) {
            self->log->warn("webhook cursors not written ({}); trying again", r.error().describe());
            for (const auto& [url, c] : rows) {
              self->stored.erase(url);
            }
          }
          if (after) {
            after();
          }
        });
    return true;
  }

  void checkDrain() {
    if (!draining) {
      return;
    }
    const int64_t last = store.lastEventSeq();
    for (const auto& [url, h] : hooks) {
      const bool caught_up =
          h->attempts.empty() && h->buffer.empty() && !h->reading && h->fetched >= last;
      const bool failing =
          std::ranges::any_of(h->attempts, [](const auto& kv) { return kv.second->failures > 0; });
      if (!caught_up && !failing) {
        return;
      }
    }
    endDrain("every webhook caught up or is failing");
  }

  void endDrain(std::string_view why) {
    if (!draining) {
      return;
    }
    draining = false;
    log->info("webhooks drained: {}", why);
    auto done = std::move(drain_done);
    drain_done = nullptr;
    // stop() may destroy the grace timer whose callback is running: harmless (net/timer.h).
    if (!stopNow(done)) {
      loop.post(std::move(done));
    }
  }

  // stop(); returns whether a cursor write was queued (then `after` runs when it commits).
  bool stopNow(std::function<void()> after) {
    if (stopped) {
      return false;
    }
    stopped = true;
    poll_timer.reset();
    persist_timer.reset();
    grace_timer.reset();
    for (auto& [url, h] : hooks) {
      h->attempts.clear(); // cancels requests and retries
      h->buffer.clear();
    }
    return persist(std::move(after));
  }
};

Result<DispatcherPtr> Dispatcher::create(net::Loop& loop, net::HttpClient& http,
                                         store::SqliteQueueStore& store,
                                         DispatcherOptions options) {
  auto cursors = store.readNow<Cursors>([](store::QueueTables& t) -> Result<Cursors> {
    auto st = t.cached(kSelectCursors);
    if (!st) {
      return std::unexpected(st.error());
    }
    store::StatementScope scope(**st);
    Cursors out;
    for (;;) {
      auto row = (*st)->step();
      if (!row) {
        return std::unexpected(row.error());
      }
      if (!*row) {
        return out;
      }
      out.emplace((*st)->text(0), (*st)->int64(1));
    }
  });
  if (!cursors) {
    return std::unexpected(cursors.error());
  }
  auto state = std::make_shared<State>(loop, http, store, std::move(options));
  state->stored = std::move(*cursors);
  state->start();
  return std::make_unique<Dispatcher>(std::move(state));
}

Dispatcher::Dispatcher(std::shared_ptr<State> state) : state_(std::move(state)) {}

Dispatcher::~Dispatcher() {
  stop();
}

void Dispatcher::apply(const std::vector<config::Webhook>& hooks) {
  state_->apply(hooks);
}

void Dispatcher::drain(std::chrono::milliseconds grace, std::function<void()> done) {
  State& s = *state_;
  if (s.stopped || s.draining) {
    s.loop.post(std::move(done));
    return;
  }
  s.draining = true;
  s.drain_done = std::move(done);
  s.grace_timer = net::Timer::create(s.loop);
  s.grace_timer->start(grace, [raw = &s] { raw->endDrain("grace period over"); });
  s.checkDrain();
}

void Dispatcher::stop() {
  if (state_->draining) {
    state_->draining = false;
    state_->drain_done = nullptr;
  }
  (void)state_->stopNow(nullptr);
}

std::vector<WebhookStatus> Dispatcher::status() const {
  std::vector<WebhookStatus> out;
  const int64_t last = state_->store.lastEventSeq();
  for (const auto& [url, h] : state_->hooks) {
    WebhookStatus s;
    s.url = h->log_url;
    s.cursor = h->window.cursor();
    s.backlog = std::max<int64_t>(0, last - s.cursor);
    s.delivered = h->delivered;
    s.failed = h->failed;
    s.open = h->window.openCount();
    s.last_error = h->last_error;
    out.push_back(std::move(s));
  }
  return out;
}

} // namespace mailgate::webhooks

// Webhook delivery of the events outbox: every configured webhook (keyed by its url) has a cursor
// in webhook_cursors and its own window of requests, so a dead or slow endpoint only holds up
// itself.
//
// Per webhook: events after the cursor are read from the store a page at a time, the ones it does
// not want (signing.h wants()) are skipped, and each wanted one is POSTed alone
// (webhook_request.h) with at most `window` requests open. A 2xx acknowledges the event; any other
// status or a transport error retries that event after an exponential backoff (1 s doubling to a
// 5 min cap, jittered), forever: nothing is ever skipped (at-least-once). The cursor moves only
// over the contiguous prefix of acknowledged or skipped events (ack_window.h) and is written to
// webhook_cursors at most every `persist_every` while it moves, and on stop. Ordering is by seq
// for a healthy endpoint but not guaranteed: up to `window` requests run side by side and a
// retried event arrives after later ones.
//
// New events are noticed by polling the store's lastEventSeq() (an atomic load) every `poll`; a
// page is read only for webhooks behind it.
//
// A webhook with no stored cursor starts at lastEventSeq() when it is first applied (no replay of
// history); one with a stored cursor resumes from it. apply() on reload keeps the state (cursor,
// requests in flight, retries) of every url it still has, adds new ones and drops the others
// (their rows stay, so a url that comes back resumes).
//
// Threading: the loop thread only. Secrets never reach the logs: urls are logged through
// redactUrl().
#pragma once

#include "base/error.h"
#include "config/config.h"
#include "gateway/store/sqlite_queue_store.h"
#include "net/http_client.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mailgate::net {
class Loop;
}

namespace mailgate::webhooks {

struct DispatcherOptions {
  std::size_t window = 8;                        // requests open per webhook at most
  std::size_t page = 100;                        // events read per store call
  std::chrono::milliseconds poll{100};           // how often lastEventSeq() is looked at
  std::chrono::milliseconds persist_every{500};  // cursor writes at most this often per dispatcher
  std::chrono::milliseconds timeout{10000};      // one request, connect included
  std::chrono::milliseconds retry_initial{1000}; // first retry delay (before jitter)
  std::chrono::milliseconds retry_max{300000};   // no retry delay exceeds it
  std::string version = "0.0.0";                 // User-Agent mailgate/<version>
};

struct WebhookStatus {
  std::string url; // redacted (redactUrl)
  int64_t cursor = 0;
  int64_t backlog = 0;    // lastEventSeq() - cursor (events not yet known delivered or skipped)
  uint64_t delivered = 0; // events acknowledged
  uint64_t failed = 0;    // attempts that failed (each is retried)
  std::size_t open = 0;   // events owed (in flight or waiting for their retry)
  std::string last_error; // of the last failed attempt; empty after a success
};

class Dispatcher;
using DispatcherPtr = std::unique_ptr<Dispatcher>;

class Dispatcher {
public:
  // Reads webhook_cursors (blocking: start-up only, before the loop runs). `store` and `http`
  // must outlive the dispatcher. Nothing is sent before the first apply().
  static Result<DispatcherPtr> create(net::Loop& loop, net::HttpClient& http,
                                      store::SqliteQueueStore& store, DispatcherOptions options);

  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Makes `hooks` (config webhooks[]) the set delivered to; see the top. Ignored after stop().
  void apply(const std::vector<config::Webhook>& hooks);

  // SIGTERM: keeps delivering until every webhook has caught up with lastEventSeq(), or is
  // failing (an attempt of its failed since the drain began, or was already waiting for a
  // retry), or `grace` passed; then stop() and `done` (once the cursors are written, or at once
  // when none moved). Never waits for a dead endpoint beyond its one attempt in flight.
  void drain(std::chrono::milliseconds grace, std::function<void()> done);

  // Cancels every request and retry, and queues the write of every cursor that moved (it is
  // durable once the store commits it: before the store's destructor returns). Idempotent.
  void stop();

  [[nodiscard]] std::vector<WebhookStatus> status() const;

  struct State; // dispatcher.cc
  explicit Dispatcher(std::shared_ptr<State> state);

private:
  std::shared_ptr<State> state_;
};

} // namespace mailgate::webhooks

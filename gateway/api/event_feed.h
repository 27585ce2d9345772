// GET /v1/events: the outbox of events (relay/queue_store.h, gateway/store) as Server-Sent
// Events, one stream per subscriber:
//
//   id: <seq>
//   event: <type>
//   data: <the event's JSON, one line>
//
// Each subscriber has its own cursor (seq), so a client that reconnects with Last-Event-ID (or
// ?after=) resumes exactly where it stopped. The feed looks at the store's last committed event
// seq every poll interval and reads pages only for subscribers behind it and not backed up: a
// client that reads slowly (or never) costs at most one page plus kMaxPending bytes, and simply
// falls behind. A comment line (": keep-alive") goes out every heartbeat interval so proxies and
// the API's idle timeout see traffic.
//
// Threading: the loop thread only.
#pragma once

#include "gateway/api/http_exchange.h"
#include "gateway/store/sqlite_queue_store.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mailgate::net {
class Loop;
}

namespace mailgate::api {

struct EventFilter {
  std::vector<std::string> scope{"*"}; // the token's tenants; "*" alone: all (and tenant-less)
  std::vector<std::string> types;      // exact types or "prefix.*"; empty: every type
  std::string tenant;                  // exact; empty: any
  std::string mailbox;                 // ASCII case-insensitive; empty: any
};

struct EventFeedOptions {
  std::chrono::milliseconds poll{200};
  std::chrono::milliseconds heartbeat{std::chrono::seconds(15)};
  std::size_t page = 200;                // events read per store call
  std::size_t max_pending = 1024 * 1024; // bytes a subscriber may have unsent
};

class EventFeed {
public:
  EventFeed(net::Loop& loop, store::SqliteQueueStore& store, EventFeedOptions options = {});
  ~EventFeed();
  EventFeed(const EventFeed&) = delete;
  EventFeed& operator=(const EventFeed&) = delete;

  // Starts the stream on `exchange` (status 200, text/event-stream) with the events after
  // `after`; `follow` false ends it once it has caught up with what was committed when it
  // started.
  void subscribe(const HttpExchangePtr& exchange, EventFilter filter, int64_t after, bool follow);

  // Ends every stream (SIGTERM); later subscribe() calls end at once.
  void drain();

  [[nodiscard]] std::size_t subscribers() const;

  struct State; // event_feed.cc

private:
  std::shared_ptr<State> state_;
};

// Whether `event` passes `filter` (exposed for tests).
[[nodiscard]] bool eventMatches(const EventFilter& filter, const store::StoredEvent& event);

} // namespace mailgate::api

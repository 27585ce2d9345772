// One row of the events outbox, as the webhook sender and GET /v1/events will read it.
#pragma once

#include <cstdint>
#include <string>

namespace mailgate::store {

struct StoredEvent {
  int64_t seq = 0;      // position in the outbox; strictly increasing, never reused
  std::string id;       // stable unique id (the same on every delivery of this event)
  std::string type;     // message.queued, message.sending, message.deferred, ...
  std::string time;     // RFC 3339, UTC
  std::string queue_id; // the queue's message id
  std::string tenant;
  std::string mailbox;
  std::string data; // a JSON object: reason, reply, recipients, ... (see docs)

  // {"id","type","time","tenant","mailbox","data"} as in DESIGN.md's external contract.
  [[nodiscard]] std::string toJson() const;
};

} // namespace mailgate::store

// The durable outbound queue as the relay sees it. Declared here, where it is used; the SQLite
// implementation lives in gateway/store/ (mailgate::store::openSqliteQueueStore).
//
// Threading contract for every implementation:
//  - Methods may be called from any thread (normally the owning worker's loop thread).
//  - Asynchronous methods never call `done` before returning and never call it on a storage
//    thread: the completion is handed to the `post` function the store was built with (the
//    daemon passes net::Loop::post), so `done` runs on the loop, in a later loop turn.
//  - Completions of operations issued from one thread run in the order they were issued.
//  - `done` is called exactly once if `post` runs what it is given. When the loop has stopped,
//    `post` may drop closures unrun; callbacks must therefore hold their state by value or by
//    RAII (never rely on `done` running to free something).
//
// Error codes (Error::code) every implementation uses:
//  "store.full"      no space left (disk full or the configured size cap); retry later (SMTP 452)
//  "store.io"        I/O error, corruption or other storage failure (SMTP 452)
//  "store.busy"      the database stayed locked by another process
//  "store.closed"    the store is shutting down
//  "store.not_found" no message with that id
//  "store.state"     the operation does not apply to the message's current state
#pragma once

#include "base/error.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mailgate::relay {

// queued → sending → sent | deferred | failed; deferred → sending (later); queued/deferred →
// failed when the lifetime ends. sent and failed are final.
enum class MessageState { kQueued, kSending, kSent, kDeferred, kFailed };

enum class RecipientStatus { kPending, kSent, kFailed };

enum class DeliveryResult { kSent, kTempFail, kPermFail };

// Lower-case names used in the store and in event data: "queued", "sending", ...
[[nodiscard]] constexpr std::string_view toString(MessageState s) {
  switch (s) {
  case MessageState::kQueued:
    return "queued";
  case MessageState::kSending:
    return "sending";
  case MessageState::kSent:
    return "sent";
  case MessageState::kDeferred:
    return "deferred";
  case MessageState::kFailed:
    return "failed";
  }
  return "unknown";
}

[[nodiscard]] constexpr std::string_view toString(RecipientStatus s) {
  switch (s) {
  case RecipientStatus::kPending:
    return "pending";
  case RecipientStatus::kSent:
    return "sent";
  case RecipientStatus::kFailed:
    return "failed";
  }
  return "unknown";
}

// How much a send takes from a ledger (relay/route/ledger.h): `count` recipients added to the
// bucket that starts at bucket_ms of the ledger named `key` ("m365:<address>", "relay:<name>").
// A negative count gives recipients back (an attempt that reached nobody). Stored durably in the
// same transaction as the message state it belongs to, so a restart never forgets a send.
struct LedgerCharge {
  std::string key;
  int64_t bucket_ms = 0;
  int64_t count = 0;
};

// Which route an attempt takes and what it costs: passed to markSending.
struct AttemptStart {
  std::string route;                 // "microsoft365" or a relay name; empty: keep the stored one
  std::vector<LedgerCharge> charges; // applied in the same transaction
};

// An event that is not about one message's state (route changes, alerts). `data_json` is a JSON
// object (the event's "data"), or empty for {}.
struct EventRecord {
  std::string type; // "route.failover", "route.disconnected", ...
  std::string tenant;
  std::string mailbox;
  std::string data_json;
};

// The persisted state of one route (a mailbox's microsoft365 route or a relay): survives restarts
// next to its ledger. `state` is the route's state name ("active", "exhausted", "paused",
// "disconnected", "failover"); `until_ms` when it ends by itself (0: it does not).
struct RouteStateRecord {
  std::string key; // same keys as LedgerCharge
  std::string state;
  int64_t until_ms = 0;
  std::string reason; // the upstream reply or local reason that caused it
  std::string hint;   // what an administrator can do
  int64_t updated_ms = 0;
};

// One stored ledger bucket.
struct LedgerBucket {
  std::string key;
  int64_t bucket_ms = 0;
  int64_t count = 0;
};

// Everything routing needs back after a restart (QueueStore::loadRouting).
struct RoutingSnapshot {
  std::vector<LedgerBucket> buckets;    // count > 0 only
  std::vector<RouteStateRecord> states; // one per key that has one
};

struct NewMessage {
  std::string mail_from;               // reverse-path without angle brackets; empty for <>
  std::vector<std::string> recipients; // forward-paths, in RCPT order; duplicates are kept
  std::string body;                    // CRLF line endings, already un-dot-stuffed
  std::string submitter;               // the authenticated client (API token or SMTP user name)
  std::string tenant;                  // optional; copied into every event of this message
  std::string mailbox;                 // optional; copied into every event of this message
  std::string message_id;              // optional RFC 5322 Message-ID, with angle brackets
  bool smtputf8 = false;
  bool body_8bit = false;
  // The route of the first attempt; empty: decided per attempt by the router (tenants
  // configured). "default" is the relay-only mode of a configuration without tenants.
  std::string route = "default";
  std::string priority = "bulk"; // "bulk" or "personal" (X-Mailgate-Priority)
  int64_t now_ms = 0;            // wall-clock ms since the epoch; becomes created_ms
  int64_t expires_at_ms = 0;     // end of the lifetime (RetryPolicy::expiresAt(now_ms))
};

struct RecipientState {
  std::string address;
  RecipientStatus status = RecipientStatus::kPending;
  std::string last_reply; // the last upstream reply for this recipient, or the reason it failed
};

struct QueuedMessage {
  std::string id;
  std::string mail_from;
  std::vector<RecipientState> recipients; // in RCPT order
  MessageState state = MessageState::kQueued;
  int attempts = 0; // attempts started (markSending calls), including interrupted ones
  int64_t created_ms = 0;
  int64_t next_attempt_ms = 0; // when a queued/deferred message is due
  int64_t expires_at_ms = 0;
  size_t size = 0;   // body bytes
  std::string route; // the route of the last attempt (or the one chosen at enqueue)
  std::string submitter;
  std::string tenant;
  std::string mailbox;
  std::string message_id;
  bool smtputf8 = false;
  bool body_8bit = false;
  std::string last_reply; // the last message-level reply or error text
  std::string priority = "bulk";
  // The message may not change route any more: a recipient was delivered through `route`, or an
  // attempt through it ended with an unknown outcome (docs/routing.md, "one route per message").
  bool route_pinned = false;
  // Sent-folder write-back: "" (none needed), "pending" (delivered through a relay for a
  // mailbox: the IMAP side must APPEND it), "done".
  std::string writeback;

  [[nodiscard]] size_t pendingRecipients() const {
    size_t n = 0;
    for (const auto& r : recipients) {
      n += r.status == RecipientStatus::kPending ? 1 : 0;
    }
    return n;
  }
};

// What delivery needs to schedule a message that `msg` describes, once the store gave it `id`
// (state queued, due at once, every recipient pending): how the submission paths (SMTP and the
// control API) hand an accepted message to the DeliveryEngine without reading it back.
[[nodiscard]] inline QueuedMessage queuedFrom(const NewMessage& msg, std::string id) {
  QueuedMessage q;
  q.id = std::move(id);
  q.mail_from = msg.mail_from;
  q.recipients.reserve(msg.recipients.size());
  for (const auto& rcpt : msg.recipients) {
    q.recipients.push_back(RecipientState{rcpt, RecipientStatus::kPending, {}});
  }
  q.state = MessageState::kQueued;
  q.created_ms = msg.now_ms;
  q.next_attempt_ms = msg.now_ms;
  q.expires_at_ms = msg.expires_at_ms;
  q.size = msg.body.size();
  q.route = msg.route;
  q.submitter = msg.submitter;
  q.tenant = msg.tenant;
  q.mailbox = msg.mailbox;
  q.priority = msg.priority;
  q.message_id = msg.message_id;
  q.smtputf8 = msg.smtputf8;
  q.body_8bit = msg.body_8bit;
  return q;
}

struct RecipientOutcome {
  std::string address;
  DeliveryResult result = DeliveryResult::kTempFail;
  std::string reply; // the upstream reply to RCPT or to the end of DATA, as received
};

// The result of one delivery attempt of a message that is in state `sending`.
struct AttemptOutcome {
  std::string id;
  // Results for recipients that were pending. Pending recipients not listed here stay pending
  // with `reply` as their last reply (as if they had a temporary failure). Entries naming a
  // recipient that is not pending are ignored.
  std::vector<RecipientOutcome> recipients;
  std::string reply; // message-level reply or error text (connection refused, 421, ...)
  // The attempt failed before any recipient got a result (connect, TLS, MAIL FROM, DATA 4xx):
  // every pending recipient stays pending; `recipients` is ignored.
  bool whole_message_temp_failure = false;
  int64_t now_ms = 0;
  // When to try again if recipients remain pending (RetryPolicy::nextAttempt). The store never
  // schedules past expires_at_ms: a later value is clamped so one last attempt happens at expiry.
  int64_t next_attempt_ms = 0;
  // The route this attempt used (as given to markSending). When a recipient is delivered through
  // a route other than "microsoft365" for a message with a mailbox, writeback becomes "pending".
  std::string route;
  // The connection was lost after the final "." (the upstream may have the message): the store
  // pins the message to `route` and records a message.uncertain event. A recipient delivered in
  // this attempt pins it too.
  bool uncertain = false;
  // Recipients given back to ledgers (negative counts), in the same transaction.
  std::vector<LedgerCharge> refunds;
};

struct QueueCounts {
  uint64_t queued = 0;
  uint64_t sending = 0;
  uint64_t deferred = 0;
  uint64_t sent = 0;
  uint64_t failed = 0;
};

class QueueStore {
public:
  QueueStore() = default;
  QueueStore(const QueueStore&) = delete;
  QueueStore& operator=(const QueueStore&) = delete;
  // Implementations complete every accepted operation before the destructor returns (see the
  // rule about `post` above).
  virtual ~QueueStore() = default;

  // Stores the message in state `queued`, due at now_ms, every recipient pending, and records a
  // message.queued event. `done` receives the new id only after the write is durable (fsync'd),
  // so it is safe to answer 250 / 202 then. Ids are unique, URL-safe and sort by creation time.
  virtual void enqueue(NewMessage msg, std::function<void(Result<std::string>)> done) = 0;

  // queued|deferred → sending, attempts + 1, message.sending event, and hands back the body to
  // send: one storage round trip before a delivery attempt instead of two. Errors:
  // store.not_found, store.state (already sending, or final); on any error nothing changed.
  void markSending(std::string id, int64_t now_ms, std::function<void(Result<std::string>)> done) {
    markSending(std::move(id), now_ms, AttemptStart{}, std::move(done));
  }
  // The same, and also sets the message's route (unless start.route is empty) and applies the
  // ledger charges, all in one transaction. The message.sending event carries data.route.
  virtual void markSending(std::string id, int64_t now_ms, AttemptStart start,
                           std::function<void(Result<std::string>)> done) = 0;

  // Applies per-recipient results to a message in state `sending` and decides its new state:
  //  - recipients still pending and now_ms < expires_at_ms → deferred until next_attempt_ms;
  //  - recipients still pending and the lifetime is over → they fail ("expired");
  //  - none pending → sent if at least one recipient was delivered, else failed.
  // Records message.bounced for recipients that failed in this call, then one of
  // message.deferred / message.sent / message.failed. Returns the updated message.
  virtual void recordAttempt(AttemptOutcome outcome,
                             std::function<void(Result<QueuedMessage>)> done) = 0;

  // Ends the lifetime of a queued or deferred message: pending recipients fail as expired
  // (message.bounced), then the message becomes failed, or sent if some recipient had already
  // been delivered. For the scheduler when a due message is past expires_at_ms.
  virtual void expire(std::string id, int64_t now_ms,
                      std::function<void(Result<QueuedMessage>)> done) = 0;

  virtual void loadBody(std::string id, std::function<void(Result<std::string>)> done) = 0;

  virtual void get(std::string id, std::function<void(Result<QueuedMessage>)> done) = 0;

  virtual void counts(std::function<void(Result<QueueCounts>)> done) = 0;

  // --- operator actions (the control API: POST /v1/messages/{id}/retry, DELETE /v1/messages/{id})

  // queued|deferred → queued and due at now_ms (next_attempt_ms = now_ms; attempts and the
  // lifetime are unchanged), recording a message.retry event whose data names `actor` (the API
  // token's name). Returns the updated message. Errors: store.not_found; store.state when the
  // message is sending, sent or failed (nothing changed).
  virtual void retryNow(std::string id, int64_t now_ms, std::string actor,
                        std::function<void(Result<QueuedMessage>)> done) = 0;

  // Ends a queued|deferred message at once: every pending recipient fails with the reply
  // "cancelled by <actor>" (message.bounced), then the message becomes failed, or sent when some
  // recipient had already been delivered, as expire() does; the final event's data carries
  // "cancelled": true and "actor". Returns the updated message. Errors: store.not_found;
  // store.state when it is sending, sent or failed (nothing changed).
  virtual void cancel(std::string id, int64_t now_ms, std::string actor,
                      std::function<void(Result<QueuedMessage>)> done) = 0;

  // Called once at start-up, before the loop runs; blocks. Messages left `sending` by a crash
  // return to `queued` (their outcome is unknown, so they will be sent again: at-least-once)
  // with an event saying so; messages past their lifetime are expired as by expire(). Returns
  // every message that is still queued or deferred, ordered by next_attempt_ms.
  virtual Result<std::vector<QueuedMessage>> recover(int64_t now_ms) = 0;

  // --- routing state (docs/routing.md) -------------------------------------------------------

  // Stores (replaces) the state of one route and, when `event` is set, records that event in the
  // same transaction.
  virtual void saveRouteState(RouteStateRecord state, std::optional<EventRecord> event,
                              std::function<void(Result<void>)> done) = 0;

  // Records one event that belongs to no message.
  virtual void recordEvent(EventRecord event, std::function<void(Result<void>)> done) = 0;

  // Called once at start-up, before the loop runs; blocks. Deletes ledger buckets that ended
  // before now_ms - max_window_ms (they can no longer count), returns the rest and every stored
  // route state.
  virtual Result<RoutingSnapshot> loadRouting(int64_t now_ms, int64_t max_window_ms) = 0;
};

} // namespace mailgate::relay

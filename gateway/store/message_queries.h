// What the control API (gateway/api/) asks of the SQLite store beyond relay::QueueStore: the
// vocabulary of SqliteQueueStore's gateway-only calls and the limits they apply.
#pragma once

#include "relay/queue_store.h"

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace mailgate::store {

// The Idempotency-Key of POST /v1/messages (SqliteQueueStore::enqueueIdempotent).
struct IdempotencyKey {
  std::string scope;       // the API token's name: keys of different tokens never meet
  std::string key;         // the client's Idempotency-Key value (the API checks it is 1..255
                           // printable ASCII; the store refuses an empty or longer one)
  std::string fingerprint; // a hash of the request the API computed; same key + other
                           // fingerprint = misuse (store.idempotency_mismatch)
};

struct EnqueueOutcome {
  std::string id;               // the new message, or the one the key already names
  bool replayed = false;        // the key was known: nothing new was stored
  relay::QueuedMessage message; // when replayed: the stored message as it is now (recipients
                                // included); left empty for a new message
};

// Longest Idempotency-Key value the store keeps.
inline constexpr std::size_t kMaxIdempotencyKeyBytes = 255;

// GET /v1/queue: which messages, in which order, from where (SqliteQueueStore::listMessages).
struct MessageQuery {
  std::vector<std::string> tenants{"*"}; // scope: "*" alone = every tenant; otherwise only these
                                         // (messages with an empty tenant only under "*")
  std::optional<relay::MessageState> state;
  std::string tenant, mailbox, route; // exact filters, empty = any (mailbox compares ASCII
                                      // case-insensitively)
  std::string after;                  // cursor: the id the previous page ended at (exclusive;
                                      // ids sort by creation time)
  std::size_t limit = 50;             // clamped to 1..kMaxPageLimit
  bool newest_first = true;
};

struct MessagePage {
  std::vector<relay::QueuedMessage> messages; // recipients included
  std::string next;                           // the `after` of the next page; empty: no more
};

// Messages per page at most.
inline constexpr std::size_t kMaxPageLimit = 500;
// Index ranges one page may merge (docs/queue.md, "Listing the queue"): a query that needs more
// (many tenants in scope and neither state nor route filtered) is refused as store.invalid.
inline constexpr std::size_t kMaxListRanges = 1000;
// Events per listMessageEvents call at most: more than a message's whole lifetime of attempts.
inline constexpr std::size_t kMaxMessageEvents = 1000;

// The tenants a scope names, as config::ApiToken::tenants does: std::nullopt for every tenant
// ("*" alone), else the listed names in order, without duplicates and without "" (a message
// without a tenant is visible only to "*"). An empty list, or "*" among other names, names no
// tenant but the listed ones.
[[nodiscard]] std::optional<std::vector<std::string>>
scopedTenants(const std::vector<std::string>& scope);

} // namespace mailgate::store

// What the control API (gateway/api/) asks of the SQLite store beyond relay::QueueStore: the
// vocabulary of SqliteQueueStore's gateway-only calls and the limits they apply.
#pragma once

#include "relay/queue_store.h"

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

// The tenants a scope names, as config::ApiToken::tenants does: std::nullopt for every tenant
// ("*" alone), else the listed names in order, without duplicates and without "" (a message
// without a tenant is visible only to "*"). An empty list, or "*" among other names, names no
// tenant but the listed ones.
[[nodiscard]] std::optional<std::vector<std::string>>
scopedTenants(const std::vector<std::string>& scope);

} // namespace mailgate::store

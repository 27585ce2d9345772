// BCC ingestion for both submission paths (docs/bcc.md): reads the message's summary
// (gateway/message/summary.h) and commits what is relayed, the copies and the skipped addresses
// in one transaction of the store (gateway/store/synced_tables.h). The control API calls
// ingestBcc; the SMTP side reaches it through relay::BccIngest (BccIngestor, made by the daemon).
//
// Threading: loop thread; completions run on the loop in a later turn (the store's contract).
#pragma once

#include "gateway/store/sqlite_queue_store.h"
#include "gateway/store/synced_tables.h"
#include "relay/bcc_ingest.h"

#include <functional>
#include <optional>

namespace mailgate::api {

// Summarizes s.message.body (on the calling thread: the header block only) and calls
// store::submitBcc.
void ingestBcc(store::SqliteQueueStore& store, relay::BccSubmission s,
               std::optional<store::IdempotencyKey> key,
               std::function<void(Result<store::BccOutcome>)> done);

class BccIngestor final : public relay::BccIngest {
public:
  // `store` must outlive the ingestor.
  explicit BccIngestor(store::SqliteQueueStore& store) : store_(store) {}
  void submit(relay::BccSubmission submission,
              std::function<void(Result<relay::BccReceipt>)> done) override;

private:
  store::SqliteQueueStore& store_;
};

} // namespace mailgate::api

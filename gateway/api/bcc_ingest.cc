#include "gateway/api/bcc_ingest.h"

#include "gateway/message/summary.h"

#include <utility>

namespace mailgate::api {

void ingestBcc(store::SqliteQueueStore& store, relay::BccSubmission s,
               std::optional<store::IdempotencyKey> key,
               std::function<void(Result<store::BccOutcome>)> done) {
  message::MessageSummary summary = message::summarize(s.message.body);
  store::SyncedMessage facts;
  // The queue's Message-ID when the summary found none (the SMTP path reads it the same way).
  facts.message_id = summary.message_id.empty() ? s.message.message_id : summary.message_id;
  facts.from = summary.from.empty() ? s.message.mail_from : std::move(summary.from);
  facts.to = std::move(summary.to);
  facts.cc = std::move(summary.cc);
  facts.subject = std::move(summary.subject);
  facts.date = std::move(summary.date);
  store::submitBcc(store, std::move(s), std::move(facts), std::move(key), std::move(done));
}

void BccIngestor::submit(relay::BccSubmission submission,
                         std::function<void(Result<relay::BccReceipt>)> done) {
  ingestBcc(store_, std::move(submission), std::nullopt,
            [done = std::move(done)](Result<store::BccOutcome> r) {
              if (!r) {
                done(std::unexpected(std::move(r.error())));
                return;
              }
              done(std::move(r->receipt));
            });
}

} // namespace mailgate::api

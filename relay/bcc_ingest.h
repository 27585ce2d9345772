// The hook through which the SMTP submission side hands a message with BCC-ingestion
// recipients (relay/policy/bcc_plan.h, docs/bcc.md) to storage: what is relayed and what is
// ingested commit in one transaction. Declared here, where it is used; the implementation lives
// in gateway/ (it needs the message summary and the store's synced_messages table).
#pragma once

#include "base/error.h"
#include "relay/policy/bcc_plan.h"
#include "relay/queue_store.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mailgate::relay {

struct BccSubmission {
  // What to queue for delivery; `recipients` holds only the addresses to relay, and when it is
  // empty nothing is queued. Its body is also what is ingested (the Received header included).
  NewMessage message;
  std::vector<policy::BccCopy> copies;  // each ingested, folder "bcc", with a message.received
  std::vector<policy::BccSkip> skipped; // each recorded as a message.bcc_skipped event
};

struct BccReceipt {
  std::string queue_id;      // the queued message; empty when nothing was queued
  std::vector<int64_t> uids; // the uid each copy got, in the order of `copies`
};

class BccIngest {
public:
  BccIngest() = default;
  BccIngest(const BccIngest&) = delete;
  BccIngest& operator=(const BccIngest&) = delete;
  virtual ~BccIngest() = default;

  // Commits the submission durably (fsync'd) and only then calls `done`, on the loop, in a later
  // turn, exactly as QueueStore::enqueue does (same threading contract and error codes): on an
  // error nothing of it was stored.
  virtual void submit(BccSubmission submission, std::function<void(Result<BccReceipt>)> done) = 0;
};

} // namespace mailgate::relay

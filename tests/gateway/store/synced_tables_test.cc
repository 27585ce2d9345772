// synced_messages and BCC ingestion in the store (gateway/store/synced_tables.h): uids per
// mailbox and folder, the message.received event in the same transaction, and storeBcc queuing
// the relayed part with the copies in one commit.
#include "gateway/store/queue_tables.h"
#include "gateway/store/sqlite_queue_store.h"
#include "gateway/store/synced_tables.h"
#include "tests/gateway/store/store_test_support.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <string>

namespace mailgate::store {
namespace {

using testing::await;

class SyncedTablesTest : public testing::StoreFixture {
protected:
  // Keys are purged against the store's clock: keep it at the messages' time.
  std::unique_ptr<SqliteQueueStore> openAtT0() {
    SqliteStoreOptions o;
    o.clock = [] { return testing::kT0; };
    return open(std::move(o));
  }
  relay::BccSubmission submission(std::vector<std::string> relayed) {
    relay::BccSubmission s;
    s.message.mail_from = "rep1@acme.example";
    s.message.recipients = std::move(relayed);
    s.message.body = "From: rep1@acme.example\r\nTo: a@x.example\r\nSubject: hi\r\n\r\nbody\r\n";
    s.message.tenant = "acme";
    s.message.mailbox = "rep1@acme.example";
    s.message.message_id = "<m1@acme.example>";
    s.message.route.clear();
    s.message.now_ms = testing::kT0;
    s.message.expires_at_ms = testing::kT0 + testing::kDay;
    s.copies.push_back({"acme", "rep1@acme.example", "acme-bcc@mailgate.local"});
    return s;
  }
  SyncedMessage facts() {
    SyncedMessage f;
    f.message_id = "<m1@acme.example>";
    f.from = "rep1@acme.example";
    f.to = {"a@x.example"};
    f.subject = "hi";
    f.date = "2026-09-21T14:13:20Z";
    return f;
  }
  Result<BccOutcome> submit(SqliteQueueStore& store, relay::BccSubmission s,
                            std::optional<IdempotencyKey> key = std::nullopt) {
    return await<BccOutcome>(
        q_, [&](auto done) { submitBcc(store, std::move(s), facts(), std::move(key), done); });
  }
  // "1,2": the uids of a mailbox's bcc folder. (A string, not a vector: g++ 12 reports a false
  // free-nonheap-object for Result<std::vector<int64_t>> through write's type erasure.)
  std::string uids(SqliteQueueStore& store, const std::string& mailbox) {
    auto r = await<std::string>(q_, [&](auto done) {
      store.read<std::string>(
          [mailbox](QueueTables& t) -> Result<std::string> {
            auto u = syncedUids(t, mailbox, "bcc");
            if (!u) {
              return std::unexpected(u.error());
            }
            std::string out;
            for (const int64_t uid : *u) {
              out += (out.empty() ? "" : ",") + std::to_string(uid);
            }
            return out;
          },
          done);
    });
    EXPECT_TRUE(r.has_value());
    return r.value_or("?");
  }
};

TEST_F(SyncedTablesTest, AnAllBccSubmissionStoresACopyAndItsEventAndQueuesNothing) {
  auto store = open();
  ASSERT_TRUE(store);
  auto r = submit(*store, submission({}));
  ASSERT_TRUE(r.has_value()) << r.error().describe();
  EXPECT_TRUE(r->receipt.queue_id.empty());
  EXPECT_EQ(r->receipt.uids, (std::vector<int64_t>{1}));
  EXPECT_EQ(uids(*store, "REP1@acme.example"), "1"); // NOCASE mailbox

  auto events = allEvents(*store);
  ASSERT_EQ(events.size(), 1U);
  EXPECT_EQ(events[0].type, "message.received");
  EXPECT_EQ(events[0].tenant, "acme");
  EXPECT_EQ(events[0].mailbox, "rep1@acme.example");
  const auto data = nlohmann::json::parse(events[0].data);
  EXPECT_EQ(data, nlohmann::json::parse(R"({"message_id": "<m1@acme.example>", "folder": "bcc",
      "uid": 1, "uidvalidity": 0, "direction": "outgoing", "source": "bcc",
      "from": "rep1@acme.example", "to": ["a@x.example"], "cc": [], "subject": "hi",
      "date": "2026-09-21T14:13:20Z", "size": 63, "flags": []})"));
  auto counts = await<relay::QueueCounts>(q_, [&](auto done) { store->counts(done); });
  ASSERT_TRUE(counts.has_value());
  EXPECT_EQ(counts->queued, 0U);
}

TEST_F(SyncedTablesTest, UidsGrowPerMailboxAndStartAtOneForAnother) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(submit(*store, submission({})));
  auto second = submit(*store, submission({}));
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->receipt.uids, (std::vector<int64_t>{2}));
  auto other = submission({});
  other.copies[0].mailbox = "rep2@acme.example";
  auto third = submit(*store, std::move(other));
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(third->receipt.uids, (std::vector<int64_t>{1}));
  EXPECT_EQ(uids(*store, "rep1@acme.example"), "1,2");
}

TEST_F(SyncedTablesTest, AMixedSubmissionQueuesTheOthersInTheSameCommit) {
  auto store = open();
  ASSERT_TRUE(store);
  auto r = submit(*store, submission({"a@x.example"}));
  ASSERT_TRUE(r.has_value()) << r.error().describe();
  ASSERT_FALSE(r->receipt.queue_id.empty());
  auto m = get(*store, r->receipt.queue_id);
  ASSERT_TRUE(m.has_value());
  ASSERT_EQ(m->recipients.size(), 1U);
  EXPECT_EQ(m->recipients[0].address, "a@x.example");
  std::vector<std::string> types;
  for (const auto& e : allEvents(*store)) {
    types.push_back(e.type);
  }
  EXPECT_EQ(types, (std::vector<std::string>{"message.queued", "message.received"}));
}

TEST_F(SyncedTablesTest, ASkippedAddressIsAnEventNamingItAndTheQueuedMessage) {
  auto store = open();
  ASSERT_TRUE(store);
  auto s = submission({"a@x.example"});
  s.copies.clear();
  s.skipped.push_back({"beta", "beta-bcc@mailgate.local"});
  auto r = submit(*store, std::move(s));
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->receipt.uids.empty());
  auto events = allEvents(*store);
  ASSERT_EQ(events.size(), 2U);
  EXPECT_EQ(events[1].type, "message.bcc_skipped");
  const auto data = nlohmann::json::parse(events[1].data);
  EXPECT_EQ(data["address"], "beta-bcc@mailgate.local");
  EXPECT_EQ(data["tenant"], "beta");
  EXPECT_EQ(data["sender"], "rep1@acme.example");
  EXPECT_EQ(data["queue_id"], r->receipt.queue_id);
  EXPECT_EQ(uids(*store, "rep1@acme.example"), "");
}

TEST_F(SyncedTablesTest, AReplayedIdempotencyKeyStoresNoSecondCopy) {
  auto store = openAtT0();
  ASSERT_TRUE(store);
  const IdempotencyKey key{"crm", "k1", "fp"};
  auto first = submit(*store, submission({"a@x.example"}), key);
  ASSERT_TRUE(first.has_value());
  auto again = submit(*store, submission({"a@x.example"}), key);
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(again->receipt.queue_id, first->receipt.queue_id);
  EXPECT_EQ(uids(*store, "rep1@acme.example"), "1");
}

TEST_F(SyncedTablesTest, AFailedPartUndoesTheWholeSubmission) {
  auto store = openAtT0();
  ASSERT_TRUE(store);
  const IdempotencyKey key{"crm", "k1", "fp"};
  ASSERT_TRUE(submit(*store, submission({"a@x.example"}), key));
  const size_t events = allEvents(*store).size();
  // The same key for another request: refused, and its copy is not stored either.
  auto bad = submit(*store, submission({"a@x.example"}), IdempotencyKey{"crm", "k1", "other"});
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, "store.idempotency_mismatch");
  EXPECT_EQ(allEvents(*store).size(), events);
  EXPECT_EQ(uids(*store, "rep1@acme.example"), "1");
}

} // namespace
} // namespace mailgate::store

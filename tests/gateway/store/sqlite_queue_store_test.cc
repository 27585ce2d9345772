#include "gateway/store/json_writer.h"
#include "gateway/store/sqlite_queue_store.h"
#include "tests/gateway/store/store_test_support.h"

#include <algorithm>
#include <array>
#include <gtest/gtest.h>
#include <set>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace mailgate::store {
namespace {

using relay::AttemptOutcome;
using relay::DeliveryResult;
using relay::MessageState;
using relay::NewMessage;
using relay::QueueCounts;
using relay::QueuedMessage;
using relay::RecipientOutcome;
using relay::RecipientStatus;
using testing::await;
using testing::kDay;
using testing::kMinute;
using testing::kT0;
using testing::PostQueue;
using testing::RawDb;
using testing::TempDir;

std::string bodyOf(size_t size, char fill = 'x') {
  std::string body = "Subject: test\r\n\r\n";
  while (body.size() + 2 < size) {
    body.append(std::min<size_t>(76, size - body.size() - 2), fill);
    body += "\r\n";
  }
  return body;
}

NewMessage message(std::vector<std::string> rcpts = {"bob@example.net"}, size_t size = 2048,
                   int64_t now = kT0) {
  NewMessage m;
  m.mail_from = "rep1@acme.example";
  m.recipients = std::move(rcpts);
  m.body = bodyOf(size);
  m.submitter = "crm";
  m.tenant = "acme";
  m.mailbox = "rep1@acme.example";
  m.message_id = "<abc@acme.example>";
  m.route = "microsoft365";
  m.now_ms = now;
  m.expires_at_ms = now + 5 * kDay;
  return m;
}

class SqliteQueueStoreTest : public testing::StoreFixture {
protected:
  Result<std::string> body(SqliteQueueStore& s, const std::string& id) {
    return await<std::string>(q_, [&](auto done) { s.loadBody(id, done); });
  }
  Result<QueueCounts> counts(SqliteQueueStore& s) {
    return await<QueueCounts>(q_, [&](auto done) { s.counts(done); });
  }
  std::vector<StoredEvent> events(SqliteQueueStore& s, const std::string& queue_id) {
    std::vector<StoredEvent> out;
    for (auto& e : allEvents(s)) {
      if (e.queue_id == queue_id) {
        out.push_back(std::move(e));
      }
    }
    return out;
  }
  static std::vector<std::string> types(const std::vector<StoredEvent>& evs) {
    std::vector<std::string> out;
    for (const auto& e : evs) {
      out.push_back(e.type);
    }
    return out;
  }
};

TEST_F(SqliteQueueStoreTest, EnqueuedMessageSurvivesReopening) {
  NewMessage m = message({"bob@example.net", "carol@example.org"}, 2048);
  m.smtputf8 = true;
  const std::string expected_body = m.body;
  std::string id;
  {
    auto store = open();
    ASSERT_TRUE(store);
    id = enqueueOk(*store, m);
  }
  ASSERT_EQ(id.size(), 26u);
  auto store = open();
  ASSERT_TRUE(store);
  auto got = get(*store, id);
  ASSERT_TRUE(got.has_value()) << got.error().describe();
  EXPECT_EQ(got->id, id);
  EXPECT_EQ(got->state, MessageState::kQueued);
  EXPECT_EQ(got->mail_from, "rep1@acme.example");
  ASSERT_EQ(got->recipients.size(), 2u);
  EXPECT_EQ(got->recipients[0].address, "bob@example.net");
  EXPECT_EQ(got->recipients[1].address, "carol@example.org");
  EXPECT_EQ(got->recipients[1].status, RecipientStatus::kPending);
  EXPECT_EQ(got->attempts, 0);
  EXPECT_EQ(got->created_ms, kT0);
  EXPECT_EQ(got->next_attempt_ms, kT0);
  EXPECT_EQ(got->expires_at_ms, kT0 + 5 * kDay);
  EXPECT_EQ(got->size, expected_body.size());
  EXPECT_EQ(got->route, "microsoft365");
  EXPECT_EQ(got->tenant, "acme");
  EXPECT_TRUE(got->smtputf8);
  EXPECT_FALSE(got->body_8bit);
  auto b = body(*store, id);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(*b, expected_body);
}

TEST_F(SqliteQueueStoreTest, CommittedDataIsVisibleToAnotherConnectionBeforeTheCallback) {
  auto store = open();
  ASSERT_TRUE(store);
  std::optional<Result<std::string>> id;
  store->enqueue(message(), [&](Result<std::string> r) { id = std::move(r); });
  // The completion is posted only after COMMIT returned: by the time it is in the queue, an
  // independent connection sees the row.
  ASSERT_TRUE(q_.waitPosted(1));
  RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM messages"), "1");
  EXPECT_EQ(raw.scalar("PRAGMA journal_mode"), "wal");
  q_.runPending();
  ASSERT_TRUE(id.has_value() && id->has_value());
  EXPECT_EQ(raw.scalar("SELECT state FROM messages WHERE id = '" + **id + "'"), "queued");
}

TEST_F(SqliteQueueStoreTest, CompletionsRunOnlyThroughPostOnTheLoopThread) {
  auto store = open();
  ASSERT_TRUE(store);
  int called = 0;
  std::thread::id where;
  store->enqueue(message(), [&](Result<std::string> r) {
    EXPECT_TRUE(r.has_value());
    where = std::this_thread::get_id();
    ++called;
  });
  ASSERT_TRUE(q_.waitPosted(1));
  EXPECT_EQ(called, 0) << "done ran before the loop ran the posted closure";
  q_.runPending();
  EXPECT_EQ(called, 1);
  EXPECT_EQ(where, std::this_thread::get_id());
}

TEST_F(SqliteQueueStoreTest, ManyEnqueuesShareFewCommits) {
  SqliteStoreOptions o;
  o.batch_max = 512;
  auto store = open(o);
  ASSERT_TRUE(store);
  // An operator's shell holds the write lock while the loop submits 1000 messages, so they
  // all queue up behind at most one batch the storage thread took before blocking.
  RawDb raw(dbFile());
  ASSERT_EQ(raw.exec("BEGIN IMMEDIATE"), SQLITE_OK);
  constexpr size_t kCount = 1000;
  size_t ok = 0;
  for (size_t i = 0; i < kCount; ++i) {
    store->enqueue(message({"r" + std::to_string(i) + "@example.net"}, 2048),
                   [&](Result<std::string> r) { ok += r.has_value() ? 1 : 0; });
  }
  ASSERT_EQ(raw.exec("ROLLBACK"), SQLITE_OK);
  ASSERT_TRUE(q_.runUntil([&] { return store->stats().committed_ops == kCount && ok == kCount; }));
  const StoreStats s = store->stats();
  EXPECT_EQ(ok, kCount);
  EXPECT_LE(s.commits, 3u); // ≤ 1 batch before the lock, then 999 ops in batches of ≤ 512
  EXPECT_GE(s.commits, 2u); // batch_max bounds a transaction
  EXPECT_LE(s.max_batch, 512u);
  EXPECT_EQ(s.failed_batches, 0u);
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM messages"), std::to_string(kCount));
  // One post per batch, not one per message.
  EXPECT_LE(q_.posted(), 3u);
}

TEST_F(SqliteQueueStoreTest, PartialFailureRetriesOnlyPendingRecipients) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string id =
      enqueueOk(*store, message({"a@example.net", "b@example.net", "c@example.net"}));
  ASSERT_TRUE(markSending(*store, id, kT0 + 1000).has_value());

  AttemptOutcome first;
  first.id = id;
  first.now_ms = kT0 + 2000;
  first.next_attempt_ms = kT0 + 2000 + 5 * kMinute;
  first.recipients = {
      {"a@example.net", DeliveryResult::kSent, "250 2.0.0 OK queued as 1"},
      {"b@example.net", DeliveryResult::kTempFail, "452 4.2.2 mailbox full"},
      {"c@example.net", DeliveryResult::kPermFail, "550 5.1.1 no such user"},
  };
  first.reply = "250 2.0.0 OK";
  auto after1 = record(*store, first);
  ASSERT_TRUE(after1.has_value()) << after1.error().describe();
  EXPECT_EQ(after1->state, MessageState::kDeferred);
  EXPECT_EQ(after1->attempts, 1);
  EXPECT_EQ(after1->next_attempt_ms, kT0 + 2000 + 5 * kMinute);
  EXPECT_EQ(after1->recipients[0].status, RecipientStatus::kSent);
  EXPECT_EQ(after1->recipients[1].status, RecipientStatus::kPending);
  EXPECT_EQ(after1->recipients[1].last_reply, "452 4.2.2 mailbox full");
  EXPECT_EQ(after1->recipients[2].status, RecipientStatus::kFailed);
  EXPECT_EQ(after1->recipients[2].last_reply, "550 5.1.1 no such user");
  EXPECT_EQ(after1->pendingRecipients(), 1u);

  // The stored row says the same as the returned one.
  auto stored = get(*store, id);
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->state, MessageState::kDeferred);
  EXPECT_EQ(stored->recipients[1].status, RecipientStatus::kPending);
  EXPECT_EQ(stored->recipients[2].status, RecipientStatus::kFailed);

  // The retry only carries b; a result for a (already sent) is ignored.
  ASSERT_TRUE(markSending(*store, id, kT0 + 6 * kMinute).has_value());
  AttemptOutcome second;
  second.id = id;
  second.now_ms = kT0 + 6 * kMinute;
  second.recipients = {{"a@example.net", DeliveryResult::kPermFail, "550 should be ignored"},
                       {"b@example.net", DeliveryResult::kSent, "250 2.0.0 OK"}};
  auto after2 = record(*store, second);
  ASSERT_TRUE(after2.has_value());
  EXPECT_EQ(after2->state, MessageState::kSent);
  EXPECT_EQ(after2->attempts, 2);
  EXPECT_EQ(after2->recipients[0].status, RecipientStatus::kSent);
  EXPECT_EQ(after2->recipients[0].last_reply, "250 2.0.0 OK queued as 1");
  EXPECT_EQ(after2->recipients[1].status, RecipientStatus::kSent);
  EXPECT_EQ(after2->recipients[2].status, RecipientStatus::kFailed);

  const auto evs = events(*store, id);
  EXPECT_EQ(types(evs),
            (std::vector<std::string>{"message.queued", "message.sending", "message.bounced",
                                      "message.deferred", "message.sending", "message.sent"}));
  RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM events WHERE NOT json_valid(data)"), "0");
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.recipients[0].address') FROM events "
                       "WHERE type = 'message.bounced'"),
            "c@example.net");
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.recipients[0].reply') FROM events "
                       "WHERE type = 'message.bounced'"),
            "550 5.1.1 no such user");
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.next_attempt') FROM events "
                       "WHERE type = 'message.deferred'"),
            formatRfc3339(kT0 + 2000 + 5 * kMinute));
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.reason') FROM events "
                       "WHERE type = 'message.sent'"),
            "delivered to 2 of 3 recipients; the rest bounced");
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.route') FROM events "
                       "WHERE type = 'message.sent'"),
            "microsoft365");
}

TEST_F(SqliteQueueStoreTest, WholeMessageTempFailureKeepsEveryRecipientPending) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string id = enqueueOk(*store, message({"a@example.net", "b@example.net"}));
  ASSERT_TRUE(markSending(*store, id, kT0).has_value());
  AttemptOutcome o;
  o.id = id;
  o.now_ms = kT0 + 10;
  o.next_attempt_ms = kT0 + 5 * kMinute;
  o.whole_message_temp_failure = true;
  o.reply = "421 4.7.0 try again later";
  o.recipients = {{"a@example.net", DeliveryResult::kSent, "250 ignored"}};
  auto m = record(*store, o);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->state, MessageState::kDeferred);
  EXPECT_EQ(m->pendingRecipients(), 2u);
  EXPECT_EQ(m->last_reply, "421 4.7.0 try again later");
  EXPECT_EQ(m->recipients[0].last_reply, "421 4.7.0 try again later");
  RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.reply') FROM events "
                       "WHERE type = 'message.deferred'"),
            "421 4.7.0 try again later");
}

TEST_F(SqliteQueueStoreTest, AllRecipientsRejectedFailsTheMessage) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string id = enqueueOk(*store, message({"a@example.net"}));
  ASSERT_TRUE(markSending(*store, id, kT0).has_value());
  AttemptOutcome o;
  o.id = id;
  o.now_ms = kT0 + 1;
  o.recipients = {{"a@example.net", DeliveryResult::kPermFail, "550 5.7.1 relay denied"}};
  auto m = record(*store, o);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->state, MessageState::kFailed);
  EXPECT_EQ(types(events(*store, id)),
            (std::vector<std::string>{"message.queued", "message.sending", "message.bounced",
                                      "message.failed"}));
}

TEST_F(SqliteQueueStoreTest, TransitionsThatDoNotApplyAreRefused) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string id = enqueueOk(*store, message());

  AttemptOutcome early;
  early.id = id;
  early.now_ms = kT0;
  auto not_sending = record(*store, early);
  ASSERT_FALSE(not_sending.has_value());
  EXPECT_EQ(not_sending.error().code, "store.state");

  ASSERT_TRUE(markSending(*store, id, kT0).has_value());
  auto twice = markSending(*store, id, kT0);
  ASSERT_FALSE(twice.has_value());
  EXPECT_EQ(twice.error().code, "store.state");

  auto expiring_while_sending =
      await<QueuedMessage>(q_, [&](auto done) { store->expire(id, kT0, done); });
  ASSERT_FALSE(expiring_while_sending.has_value());
  EXPECT_EQ(expiring_while_sending.error().code, "store.state");

  AttemptOutcome ok;
  ok.id = id;
  ok.now_ms = kT0 + 1;
  ok.recipients = {{"bob@example.net", DeliveryResult::kSent, "250 ok"}};
  ASSERT_TRUE(record(*store, ok).has_value());
  auto after_final = markSending(*store, id, kT0 + 2);
  ASSERT_FALSE(after_final.has_value());
  EXPECT_EQ(after_final.error().code, "store.state");

  auto missing = markSending(*store, "NOSUCHID", kT0);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, "store.not_found");
  EXPECT_EQ(get(*store, "NOSUCHID").error().code, "store.not_found");
  EXPECT_EQ(body(*store, "NOSUCHID").error().code, "store.not_found");

  // A refused transition wrote nothing: the row is still sent, with one sending event.
  EXPECT_EQ(get(*store, id)->state, MessageState::kSent);
  EXPECT_EQ(types(events(*store, id)),
            (std::vector<std::string>{"message.queued", "message.sending", "message.sent"}));
}

TEST_F(SqliteQueueStoreTest, MessageWithoutRecipientsIsRefused) {
  auto store = open();
  ASSERT_TRUE(store);
  auto r = enqueue(*store, message({}));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, "store.invalid");
  RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM bodies"), "0");
}

TEST_F(SqliteQueueStoreTest, EventRowsCarryIdsTimesAndReasons) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string id = enqueueOk(*store, message());
  ASSERT_TRUE(markSending(*store, id, kT0 + 5).has_value());
  AttemptOutcome o;
  o.id = id;
  o.now_ms = kT0 + 6;
  o.next_attempt_ms = kT0 + kMinute;
  // Upstream replies can contain anything: quotes, control bytes, broken UTF-8.
  o.reply = "451 \"quoted\" \\ tab\t bad\xff utf8 ok\xc3\xa9";
  o.whole_message_temp_failure = true;
  ASSERT_TRUE(record(*store, o).has_value());

  const auto evs = events(*store, id);
  ASSERT_EQ(evs.size(), 3u);
  std::set<std::string> ids;
  for (size_t i = 0; i < evs.size(); ++i) {
    ids.insert(evs[i].id);
    EXPECT_EQ(evs[i].id.size(), 26u);
    EXPECT_EQ(evs[i].tenant, "acme");
    EXPECT_EQ(evs[i].mailbox, "rep1@acme.example");
    if (i > 0) {
      EXPECT_GT(evs[i].seq, evs[i - 1].seq);
    }
  }
  EXPECT_EQ(ids.size(), evs.size());
  EXPECT_EQ(evs[0].time, formatRfc3339(kT0));
  EXPECT_EQ(evs[1].time, formatRfc3339(kT0 + 5));
  EXPECT_EQ(evs[0].time, "2026-09-21T14:13:20.000Z");

  RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM events WHERE NOT json_valid(data)"), "0");
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.reason') FROM events "
                       "WHERE type = 'message.queued'"),
            "accepted for delivery");
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.message_id') FROM events "
                       "WHERE type = 'message.queued'"),
            "<abc@acme.example>");
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.reason') FROM events "
                       "WHERE type = 'message.sending'"),
            "delivery attempt 1");
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.reply') FROM events "
                       "WHERE type = 'message.deferred'"),
            "451 \"quoted\" \\ tab\t bad\xef\xbf\xbd utf8 ok\xc3\xa9");

  // The envelope the webhook sender will deliver is valid JSON too.
  const std::string env = evs[2].toJson();
  EXPECT_EQ(raw.scalar("SELECT json_valid('" + env + "')"), "1") << env;
  EXPECT_EQ(raw.scalar("SELECT json_extract('" + env + "', '$.type')"), "message.deferred");
  EXPECT_EQ(raw.scalar("SELECT json_extract('" + env + "', '$.data.queue_id')"), id);
}

TEST_F(SqliteQueueStoreTest, RecoverRequeuesMessagesACrashLeftSending) {
  // The child opens the store, enqueues, starts an attempt and dies without any clean-up: no
  // destructor, no checkpoint, the WAL left as it is.
  std::array<int, 2> pipefd{};
  ASSERT_EQ(pipe(pipefd.data()), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    PostQueue q;
    SqliteStoreOptions o;
    o.data_dir = dir_.path();
    o.post = q.fn();
    auto store = openSqliteQueueStore(std::move(o));
    if (!store) {
      _exit(3);
    }
    std::vector<std::string> ids;
    for (int i = 0; i < 3; ++i) {
      std::optional<Result<std::string>> id;
      (*store)->enqueue(message({"x@example.net"}, 2048, kT0 + i),
                        [&](Result<std::string> r) { id = std::move(r); });
      if (!q.runUntil([&] { return id.has_value(); }) || !id->has_value()) {
        _exit(4);
      }
      ids.push_back(**id);
    }
    std::optional<Result<std::string>> sending;
    (*store)->markSending(ids[0], kT0 + 10, [&](Result<std::string> r) { sending = std::move(r); });
    if (!q.runUntil([&] { return sending.has_value(); }) || !sending->has_value()) {
      _exit(5);
    }
    const std::string all = ids[0] + ids[1] + ids[2];
    if (write(pipefd[1], all.data(), all.size()) != static_cast<ssize_t>(all.size())) {
      _exit(6);
    }
    _exit(0); // the crash
  }
  close(pipefd[1]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  std::string ids(78, '\0');
  ASSERT_EQ(read(pipefd[0], ids.data(), ids.size()), 78);
  close(pipefd[0]);
  const std::string crashed = ids.substr(0, 26);

  auto store = open();
  ASSERT_TRUE(store);
  auto recovered = store->recover(kT0 + kMinute);
  ASSERT_TRUE(recovered.has_value()) << recovered.error().describe();
  ASSERT_EQ(recovered->size(), 3u);
  // Ordered by next_attempt_ms: the two untouched ones (due at kT0+1, kT0+2) first, then the
  // interrupted one, due again now.
  EXPECT_EQ((*recovered)[0].id, ids.substr(26, 26));
  EXPECT_EQ((*recovered)[1].id, ids.substr(52, 26));
  const QueuedMessage& again = (*recovered)[2];
  EXPECT_EQ(again.id, crashed);
  EXPECT_EQ(again.state, MessageState::kQueued);
  EXPECT_EQ(again.attempts, 1);
  EXPECT_EQ(again.next_attempt_ms, kT0 + kMinute);
  ASSERT_EQ(again.recipients.size(), 1u);
  EXPECT_EQ(again.recipients[0].address, "x@example.net");

  const auto evs = events(*store, crashed);
  ASSERT_EQ(types(evs),
            (std::vector<std::string>{"message.queued", "message.sending", "message.queued"}));
  EXPECT_NE(evs[2].data.find("at-least-once"), std::string::npos) << evs[2].data;
  EXPECT_NE(evs[2].data.find("\"recovered\":true"), std::string::npos) << evs[2].data;

  // Sending again works after recovery.
  EXPECT_TRUE(markSending(*store, crashed, kT0 + kMinute).has_value());
}

TEST_F(SqliteQueueStoreTest, RecoverReturnsOnlyUnfinishedMessages) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string sent = enqueueOk(*store, message({"a@example.net"}, 512, kT0));
  const std::string deferred = enqueueOk(*store, message({"b@example.net"}, 512, kT0 + 1));
  const std::string queued = enqueueOk(*store, message({"c@example.net"}, 512, kT0 + 2));
  ASSERT_TRUE(markSending(*store, sent, kT0).has_value());
  AttemptOutcome ok;
  ok.id = sent;
  ok.now_ms = kT0;
  ok.recipients = {{"a@example.net", DeliveryResult::kSent, "250 ok"}};
  ASSERT_TRUE(record(*store, ok).has_value());
  ASSERT_TRUE(markSending(*store, deferred, kT0).has_value());
  AttemptOutcome later;
  later.id = deferred;
  later.now_ms = kT0;
  later.next_attempt_ms = kT0 + 10 * kMinute;
  later.whole_message_temp_failure = true;
  later.reply = "421 busy";
  ASSERT_TRUE(record(*store, later).has_value());
  store.reset();

  store = open();
  ASSERT_TRUE(store);
  auto r = store->recover(kT0 + kMinute);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].id, queued);
  EXPECT_EQ((*r)[0].state, MessageState::kQueued);
  EXPECT_EQ((*r)[1].id, deferred);
  EXPECT_EQ((*r)[1].state, MessageState::kDeferred);
  EXPECT_EQ((*r)[1].next_attempt_ms, kT0 + 10 * kMinute);
  EXPECT_EQ((*r)[1].recipients[0].last_reply, "421 busy");
  auto c = counts(*store);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->queued, 1u);
  EXPECT_EQ(c->deferred, 1u);
  EXPECT_EQ(c->sent, 1u);
  EXPECT_EQ(c->sending, 0u);
  EXPECT_EQ(c->failed, 0u);
}

TEST_F(SqliteQueueStoreTest, TemporaryFailureAfterTheLifetimeBounces) {
  auto store = open();
  ASSERT_TRUE(store);
  NewMessage m = message({"a@example.net", "b@example.net"});
  m.expires_at_ms = kT0 + kDay;
  const std::string id = enqueueOk(*store, m);
  ASSERT_TRUE(markSending(*store, id, kT0).has_value());
  AttemptOutcome first;
  first.id = id;
  first.now_ms = kT0;
  first.next_attempt_ms = kT0 + 2 * kDay; // past the lifetime: clamped to it
  first.recipients = {{"a@example.net", DeliveryResult::kSent, "250 ok"},
                      {"b@example.net", DeliveryResult::kTempFail, "451 later"}};
  auto d = record(*store, first);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->state, MessageState::kDeferred);
  EXPECT_EQ(d->next_attempt_ms, kT0 + kDay);

  ASSERT_TRUE(markSending(*store, id, kT0 + kDay).has_value());
  AttemptOutcome last;
  last.id = id;
  last.now_ms = kT0 + kDay;
  last.next_attempt_ms = kT0 + kDay + kMinute;
  last.recipients = {{"b@example.net", DeliveryResult::kTempFail, "451 still later"}};
  auto done = record(*store, last);
  ASSERT_TRUE(done.has_value());
  // a was delivered, so the message is finished as sent; b bounced as expired.
  EXPECT_EQ(done->state, MessageState::kSent);
  EXPECT_EQ(done->recipients[1].status, RecipientStatus::kFailed);
  EXPECT_NE(done->recipients[1].last_reply.find("451 still later"), std::string::npos);
  EXPECT_EQ(done->pendingRecipients(), 0u);

  RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.reason') FROM events "
                       "WHERE type = 'message.bounced'"),
            "message lifetime ended before delivery");
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.recipients[0].address') FROM events "
                       "WHERE type = 'message.bounced'"),
            "b@example.net");
}

TEST_F(SqliteQueueStoreTest, ExpireFailsAnUndeliveredMessageWithABounce) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string id = enqueueOk(*store, message({"a@example.net", "b@example.net"}));
  auto r = await<QueuedMessage>(q_, [&](auto done) { store->expire(id, kT0 + 5 * kDay, done); });
  ASSERT_TRUE(r.has_value()) << r.error().describe();
  EXPECT_EQ(r->state, MessageState::kFailed);
  EXPECT_EQ(r->recipients[0].status, RecipientStatus::kFailed);
  EXPECT_EQ(r->recipients[1].status, RecipientStatus::kFailed);
  const auto evs = events(*store, id);
  EXPECT_EQ(types(evs),
            (std::vector<std::string>{"message.queued", "message.bounced", "message.failed"}));
  EXPECT_EQ(evs[1].time, formatRfc3339(kT0 + 5 * kDay));
  RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT json_array_length(data, '$.recipients') FROM events "
                       "WHERE type = 'message.bounced'"),
            "2");
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.reason') FROM events "
                       "WHERE type = 'message.failed'"),
            "message lifetime ended before delivery");
}

TEST_F(SqliteQueueStoreTest, RetryNowMakesADeferredMessageDueAndRecordsWhoAsked) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string id = enqueueOk(*store, message());
  ASSERT_TRUE(markSending(*store, id, kT0).has_value());
  AttemptOutcome later;
  later.id = id;
  later.now_ms = kT0;
  later.next_attempt_ms = kT0 + 30 * kMinute;
  later.whole_message_temp_failure = true;
  later.reply = "421 try later";
  ASSERT_TRUE(record(*store, later).has_value());

  auto r = await<QueuedMessage>(
      q_, [&](auto done) { store->retryNow(id, kT0 + kMinute, "API token ops", done); });
  ASSERT_TRUE(r.has_value()) << r.error().describe();
  EXPECT_EQ(r->state, MessageState::kQueued);
  EXPECT_EQ(r->next_attempt_ms, kT0 + kMinute);
  EXPECT_EQ(r->attempts, 1);
  EXPECT_EQ(r->expires_at_ms, kT0 + 5 * kDay);
  EXPECT_EQ(r->recipients[0].status, RecipientStatus::kPending);

  auto stored = get(*store, id);
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->state, MessageState::kQueued);
  EXPECT_EQ(stored->next_attempt_ms, kT0 + kMinute);
  // recover() after a restart sees it due at the new time.
  auto recovered = store->recover(kT0 + kMinute);
  ASSERT_TRUE(recovered.has_value());
  ASSERT_EQ(recovered->size(), 1u);
  EXPECT_EQ(recovered->front().next_attempt_ms, kT0 + kMinute);

  const auto evs = events(*store, id);
  ASSERT_FALSE(evs.empty());
  EXPECT_EQ(evs.back().type, "message.retry");
  RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.actor') FROM events "
                       "WHERE type = 'message.retry'"),
            "API token ops");
}

TEST_F(SqliteQueueStoreTest, CancelFailsPendingRecipientsAndKeepsDeliveredOnes) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string whole = enqueueOk(*store, message({"a@example.net", "b@example.net"}));
  auto c = await<QueuedMessage>(
      q_, [&](auto done) { store->cancel(whole, kT0 + 1, "API token ops", done); });
  ASSERT_TRUE(c.has_value()) << c.error().describe();
  EXPECT_EQ(c->state, MessageState::kFailed);
  EXPECT_EQ(c->recipients[0].status, RecipientStatus::kFailed);
  EXPECT_EQ(c->recipients[1].last_reply, "cancelled by API token ops");
  EXPECT_EQ(c->last_reply, "cancelled by API token ops");
  EXPECT_EQ(types(events(*store, whole)),
            (std::vector<std::string>{"message.queued", "message.bounced", "message.failed"}));

  // One recipient delivered before the cancel: the message ends sent, the other one failed.
  const std::string half = enqueueOk(*store, message({"a@example.net", "b@example.net"}));
  ASSERT_TRUE(markSending(*store, half, kT0).has_value());
  AttemptOutcome partial;
  partial.id = half;
  partial.now_ms = kT0;
  partial.next_attempt_ms = kT0 + kMinute;
  partial.recipients = {{"a@example.net", DeliveryResult::kSent, "250 ok"},
                        {"b@example.net", DeliveryResult::kTempFail, "451 later"}};
  ASSERT_TRUE(record(*store, partial).has_value());
  auto h = await<QueuedMessage>(
      q_, [&](auto done) { store->cancel(half, kT0 + 2, "API token ops", done); });
  ASSERT_TRUE(h.has_value()) << h.error().describe();
  EXPECT_EQ(h->state, MessageState::kSent);
  EXPECT_EQ(h->recipients[0].status, RecipientStatus::kSent);
  EXPECT_EQ(h->recipients[1].status, RecipientStatus::kFailed);

  RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.reason') FROM events "
                       "WHERE type = 'message.failed' AND queue_id = '" +
                       whole + "'"),
            "cancelled by API token ops");
  EXPECT_EQ(raw.scalar("SELECT json_extract(data, '$.cancelled') FROM events "
                       "WHERE type = 'message.sent' AND queue_id = '" +
                       half + "'"),
            "1");
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM recipients WHERE status = 'pending'"), "0");
}

TEST_F(SqliteQueueStoreTest, RetryAndCancelRefuseMessagesThatAreNotWaiting) {
  auto store = open();
  ASSERT_TRUE(store);
  const std::string id = enqueueOk(*store, message());
  ASSERT_TRUE(markSending(*store, id, kT0).has_value());
  for (int pass = 0; pass < 2; ++pass) {
    // Pass 0: sending. Pass 1: sent (final).
    auto retry =
        await<QueuedMessage>(q_, [&](auto done) { store->retryNow(id, kT0 + 1, "ops", done); });
    ASSERT_FALSE(retry.has_value());
    EXPECT_EQ(retry.error().code, "store.state");
    auto cancel =
        await<QueuedMessage>(q_, [&](auto done) { store->cancel(id, kT0 + 1, "ops", done); });
    ASSERT_FALSE(cancel.has_value());
    EXPECT_EQ(cancel.error().code, "store.state");
    if (pass == 0) {
      AttemptOutcome ok;
      ok.id = id;
      ok.now_ms = kT0 + 1;
      ok.recipients = {{"bob@example.net", DeliveryResult::kSent, "250 ok"}};
      ASSERT_TRUE(record(*store, ok).has_value());
    }
  }
  auto stored = get(*store, id);
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->state, MessageState::kSent);
  auto missing =
      await<QueuedMessage>(q_, [&](auto done) { store->cancel("NOSUCHID", kT0, "ops", done); });
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, "store.not_found");
}

TEST_F(SqliteQueueStoreTest, RecoverExpiresMessagesWhoseLifetimeEndedWhileDown) {
  std::string old_id;
  std::string young_id;
  {
    auto store = open();
    ASSERT_TRUE(store);
    NewMessage old = message();
    old.expires_at_ms = kT0 + kDay;
    old_id = enqueueOk(*store, old);
    young_id = enqueueOk(*store, message());
  }
  auto store = open();
  ASSERT_TRUE(store);
  auto r = store->recover(kT0 + 2 * kDay);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].id, young_id);
  EXPECT_EQ(get(*store, old_id)->state, MessageState::kFailed);
  EXPECT_EQ(types(events(*store, old_id)),
            (std::vector<std::string>{"message.queued", "message.bounced", "message.failed"}));
}

TEST_F(SqliteQueueStoreTest, ConcurrentEnqueuesFromCallbacksAndThreads) {
  auto store = open();
  ASSERT_TRUE(store);
  std::set<std::string> ids;
  size_t failures = 0;
  // Eight chains, each issuing its next enqueue from the completion of the previous one...
  constexpr int kChains = 8;
  constexpr int kPerChain = 50;
  std::function<void(int, int)> chain = [&](int c, int left) {
    if (left == 0) {
      return;
    }
    store->enqueue(message({"c" + std::to_string(c) + "@example.net"}, 1024),
                   [&, c, left](Result<std::string> r) {
                     EXPECT_EQ(std::this_thread::get_id(), q_.owner());
                     if (r) {
                       ids.insert(*r);
                     } else {
                       ++failures;
                     }
                     chain(c, left - 1);
                   });
  };
  for (int c = 0; c < kChains; ++c) {
    chain(c, kPerChain);
  }
  // ... while two other threads submit too (their completions still arrive on the loop).
  constexpr int kPerThread = 100;
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        store->enqueue(message({"t" + std::to_string(t) + "@example.net"}, 1024),
                       [&](Result<std::string> r) {
                         EXPECT_EQ(std::this_thread::get_id(), q_.owner());
                         if (r) {
                           ids.insert(*r);
                         } else {
                           ++failures;
                         }
                       });
      }
    });
  }
  constexpr size_t kTotal = kChains * kPerChain + 2 * kPerThread;
  ASSERT_TRUE(q_.runUntil([&] { return ids.size() + failures == kTotal; }));
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(failures, 0u);
  EXPECT_EQ(ids.size(), kTotal);
  auto c = counts(*store);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->queued, kTotal);
}

TEST_F(SqliteQueueStoreTest, FullStoreRefusesWithStoreFullAndRecovers) {
  SqliteStoreOptions o;
  o.max_db_bytes = 1024 * 1024;
  auto store = open(o);
  ASSERT_TRUE(store);
  const std::string small = enqueueOk(*store, message({"a@example.net"}, 2048));

  // 2 MiB cannot fit under a 1 MiB cap: refused, and nothing of it is left behind.
  auto big = enqueue(*store, message({"b@example.net"}, 2 * 1024 * 1024));
  ASSERT_FALSE(big.has_value());
  EXPECT_EQ(big.error().code, "store.full");
  EXPECT_FALSE(big.error().hint.empty());

  // The store keeps working: small messages still fit, the earlier one is intact.
  const std::string small2 = enqueueOk(*store, message({"c@example.net"}, 2048));
  EXPECT_TRUE(get(*store, small).has_value());
  RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM messages"), "2");
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM bodies"), "2");
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM events"), "2");

  // Space frees up: the same message is now accepted.
  ASSERT_TRUE(await<void>(q_, [&](auto done) { store->setMaxDbBytes(0, done); }).has_value());
  const std::string big_id = enqueueOk(*store, message({"b@example.net"}, 2 * 1024 * 1024));
  auto b = body(*store, big_id);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(*b, bodyOf(2 * 1024 * 1024));
  EXPECT_EQ(store->stats().failed_batches, 0u);
}

TEST_F(SqliteQueueStoreTest, FullStoreFailsOnlyTheOperationThatDidNotFit) {
  SqliteStoreOptions o;
  o.max_db_bytes = 1024 * 1024;
  auto store = open(o);
  ASSERT_TRUE(store);
  // Hold the lock so the three land in one batch: small, too big, small.
  RawDb raw(dbFile());
  ASSERT_EQ(raw.exec("BEGIN IMMEDIATE"), SQLITE_OK);
  std::vector<Result<std::string>> results;
  for (size_t size : {size_t{2048}, size_t{3 * 1024 * 1024}, size_t{2048}}) {
    store->enqueue(message({"a@example.net"}, size),
                   [&](Result<std::string> r) { results.push_back(std::move(r)); });
  }
  ASSERT_EQ(raw.exec("ROLLBACK"), SQLITE_OK);
  ASSERT_TRUE(q_.runUntil([&] { return results.size() == 3; }));
  EXPECT_TRUE(results[0].has_value());
  ASSERT_FALSE(results[1].has_value());
  EXPECT_EQ(results[1].error().code, "store.full");
  EXPECT_TRUE(results[2].has_value());
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM messages"), "2");
}

TEST_F(SqliteQueueStoreTest, LockedDatabaseFailsTheBatchAndTheNextOneSucceeds) {
  SqliteStoreOptions o;
  o.busy_timeout_ms = 20;
  auto store = open(o);
  ASSERT_TRUE(store);
  RawDb raw(dbFile());
  ASSERT_EQ(raw.exec("BEGIN IMMEDIATE"), SQLITE_OK);
  auto refused = enqueue(*store, message());
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, "store.busy");
  EXPECT_EQ(store->stats().failed_batches, 1u);
  ASSERT_EQ(raw.exec("ROLLBACK"), SQLITE_OK);
  const std::string id = enqueueOk(*store, message());
  EXPECT_TRUE(get(*store, id).has_value());
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM messages"), "1");
}

TEST_F(SqliteQueueStoreTest, DestructorCompletesEveryQueuedOperation) {
  constexpr size_t kCount = 200;
  std::vector<std::string> ids;
  size_t failures = 0;
  {
    auto store = open();
    ASSERT_TRUE(store);
    for (size_t i = 0; i < kCount; ++i) {
      store->enqueue(message(), [&](Result<std::string> r) {
        if (r) {
          ids.push_back(*r);
        } else {
          ++failures;
        }
      });
    }
  } // the loop has not run yet: everything is still in flight or queued
  q_.runPending();
  EXPECT_EQ(ids.size(), kCount);
  EXPECT_EQ(failures, 0u);
  RawDb raw(dbFile());
  EXPECT_EQ(raw.scalar("SELECT count(*) FROM messages"), std::to_string(kCount));
}

TEST_F(SqliteQueueStoreTest, IdsAreUniqueAndSortInCreationOrder) {
  auto store = open();
  ASSERT_TRUE(store);
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    store->enqueue(message(), [&](Result<std::string> r) { ids.push_back(r.value_or("")); });
  }
  ASSERT_TRUE(q_.runUntil([&] { return ids.size() == 50; }));
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), ids.size());
  for (const auto& id : ids) {
    EXPECT_EQ(id.find_first_not_of("0123456789ABCDEFGHJKMNPQRSTVWXYZ"), std::string::npos) << id;
  }
}

TEST_F(SqliteQueueStoreTest, SchemaIsVersionedAndANewerDatabaseIsRefused) {
  { ASSERT_TRUE(open()); }
  { ASSERT_TRUE(open()); } // reopening applies nothing twice
  {
    RawDb raw(dbFile());
    EXPECT_EQ(raw.scalar("SELECT group_concat(version) FROM schema_migrations"), "1,2,3,4,5");
    ASSERT_EQ(raw.exec("INSERT INTO schema_migrations VALUES (99, 'x', 'from the future')"),
              SQLITE_OK);
  }
  SqliteStoreOptions o;
  o.data_dir = dir_.path();
  o.post = q_.fn();
  auto refused = openSqliteQueueStore(o);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, "store.schema");
}

TEST_F(SqliteQueueStoreTest, OpenCreatesAPrivateDataDirAndRejectsBadOptions) {
  SqliteStoreOptions o;
  o.data_dir = dir_.path() + "/nested/spool";
  o.post = q_.fn();
  auto s = openSqliteQueueStore(o);
  ASSERT_TRUE(s.has_value()) << s.error().describe();
  EXPECT_TRUE(std::filesystem::exists(dir_.path() + "/nested/spool/mailgate.db"));
  const auto perms =
      std::filesystem::status(dir_.path() + "/nested/spool/mailgate.db").permissions();
  EXPECT_EQ(perms & (std::filesystem::perms::group_all | std::filesystem::perms::others_all),
            std::filesystem::perms::none);

  SqliteStoreOptions no_post;
  no_post.data_dir = dir_.path();
  EXPECT_EQ(openSqliteQueueStore(no_post).error().code, "store.config");

  SqliteStoreOptions not_a_dir;
  not_a_dir.data_dir = dir_.path() + "/nested/spool/mailgate.db/x";
  not_a_dir.post = q_.fn();
  EXPECT_EQ(openSqliteQueueStore(not_a_dir).error().code, "store.io");
}

} // namespace
} // namespace mailgate::store

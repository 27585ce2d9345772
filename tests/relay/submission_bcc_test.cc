// The SMTP side of BCC ingestion (docs/bcc.md): a SubmissionServer on 127.0.0.1 with the real
// SQLite store for what is queued normally, a recording BccIngest double for the BCC path, and
// the blocking client. What the hook receives, when the client hears 250, and the refusals.
#include "relay/submission_server.h"
#include "tests/relay/delivery_test_support.h"
#include "tests/relay/smtp_test_client.h"

#include <gtest/gtest.h>

namespace mailgate::relay::test {
namespace {

constexpr const char* kRep = "rep1@acme.example";
constexpr const char* kBcc = "acme-bcc@mailgate.local";

config::Config bccConfig() {
  config::Config c;
  c.node.id = "gw-test";
  c.listeners.smtp.address = config::Endpoint{"127.0.0.1", 0};
  config::ApiToken crm;
  crm.name = "crm";
  crm.secret = Secret("crm-secret");
  crm.roles = {config::Role::kSubmitter};
  crm.tenants = {"*"};
  c.listeners.api.tokens.push_back(crm);
  for (const char* id : {"acme", "globex"}) {
    config::Tenant t;
    t.id = id;
    t.bcc_address = std::string(id) + "-bcc@mailgate.local";
    config::Mailbox m;
    m.address = std::string(id == std::string("acme") ? "rep1" : "boss") + "@" + id + ".example";
    t.mailboxes.push_back(m);
    c.tenants.push_back(t);
  }
  return c;
}

// Records each submission; answers it when the test says so (answer()), in a later loop turn.
class RecordingIngest final : public BccIngest {
public:
  explicit RecordingIngest(net::Loop& loop) : loop_(loop) {}
  void submit(BccSubmission s, std::function<void(Result<BccReceipt>)> done) override {
    seen.push_back(std::move(s));
    pending.push_back(std::move(done));
  }
  void answer(Result<BccReceipt> r) {
    auto done = std::move(pending.front());
    pending.erase(pending.begin());
    loop_.post([done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
  }
  std::vector<BccSubmission> seen;                              // loop thread
  std::vector<std::function<void(Result<BccReceipt>)>> pending; // loop thread

private:
  net::Loop& loop_;
};

class SubmissionBccTest : public ::testing::Test {
protected:
  void start(bool with_hook = true) {
    server = loop.call([&]() -> std::unique_ptr<SubmissionServer> {
      auto s = SubmissionServer::create(
          loop.loop(), config_, store->store(), [this](QueuedMessage m) { accepted.push_back(m); },
          with_hook ? &ingest : nullptr);
      EXPECT_TRUE(s.has_value()) << s.error().describe();
      return s ? std::move(*s) : nullptr;
    });
    ASSERT_NE(server, nullptr);
    port = loop.call([&] { return server->port(); });
  }

  // A message from `from` to `rcpts` and the final dot, without reading the answer; the
  // session's first message greets and authenticates first.
  void begin(Client& c, const std::string& from, const std::vector<std::string>& rcpts,
             bool first = true) {
    if (first) {
      EXPECT_TRUE(c.greetAndAuth("crm", "crm-secret").starts_with("235"));
    }
    EXPECT_TRUE(c.command("MAIL FROM:<" + from + ">").starts_with("250"));
    for (const auto& r : rcpts) {
      EXPECT_TRUE(c.command("RCPT TO:<" + r + ">").starts_with("250"));
    }
    EXPECT_TRUE(c.command("DATA").starts_with("354"));
    c.send("From: <" + from + ">\r\nSubject: bcc\r\nMessage-ID: <m@acme.example>\r\n\r\nhello");
    c.send(".");
  }

  size_t seen() {
    return loop.call([&] { return ingest.seen.size(); });
  }

  void TearDown() override {
    loop.call([&] { server.reset(); });
    store->close();
    loop.stop();
  }

  config::Config config_ = bccConfig();
  LoopThread loop;
  std::unique_ptr<TestStore> store = std::make_unique<TestStore>(loop);
  RecordingIngest ingest{loop.loop()};
  std::unique_ptr<SubmissionServer> server;
  std::vector<QueuedMessage> accepted; // loop thread
  uint16_t port = 0;
};

TEST_F(SubmissionBccTest, AnAllBccMessageIsAnsweredOnlyAfterTheHookCommitted) {
  start();
  Client c(port);
  begin(c, kRep, {kBcc});
  ASSERT_TRUE(loop.eventually([&] { return !ingest.pending.empty(); }));
  const BccSubmission s = loop.call([&] { return ingest.seen.front(); });
  EXPECT_TRUE(s.message.recipients.empty());
  ASSERT_EQ(s.copies.size(), 1U);
  EXPECT_EQ(s.copies[0].mailbox, kRep);
  EXPECT_EQ(s.copies[0].tenant, "acme");
  EXPECT_TRUE(s.skipped.empty());
  EXPECT_TRUE(s.message.body.starts_with("Received: from crm.example"));
  EXPECT_EQ(s.message.message_id, "<m@acme.example>");
  EXPECT_EQ(s.message.mailbox, kRep);
  // The reply names the uid the hook gave: it was sent after the commit, not before.
  loop.call([&] { ingest.answer(BccReceipt{"", {7}}); });
  EXPECT_EQ(c.reply(), "250 2.0.0 Ok: BCC copy ingested as uid 7\r\n");
  EXPECT_EQ(loop.call([&] { return accepted.size(); }), 0U); // nothing for delivery
}

TEST_F(SubmissionBccTest, MixedRecipientsGoToTheHookWithoutTheBccAddress) {
  start();
  Client c(port);
  begin(c, kRep, {"a@x.example", "ACME-BCC@mailgate.local", "b@x.example"});
  ASSERT_TRUE(loop.eventually([&] { return !ingest.pending.empty(); }));
  const BccSubmission s = loop.call([&] { return ingest.seen.front(); });
  EXPECT_EQ(s.message.recipients, (std::vector<std::string>{"a@x.example", "b@x.example"}));
  loop.call([&] { ingest.answer(BccReceipt{"Q1", {3}}); });
  EXPECT_EQ(c.reply(), "250 2.0.0 Ok: queued as Q1, BCC copy ingested\r\n");
  ASSERT_TRUE(loop.eventually([&] { return accepted.size() == 1; }));
  const QueuedMessage q = loop.call([&] { return accepted.front(); });
  EXPECT_EQ(q.id, "Q1");
  ASSERT_EQ(q.recipients.size(), 2U);
  EXPECT_EQ(q.recipients[1].address, "b@x.example");
}

TEST_F(SubmissionBccTest, ASenderOfAnotherTenantIsRefusedWhenNothingElseWouldHappen) {
  start();
  Client c(port);
  begin(c, "boss@globex.example", {kBcc});
  EXPECT_EQ(c.reply(), "550 5.7.1 BCC ingestion: sender <boss@globex.example> is not a mailbox "
                       "of tenant acme\r\n");
  EXPECT_EQ(seen(), 0U);
  // The session goes on: the next message works.
  EXPECT_TRUE(c.command("RSET").starts_with("250"));
}

TEST_F(SubmissionBccTest, WithOtherRecipientsTheSkipIsSaidAndRecorded) {
  start();
  Client c(port);
  begin(c, "boss@globex.example", {kBcc, "a@x.example"});
  ASSERT_TRUE(loop.eventually([&] { return !ingest.pending.empty(); }));
  const BccSubmission s = loop.call([&] { return ingest.seen.front(); });
  EXPECT_TRUE(s.copies.empty());
  ASSERT_EQ(s.skipped.size(), 1U);
  EXPECT_EQ(s.skipped[0].tenant, "acme");
  loop.call([&] { ingest.answer(BccReceipt{"Q2", {}}); });
  EXPECT_EQ(c.reply(), "250 2.0.0 Ok: queued as Q2 (BCC ingestion: sender <boss@globex.example> "
                       "is not a mailbox of tenant acme; that copy was skipped)\r\n");
}

TEST_F(SubmissionBccTest, AFailedCommitIsATemporaryRefusal) {
  start();
  Client c(port);
  begin(c, kRep, {kBcc});
  ASSERT_TRUE(loop.eventually([&] { return !ingest.pending.empty(); }));
  loop.call([&] { ingest.answer(std::unexpected(Error("store.full", "disk full"))); });
  EXPECT_EQ(c.reply(), "452 4.3.1 Insufficient system storage, try again later\r\n");
  begin(c, kRep, {kBcc}, false);
  ASSERT_TRUE(loop.eventually([&] { return ingest.pending.size() == 1; }));
  loop.call([&] { ingest.answer(std::unexpected(Error("store.io", "broken"))); });
  EXPECT_TRUE(c.reply().starts_with("451 4.3.0 "));
  EXPECT_EQ(loop.call([&] { return accepted.size(); }), 0U);
}

TEST_F(SubmissionBccTest, WithoutAHookABccMessageIsRefusedForNow) {
  start(false);
  Client c(port);
  begin(c, kRep, {kBcc, "a@x.example"});
  EXPECT_EQ(c.reply(), "451 4.3.0 BCC ingestion is not available, try again later\r\n");
  EXPECT_EQ(loop.call([&] { return accepted.size(); }), 0U);
}

TEST_F(SubmissionBccTest, AReloadThatRemovesTheBccAddressMakesItAnOrdinaryRecipient) {
  start();
  config::Config next = bccConfig();
  next.tenants[0].bcc_address.clear();
  auto shared = std::make_shared<const config::Config>(std::move(next));
  auto report = loop.call([&] { return server->reconfigure(shared); });
  ASSERT_TRUE(report.has_value());
  EXPECT_TRUE(std::any_of(report->applied.begin(), report->applied.end(),
                          [](const auto& l) { return l.starts_with("tenants[].bcc_address"); }));
  Client c(port);
  begin(c, kRep, {kBcc});
  EXPECT_TRUE(c.reply().starts_with("250 2.0.0 Ok: queued as "));
  EXPECT_EQ(seen(), 0U);
  ASSERT_TRUE(loop.eventually([&] { return accepted.size() == 1; }));
  EXPECT_EQ(loop.call([&] { return accepted.front().recipients.front().address; }), kBcc);
}

} // namespace
} // namespace mailgate::relay::test

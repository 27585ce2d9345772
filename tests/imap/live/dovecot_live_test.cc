// The session against real Dovecot, started by tests/integration/test_imap.py, which runs this
// binary with the server's coordinates in the environment (MG_DOVECOT_*). Not registered with
// ctest on its own: without the environment every test fails rather than passing vacuously.
#include "imap/sent_folder.h"
#include "imap/session.h"
#include "net/tls_context.h"
#include "tests/imap/imap_test_util.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <gtest/gtest.h>
#include <string>

namespace mailgate::imap::test {
namespace {

using namespace std::chrono_literals;

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

class FixedTokenSource : public TokenSource {
public:
  FixedTokenSource(net::Loop& loop, std::string token) : loop_(loop), token_(std::move(token)) {}
  void token(std::function<void(Result<Secret>)> done) override {
    loop_.defer([done = std::move(done), t = token_] { done(Secret(t)); });
  }

private:
  net::Loop& loop_;
  std::string token_;
};

class DovecotLive : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_FALSE(env("MG_DOVECOT_IMAPS_PORT").empty())
        << "run by tests/integration/test_imap.py, which starts Dovecot";
    net::TlsClientOptions tls;
    tls.ca_file = env("MG_DOVECOT_CA");
    auto ctx = net::TlsContext::client(tls);
    ASSERT_TRUE(ctx.has_value()) << ctx.error().describe();
    tls_ = *ctx;
  }
  SessionSettings settings(config::TlsMode mode = config::TlsMode::kImplicit) {
    SessionSettings s;
    s.id = 1;
    s.mailbox = env("MG_DOVECOT_USER");
    s.tls = mode;
    s.endpoint = net::Endpoint{
        "127.0.0.1", static_cast<uint16_t>(std::stoi(env(mode == config::TlsMode::kImplicit
                                                             ? "MG_DOVECOT_IMAPS_PORT"
                                                             : "MG_DOVECOT_IMAP_PORT")))};
    s.tls_context = tls_;
    s.username = env("MG_DOVECOT_USER");
    s.password = Secret(env("MG_DOVECOT_PASSWORD"));
    s.client_version = "test";
    return s;
  }
  bool m365() const { return env("MG_DOVECOT_CAPS") == "m365"; }
  void open(SessionSettings s) {
    session_ = std::make_unique<Session>(*loop_, std::move(s), observer_);
    session_->start();
  }
  Step ready() {
    return {[&] { return observer_.ready > 0 || observer_.end.has_value(); },
            [&] {
              ASSERT_EQ(observer_.ready, 1)
                  << (observer_.end ? observer_.end->error.describe() : std::string());
            }};
  }
  Step ended() {
    return {[&] { return observer_.end.has_value(); }, {}};
  }

  TestLoop loop_;
  net::TlsContextPtr tls_;
  RecordingObserver observer_;
  SessionPtr session_;
};

TEST_F(DovecotLive, ImplicitTlsLoginFindsSentAppendsAndFetchesBack) {
  open(settings());
  std::vector<FolderInfo> folders;
  std::string message = "From: <" + env("MG_DOVECOT_USER") +
                        ">\r\nTo: <prospect@example.test>\r\nSubject: live\r\n"
                        "Message-ID: <live-append-1@example.test>\r\n\r\nhello\r\n";
  std::optional<Result<AppendResult>> appended;
  std::optional<Result<SelectInfo>> selected;
  std::optional<Result<std::vector<uint32_t>>> found;
  std::vector<protocol::FetchData> fetched;
  bool fetch_done = false;
  ASSERT_TRUE(loop_.run(
      {ready(),
       {{},
        [&] {
          session_->list([&](Result<std::vector<FolderInfo>> r) {
            EXPECT_TRUE(r.has_value());
            if (r) {
              folders.swap(*r);
            }
          });
          session_->append("Sent Items", {"\\Seen"}, message,
                           [&](Result<AppendResult> r) { appended = std::move(r); });
        }},
       {[&] { return appended.has_value(); },
        [&] {
          ASSERT_TRUE(appended->has_value()) << appended->error().describe();
          ASSERT_TRUE((*appended)->uid.has_value()); // APPENDUID (UIDPLUS)
          session_->select("Sent Items", true,
                           [&](Result<SelectInfo> r) { selected = std::move(r); });
          session_->uidSearch("HEADER Message-ID \"<live-append-1@example.test>\"",
                              [&](Result<std::vector<uint32_t>> r) { found = std::move(r); });
          session_->uidFetch(
              protocol::SequenceSet::fromNumbers({*(*appended)->uid}),
              "(UID FLAGS RFC822.SIZE BODY.PEEK[])",
              [&](protocol::FetchData&& d) { fetched.push_back(std::move(d)); },
              [&](Result<void> r) {
                EXPECT_TRUE(r.has_value());
                fetch_done = true;
              });
        }},
       {[&] { return fetch_done || observer_.end.has_value(); }, {}}}));
  EXPECT_EQ(session_->hasCapability("CONDSTORE"), !m365());
  EXPECT_TRUE(session_->hasCapability("UIDPLUS"));
  EXPECT_EQ(findSentFolder(folders, ""), "Sent Items");
  ASSERT_TRUE(fetch_done);
  ASSERT_TRUE(selected->has_value());
  EXPECT_EQ((*selected)->uidvalidity, (*appended)->uidvalidity);
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ(**found, std::vector<uint32_t>{*(*appended)->uid});
  ASSERT_EQ(fetched.size(), 1u);
  EXPECT_EQ(fetched[0].uid, (*appended)->uid);
  ASSERT_TRUE(fetched[0].flags.has_value());
  EXPECT_NE(std::ranges::find(*fetched[0].flags, std::string("\\Seen")), fetched[0].flags->end());
  EXPECT_EQ(fetched[0].rfc822_size, message.size());
  ASSERT_EQ(fetched[0].sections.size(), 1u);
  EXPECT_EQ(fetched[0].sections[0].data, message);
}

TEST_F(DovecotLive, StartTlsThenLogin) {
  // The session refuses to log in without STARTTLS; Dovecot's answer to NOOP proves the session.
  open(settings(config::TlsMode::kStarttls));
  bool done = false;
  ASSERT_TRUE(
      loop_.run({ready(),
                 {{}, [&] { session_->noop([&](Result<void> r) { done = r.has_value(); }); }},
                 {[&] { return done || observer_.end.has_value(); }, {}}}));
  EXPECT_TRUE(done);
}

TEST_F(DovecotLive, WrongPasswordIsRefusedWithAHint) {
  auto s = settings();
  s.password = Secret("not-the-password");
  open(std::move(s));
  ASSERT_TRUE(loop_.run({ended()}));
  EXPECT_EQ(observer_.end->error.code, "imap.auth");
  EXPECT_FALSE(observer_.end->error.hint.empty());
  EXPECT_EQ(observer_.end->error.describe().find("not-the-password"), std::string::npos);
}

TEST_F(DovecotLive, XOAuth2WithATokenTheIntrospectionEndpointKnows) {
  ASSERT_FALSE(env("MG_DOVECOT_TOKEN").empty());
  auto s = settings();
  s.auth = AuthKind::kXOAuth2;
  s.tokens = std::make_shared<FixedTokenSource>(*loop_, env("MG_DOVECOT_TOKEN"));
  open(std::move(s));
  ASSERT_TRUE(loop_.run({ready()}));
}

TEST_F(DovecotLive, XOAuth2WithAnUnknownTokenIsRefused) {
  auto s = settings();
  s.auth = AuthKind::kXOAuth2;
  s.tokens = std::make_shared<FixedTokenSource>(*loop_, "an-unknown-token");
  open(std::move(s));
  ASSERT_TRUE(loop_.run({ended()}));
  EXPECT_EQ(observer_.end->error.code, "imap.auth");
}

TEST_F(DovecotLive, IdleSeesNewMail) {
  ASSERT_FALSE(env("MG_DOVECOT_DELIVER").empty());
  open(settings());
  uint32_t before = 0;
  bool pushed = false;
  ASSERT_TRUE(loop_.run(
      {ready(),
       {{},
        [&] {
          session_->select("INBOX", true, [&](Result<SelectInfo> r) {
            ASSERT_TRUE(r.has_value()) << r.error().describe();
            before = r->exists;
            session_->idle([](Result<void>) {});
            // Delivered with the harness's command (doveadm save). Mail that lands before IDLE
            // reaches the server is reported when IDLE starts, so there is nothing to wait for.
            FILE* deliver = popen(env("MG_DOVECOT_DELIVER").c_str(), "w");
            ASSERT_NE(deliver, nullptr);
            std::fputs("From: <a@example.test>\r\nSubject: pushed\r\n\r\nhi\r\n", deliver);
            ASSERT_EQ(pclose(deliver), 0);
          });
        }},
       {[&] {
          pushed = std::ranges::any_of(observer_.pushes, [&](const protocol::UntaggedData& d) {
            auto* n = std::get_if<protocol::NumberData>(&d);
            return n && n->kind == protocol::NumberData::Kind::kExists && n->number == before + 1;
          });
          return pushed || observer_.end.has_value();
        },
        {}}}));
  EXPECT_TRUE(pushed);
}

} // namespace
} // namespace mailgate::imap::test

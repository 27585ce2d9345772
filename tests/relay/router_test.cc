// The routing policy (relay/router.*) against docs/routing.md: which route each attempt takes,
// the ledgers behind it, the Microsoft 365 route's states and the events they record. Router is
// sans-IO, so every time is passed in and nothing here reads a clock; configurations are built
// in code. Event data is parsed with nlohmann::json, so every event checked is valid JSON.
#include "relay/route/ledger.h"
#include "relay/route/reply_class.h"
#include "relay/router.h"

#include <chrono>
#include <cstdint>
#include <fmt/format.h>
#include <functional>
#include <gtest/gtest.h>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mailgate::relay {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using Kind = RouteDecision::Kind;

constexpr int64_t kSecondMs = 1000;
constexpr int64_t kMinuteMs = 60 * kSecondMs;
constexpr int64_t kHourMs = 60 * kMinuteMs;
constexpr int64_t kDayMs = 24 * kHourMs;
constexpr int64_t kDayWidthMs = kDayMs / 240; // bucket width of a 24 h window: 6 min
// 2026-11-23T00:00:00Z: a bucket start for every window used here.
constexpr int64_t kT0 = 1'795'392'000'000;
static_assert(kT0 % kDayWidthMs == 0);

// One start every 10 µs: pacing stays out of the way of tests that are not about it.
constexpr uint32_t kUnpaced = 6'000'000;

constexpr std::string_view kAddress = "rep1@acme.example"; // lower case, as the router keys it
constexpr std::string_view kWritten = "Rep1@Acme.example"; // as configured
const std::string kM365Key = "m365:rep1@acme.example";
const std::string kManualKey = "manual:rep1@acme.example";

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

config::Mailbox appPasswordMailbox(std::string address) {
  config::Mailbox m;
  m.address = std::move(address);
  m.auth =
      config::MailboxAuth{config::AuthMethod::kAppPassword, Secret("app-password"), std::nullopt};
  return m;
}

config::Relay relay(std::string name) {
  config::Relay r;
  r.name = std::move(name);
  r.server.host = "127.0.0.1";
  r.server.port = 2525;
  return r;
}

// Login backoff without jitter, so probe times can be compared exactly.
RouterOptions exactOptions() {
  RouterOptions o;
  o.login_backoff = {1min, 1h, 2.0, 0.0, 1};
  o.slow_login_backoff = {5min, 2h, 2.0, 0.0, 1};
  return o;
}

const route::ReplyRule& rule(int code, std::string_view text) {
  const route::ReplyRule* r = route::classifyReply(code, text);
  EXPECT_NE(r, nullptr) << code << " " << text;
  static const route::ReplyRule kNone{};
  return r != nullptr ? *r : kNone;
}

// Microsoft 365's reply texts (../shared/MICROSOFT365.md), without the code.
constexpr std::string_view kQuotaText =
    "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process "
    "message due to a permanent exception";
constexpr std::string_view kSpamText =
    "5.2.0 STOREDRV.Submission.Exception:OutboundSpamException; RefuseQuota";
constexpr std::string_view kThreadLimitText =
    "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded";
constexpr std::string_view kRateText = "4.7.500 Server busy, rate limit reached";
constexpr std::string_view kThrottledText =
    "5.2.252 Sender throttled due to continuous \"send as denied\" errors\nsecond\tline";
constexpr std::string_view kSmtpAuthOffText =
    "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.";
constexpr std::string_view kBadPasswordText = "5.7.3 Authentication unsuccessful";
constexpr std::string_view kSendAsText =
    "5.7.60 SMTP; Client does not have permissions to send as this sender";

struct Event {
  std::string type;
  std::string tenant;
  std::string mailbox;
  json data;
  RouteStateRecord state;
};

class RouterTest : public ::testing::Test {
protected:
  RouterTest() {
    for (const char* name : {"primary", "secondary"}) {
      config_.relays.emplace(name, relay(name));
    }
    config::Tenant t;
    t.id = "acme";
    t.limits.recipients_per_day = 10;
    t.limits.window = 24h;
    t.limits.messages_per_minute = kUnpaced;
    t.limits.recipients_per_message = 5;
    t.limits.max_connections = 3;
    t.fallback = {"primary", "secondary"};
    t.priority_reserve_percent = 0;
    t.on_disconnect = config::OnDisconnect::kHold;
    t.mailboxes.push_back(appPasswordMailbox(std::string(kWritten)));
    config_.tenants.push_back(std::move(t));
  }

  config::Tenant& acme() { return config_.tenants.front(); }
  config::Mailbox& rep1() { return acme().mailboxes.front(); }
  config::RelayLimits& relayLimits(const std::string& name) { return config_.relays[name].limits; }

  // Made at first use, so a test edits config_ and options_ first.
  Router& router() {
    if (!router_) {
      router_ = std::make_unique<Router>(config_, options_);
    }
    return *router_;
  }

  static QueuedMessage message(size_t recipients, std::string priority = "bulk",
                               std::string mailbox = std::string(kAddress), size_t size = 1000) {
    QueuedMessage m;
    m.id = "msg-1";
    m.mail_from = std::string(kWritten);
    m.tenant = "acme";
    m.mailbox = std::move(mailbox);
    m.priority = std::move(priority);
    m.size = size;
    for (size_t i = 0; i < recipients; ++i) {
      m.recipients.push_back({fmt::format("to{}@example.net", i), RecipientStatus::kPending, ""});
    }
    return m;
  }

  RouteDecision decide(const QueuedMessage& m, int64_t now) {
    return router().decide(m, now, [](std::string_view) { return true; });
  }
  RouteDecision decide(size_t recipients, int64_t now, std::string priority = "bulk") {
    return decide(message(recipients, std::move(priority)), now);
  }

  // Sends `recipients` through Microsoft 365 (asserting that it goes there).
  void sendViaM365(size_t recipients, int64_t now) {
    const RouteDecision d = decide(recipients, now);
    ASSERT_EQ(d.kind, Kind::kSend) << d.reason;
    ASSERT_EQ(d.route, kMicrosoft365Route) << d.reason;
  }

  // Every change since the last call; events with their data parsed (invalid JSON fails).
  std::vector<Router::Change> changes() { return router().takeChanges(); }
  std::vector<Event> events() {
    std::vector<Event> out;
    for (auto& c : changes()) {
      if (!c.event) {
        continue;
      }
      Event e;
      e.type = c.event->type;
      e.tenant = c.event->tenant;
      e.mailbox = c.event->mailbox;
      e.state = c.state;
      e.data = json::parse(c.event->data_json, nullptr, false);
      EXPECT_FALSE(e.data.is_discarded()) << e.type << ": " << c.event->data_json;
      EXPECT_TRUE(e.data.is_object()) << e.type << ": " << c.event->data_json;
      EXPECT_EQ(e.tenant, "acme");
      EXPECT_EQ(e.mailbox, kWritten);
      EXPECT_TRUE(c.state.key == kM365Key || c.state.key == kManualKey) << c.state.key;
      out.push_back(std::move(e));
    }
    return out;
  }
  static std::vector<std::string> types(const std::vector<Event>& evs) {
    std::vector<std::string> out;
    for (const auto& e : evs) {
      out.push_back(e.type);
    }
    return out;
  }
  using Types = std::vector<std::string>;

  RouteState state(int64_t now) {
    auto v = router().view(kAddress, now);
    EXPECT_TRUE(v.has_value());
    return v ? v->state : RouteState::kActive;
  }

  config::Config config_;
  RouterOptions options_ = exactOptions();
  std::unique_ptr<Router> router_;
};

// --- relay-only mode --------------------------------------------------------------------------

class RouterRelayOnly : public ::testing::Test {
protected:
  RouterRelayOnly() {
    config_.relays.emplace("default", relay("default"));
    config_.relays.emplace("other", relay("other"));
  }
  Router& router() {
    if (!router_) {
      router_ = std::make_unique<Router>(config_, RouterOptions{});
    }
    return *router_;
  }
  static QueuedMessage message(std::string route, size_t size = 100) {
    QueuedMessage m;
    m.route = std::move(route);
    m.size = size;
    m.recipients.push_back({"a@example.net", RecipientStatus::kPending, ""});
    m.recipients.push_back({"b@example.net", RecipientStatus::kSent, ""});
    m.recipients.push_back({"c@example.net", RecipientStatus::kPending, ""});
    return m;
  }
  RouteDecision decide(const QueuedMessage& m, int64_t now) {
    return router().decide(m, now, [](std::string_view) { return true; });
  }
  config::Config config_;
  std::unique_ptr<Router> router_;
};

TEST_F(RouterRelayOnly, MessageWithoutMailboxGoesToRelayDefaultOrTheOneItsRouteNames) {
  const RouteDecision d = decide(message(""), kT0 + 1234);
  ASSERT_EQ(d.kind, Kind::kSend) << d.reason;
  EXPECT_EQ(d.route, "default");
  EXPECT_TRUE(d.mailbox.empty());
  EXPECT_FALSE(d.failover);
  ASSERT_EQ(d.charges.size(), 1u);
  EXPECT_EQ(d.charges[0].key, "relay:default");
  EXPECT_EQ(d.charges[0].bucket_ms, kT0); // 6-minute buckets of the default 24 h window
  EXPECT_EQ(d.charges[0].count, 2);       // pending recipients only

  const RouteDecision other = decide(message("other"), kT0 + 2000);
  ASSERT_EQ(other.kind, Kind::kSend) << other.reason;
  EXPECT_EQ(other.route, "other");
  ASSERT_EQ(other.charges.size(), 1u);
  EXPECT_EQ(other.charges[0].key, "relay:other");
  EXPECT_TRUE(router().takeChanges().empty());
}

TEST_F(RouterRelayOnly, UnknownRelayFails550_5_3_5) {
  const RouteDecision d = decide(message("nowhere"), kT0);
  EXPECT_EQ(d.kind, Kind::kFail);
  EXPECT_TRUE(d.reason.starts_with("550 5.3.5")) << d.reason;
  EXPECT_TRUE(contains(d.reason, "nowhere")) << d.reason;
  EXPECT_TRUE(d.charges.empty());
}

TEST_F(RouterRelayOnly, RelayLimitsPaceAndRefuseWhatNeverFits) {
  config_.relays["default"].limits.messages_per_minute = 1;
  config_.relays["default"].limits.max_message_bytes = 1000;

  const RouteDecision too_large = decide(message("", 1001), kT0);
  EXPECT_EQ(too_large.kind, Kind::kFail);
  EXPECT_TRUE(too_large.reason.starts_with("554 5.3.4")) << too_large.reason;
  EXPECT_TRUE(too_large.charges.empty());

  ASSERT_EQ(decide(message("", 1000), kT0).kind, Kind::kSend);
  const RouteDecision paced = decide(message(""), kT0 + 5 * kSecondMs);
  EXPECT_EQ(paced.kind, Kind::kWait);
  EXPECT_EQ(paced.until_ms, kT0 + kMinuteMs); // one start per minute
  EXPECT_TRUE(contains(paced.reason, "paced")) << paced.reason;
  EXPECT_EQ(decide(message(""), kT0 + kMinuteMs).kind, Kind::kSend);
}

// --- the Microsoft 365 route ------------------------------------------------------------------

TEST_F(RouterTest, ActiveRouteSendsThroughMicrosoft365AndChargesTheMailboxLedger) {
  const int64_t now = kT0 + 5 * kSecondMs;
  // The message's mailbox is matched case-insensitively.
  const RouteDecision d = decide(message(3, "bulk", "REP1@acme.EXAMPLE"), now);
  ASSERT_EQ(d.kind, Kind::kSend) << d.reason;
  EXPECT_EQ(d.route, kMicrosoft365Route);
  EXPECT_EQ(d.mailbox, kAddress);
  EXPECT_FALSE(d.failover);
  ASSERT_EQ(d.charges.size(), 1u);
  EXPECT_EQ(d.charges[0].key, kM365Key);
  EXPECT_EQ(d.charges[0].bucket_ms, kT0);
  EXPECT_EQ(d.charges[0].count, 3);
  EXPECT_TRUE(changes().empty());

  const auto v = router().view(kAddress, now);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->usage.used, 3u);
  EXPECT_EQ(v->usage.remaining, 7u);
}

TEST_F(RouterTest, SpentBudgetFailsOverOnceAndFailsBackWhenTheWindowFrees) {
  acme().limits.window = 3600s; // buckets of 3600 s / 240 = 15 s
  const int64_t width = 15 * kSecondMs;
  sendViaM365(5, kT0 + 5 * kSecondMs);  // bucket kT0
  sendViaM365(5, kT0 + 20 * kSecondMs); // bucket kT0 + 15 s
  EXPECT_TRUE(changes().empty());

  // The first bucket (5 recipients) frees when its whole width has left the window.
  const int64_t frees = kT0 + width + kHourMs;
  const int64_t t = kT0 + kMinuteMs;
  const RouteDecision d = decide(1, t);
  ASSERT_EQ(d.kind, Kind::kSend) << d.reason;
  EXPECT_EQ(d.route, "primary");
  EXPECT_TRUE(d.mailbox.empty());
  EXPECT_TRUE(d.failover);
  EXPECT_FALSE(d.reason.empty());
  ASSERT_EQ(d.charges.size(), 1u);
  EXPECT_EQ(d.charges[0].key, "relay:primary");
  EXPECT_EQ(d.charges[0].count, 1);

  const auto evs = events();
  ASSERT_EQ(types(evs), (Types{"route.exhausted", "route.failover"}));
  const json& exhausted = evs[0].data;
  EXPECT_EQ(exhausted.value("route", ""), "microsoft365");
  EXPECT_EQ(exhausted.value("source", ""), "ledger");
  EXPECT_EQ(exhausted.value("priority", ""), "bulk");
  EXPECT_FALSE(exhausted.value("reason", "").empty());
  EXPECT_EQ(exhausted.value("until_ms", int64_t{0}), frees);
  const json& failover = evs[1].data;
  EXPECT_EQ(failover.value("from", ""), "microsoft365");
  EXPECT_EQ(failover.value("to", ""), "primary");
  EXPECT_EQ(failover.value("reason", ""), d.reason);
  EXPECT_EQ(failover.value("priority", ""), "bulk");

  // The same episode: more mail fails over without more events.
  for (int64_t at : {t + kSecondMs, t + kMinuteMs, frees - 1}) {
    const RouteDecision again = decide(1, at);
    ASSERT_EQ(again.kind, Kind::kSend) << again.reason;
    EXPECT_EQ(again.route, "primary");
    EXPECT_TRUE(again.failover);
  }
  EXPECT_TRUE(events().empty());
  const auto during = router().view(kAddress, frees - 1);
  ASSERT_TRUE(during);
  EXPECT_EQ(during->state, RouteState::kActive); // the ledger, not Microsoft, said no
  EXPECT_TRUE(during->failed_over);

  // Back through Microsoft 365 when the bucket frees: route.failback, once.
  const RouteDecision back = decide(1, frees);
  ASSERT_EQ(back.kind, Kind::kSend) << back.reason;
  EXPECT_EQ(back.route, kMicrosoft365Route);
  EXPECT_FALSE(back.failover);
  const auto back_evs = events();
  ASSERT_EQ(types(back_evs), Types{"route.failback"});
  EXPECT_EQ(back_evs[0].data.value("route", ""), "microsoft365");
  sendViaM365(1, frees + kSecondMs);
  EXPECT_TRUE(events().empty());
  EXPECT_FALSE(router().view(kAddress, frees + kSecondMs)->failed_over);

  // A later episode is reported again.
  sendViaM365(3, frees + 2 * kSecondMs); // 5 + 5 - 5 + 1 + 1 + 3 = 10
  const RouteDecision next = decide(1, frees + 3 * kSecondMs);
  EXPECT_EQ(next.route, "primary");
  EXPECT_EQ(types(events()), (Types{"route.exhausted", "route.failover"}));
}

TEST_F(RouterTest, BucketsAreOneSecondAtLeast) {
  acme().limits.window = 120s; // 120 s / 240 = 0.5 s, so 1 s buckets
  const int64_t sent = kT0 + 500;
  sendViaM365(5, sent);
  sendViaM365(5, sent + 1);
  const int64_t frees = kT0 + kSecondMs + 120 * kSecondMs;
  EXPECT_EQ(decide(1, frees - 1).route, "primary");
  EXPECT_EQ(decide(1, frees).route, kMicrosoft365Route);
  EXPECT_EQ(types(events()), (Types{"route.exhausted", "route.failover", "route.failback"}));
}

TEST_F(RouterTest, EmptyFallbackHoldsMailThatMicrosoft365CannotTake) {
  acme().fallback.clear();
  sendViaM365(5, kT0);
  sendViaM365(5, kT0 + kSecondMs);
  const int64_t now = kT0 + 2 * kSecondMs;
  const RouteDecision d = decide(1, now);
  EXPECT_EQ(d.kind, Kind::kWait);
  EXPECT_GT(d.until_ms, now);
  EXPECT_TRUE(contains(d.reason, "no fallback relay")) << d.reason;
  EXPECT_TRUE(d.charges.empty());
  EXPECT_EQ(types(events()), Types{"route.exhausted"});
  EXPECT_EQ(router().view(kAddress, now)->usage.used, 10u);
}

TEST_F(RouterTest, LedgerExhaustionIsReportedAgainInTheNextEpisodeWithoutFallback) {
  acme().fallback.clear();
  sendViaM365(5, kT0);
  sendViaM365(5, kT0 + kSecondMs);
  EXPECT_EQ(decide(1, kT0 + 2 * kSecondMs).kind, Kind::kWait);
  EXPECT_EQ(types(events()), Types{"route.exhausted"});

  // The window frees: a new episode starts when the budget is spent again.
  const int64_t later = kT0 + kDayWidthMs + kDayMs;
  sendViaM365(5, later);
  sendViaM365(5, later + kSecondMs);
  EXPECT_TRUE(events().empty());
  EXPECT_EQ(decide(1, later + 2 * kSecondMs).kind, Kind::kWait);
  EXPECT_EQ(types(events()), Types{"route.exhausted"});
}

TEST_F(RouterTest, WaitForTheRelaysIsNoLongerThanMicrosoft365NeedsToFreeBudget) {
  acme().limits.window = 3600s; // the mailbox frees budget within the hour...
  acme().fallback = {"primary"};
  relayLimits("primary").recipients_per_day = 1; // ...the relay only after a day
  sendViaM365(5, kT0);
  sendViaM365(5, kT0 + kSecondMs);
  EXPECT_EQ(decide(1, kT0 + 2 * kSecondMs).route, "primary");
  const int64_t m365_frees = kT0 + 15 * kSecondMs + kHourMs;
  const RouteDecision d = decide(1, kT0 + 3 * kSecondMs);
  EXPECT_EQ(d.kind, Kind::kWait);
  EXPECT_LE(d.until_ms, m365_frees);
  EXPECT_EQ(decide(1, m365_frees).route, kMicrosoft365Route);
}

// --- the reserve for personal mail ------------------------------------------------------------

TEST_F(RouterTest, ReserveMakesBulkFailOverFirstWhilePersonalStillGoesThroughMicrosoft365) {
  acme().priority_reserve_percent = 20; // bulk may use 8 of 10
  sendViaM365(5, kT0);
  sendViaM365(3, kT0 + kSecondMs);

  const RouteDecision bulk = decide(1, kT0 + 2 * kSecondMs, "bulk");
  ASSERT_EQ(bulk.kind, Kind::kSend) << bulk.reason;
  EXPECT_EQ(bulk.route, "primary");
  EXPECT_TRUE(bulk.failover);
  const auto evs = events();
  ASSERT_EQ(types(evs), (Types{"route.exhausted", "route.failover"}));
  EXPECT_EQ(evs[0].data.value("priority", ""), "bulk");
  EXPECT_TRUE(contains(evs[0].data.value("reason", ""), "20% kept for personal mail"))
      << evs[0].data.dump();
  EXPECT_EQ(evs[1].data.value("priority", ""), "bulk");

  const RouteDecision personal = decide(1, kT0 + 3 * kSecondMs, "personal");
  ASSERT_EQ(personal.kind, Kind::kSend) << personal.reason;
  EXPECT_EQ(personal.route, kMicrosoft365Route);
  ASSERT_EQ(personal.charges.size(), 1u);
  EXPECT_EQ(personal.charges[0].key, kM365Key);
  // Bulk mail is still failed over: personal mail through Microsoft 365 is not a failback, and
  // the next bulk message is not a new episode.
  EXPECT_EQ(types(events()), Types{});
  EXPECT_EQ(decide(1, kT0 + 3 * kSecondMs + 1, "bulk").route, "primary");
  EXPECT_EQ(types(events()), Types{});
  EXPECT_EQ(decide(1, kT0 + 3 * kSecondMs + 2, "personal").route, kMicrosoft365Route);
  (void)changes();

  // Now the whole budget is spent: personal mail fails over too, with its own priority.
  EXPECT_EQ(router().view(kAddress, kT0 + 4 * kSecondMs)->usage.used, 10u);
  const RouteDecision spent = decide(1, kT0 + 4 * kSecondMs, " Personal ");
  EXPECT_EQ(spent.route, "primary");
  EXPECT_TRUE(spent.failover);
}

// --- recipients per message -------------------------------------------------------------------

TEST_F(RouterTest, TooManyRecipientsForTheMailboxGoesToTheRelayWholeWithoutAnEpisode) {
  const RouteDecision d = decide(6, kT0); // recipients_per_message is 5
  ASSERT_EQ(d.kind, Kind::kSend) << d.reason;
  EXPECT_EQ(d.route, "primary");
  ASSERT_EQ(d.charges.size(), 1u);
  EXPECT_EQ(d.charges[0].key, "relay:primary");
  EXPECT_EQ(d.charges[0].count, 6); // whole, never split
  EXPECT_TRUE(contains(d.reason, "at most 5 per message")) << d.reason;
  EXPECT_TRUE(events().empty());
  EXPECT_FALSE(router().view(kAddress, kT0)->failed_over);
  EXPECT_EQ(router().view(kAddress, kT0)->usage.used, 0u);

  // The next message that fits goes through Microsoft 365, and that is not a failback.
  sendViaM365(5, kT0 + kSecondMs);
  EXPECT_TRUE(events().empty());

  // More recipients than the whole window budget can never fit either.
  acme().limits.recipients_per_message = 100;
  router_.reset();
  const RouteDecision over = decide(11, kT0);
  EXPECT_EQ(over.route, "primary");
  EXPECT_TRUE(events().empty());
}

TEST_F(RouterTest, TooManyRecipientsForTheMailboxIsMarkedAsFailover) {
  const RouteDecision d = decide(6, kT0);
  ASSERT_EQ(d.kind, Kind::kSend) << d.reason;
  EXPECT_EQ(d.route, "primary");
  EXPECT_TRUE(d.failover);
}

// --- pacing -----------------------------------------------------------------------------------

TEST_F(RouterTest, PacingMakesTheMessageWaitAndNeverFailsOver) {
  acme().limits.messages_per_minute = 2; // one start every 30 s
  sendViaM365(1, kT0);
  const RouteDecision d = decide(1, kT0 + kSecondMs);
  EXPECT_EQ(d.kind, Kind::kWait);
  EXPECT_EQ(d.until_ms, kT0 + 30 * kSecondMs);
  EXPECT_TRUE(d.route.empty());
  EXPECT_TRUE(d.charges.empty());
  EXPECT_TRUE(contains(d.reason, "paced")) << d.reason;
  EXPECT_TRUE(events().empty());
  EXPECT_FALSE(router().view(kAddress, kT0 + kSecondMs)->failed_over);
  sendViaM365(1, kT0 + 30 * kSecondMs);
}

// --- the relay chain --------------------------------------------------------------------------

TEST_F(RouterTest, RelayThatCannotBeReachedIsSkippedWhileALaterOneCanTakeTheMessage) {
  const QueuedMessage m = message(6); // never fits the mailbox: always the chain
  const auto first_down = [](std::string_view r) { return r != "primary"; };
  EXPECT_EQ(router().decide(m, kT0, first_down).route, "secondary");

  const auto all_down = [](std::string_view) { return false; };
  EXPECT_EQ(router().decide(m, kT0, all_down).route, "primary");

  // No answer about reachability: the chain's order.
  EXPECT_EQ(router().decide(m, kT0, nullptr).route, "primary");

  // All down, and the first one's ledger refuses it: the first usable by ledger.
  relayLimits("primary").max_message_bytes = 500;
  router_.reset();
  const RouteDecision d = router().decide(m, kT0, all_down);
  ASSERT_EQ(d.kind, Kind::kSend) << d.reason;
  EXPECT_EQ(d.route, "secondary");
  ASSERT_EQ(d.charges.size(), 1u);
  EXPECT_EQ(d.charges[0].key, "relay:secondary");
}

TEST_F(RouterTest, RelayPacingMakesTheMessageWaitOrUseTheNextRelay) {
  acme().fallback = {"primary"};
  relayLimits("primary").messages_per_minute = 1;
  EXPECT_EQ(decide(6, kT0).route, "primary");
  const RouteDecision d = decide(6, kT0 + kSecondMs);
  EXPECT_EQ(d.kind, Kind::kWait);
  EXPECT_EQ(d.until_ms, kT0 + kMinuteMs);
  EXPECT_TRUE(contains(d.reason, "relay primary")) << d.reason;
  EXPECT_TRUE(d.charges.empty());

  acme().fallback = {"primary", "secondary"};
  router_.reset();
  EXPECT_EQ(decide(6, kT0).route, "primary");
  EXPECT_EQ(decide(6, kT0 + kSecondMs).route, "secondary");
}

TEST_F(RouterTest, RelayLedgerBudgetIsCountedPerRelay) {
  relayLimits("primary").recipients_per_day = 6;
  const RouteDecision first = decide(6, kT0);
  EXPECT_EQ(first.route, "primary");
  const RouteDecision second = decide(6, kT0 + kSecondMs);
  EXPECT_EQ(second.route, "secondary");
  ASSERT_EQ(second.charges.size(), 1u);
  EXPECT_EQ(second.charges[0].key, "relay:secondary");
}

TEST_F(RouterTest, TooLargeForEveryRelayFails554_5_3_4WithEveryReason) {
  relayLimits("primary").max_message_bytes = 1000;
  relayLimits("secondary").recipients_per_message = 2;
  const RouteDecision d = decide(message(6, "bulk", std::string(kAddress), 5000), kT0);
  EXPECT_EQ(d.kind, Kind::kFail);
  EXPECT_TRUE(d.reason.starts_with("554 5.3.4")) << d.reason;
  EXPECT_TRUE(contains(d.reason, "relay primary")) << d.reason;
  EXPECT_TRUE(contains(d.reason, "relay secondary")) << d.reason;
  EXPECT_TRUE(d.charges.empty());
  EXPECT_EQ(router().view(kAddress, kT0)->usage.used, 0u);
}

TEST_F(RouterTest, TooLargeForEveryUnreachableRelayStillNamesTheReasons) {
  relayLimits("primary").max_message_bytes = 1000;
  relayLimits("secondary").max_message_bytes = 1000;
  const RouteDecision d = router().decide(message(6, "bulk", std::string(kAddress), 5000), kT0,
                                          [](std::string_view) { return false; });
  EXPECT_EQ(d.kind, Kind::kFail);
  EXPECT_TRUE(contains(d.reason, "relay primary")) << d.reason;
  EXPECT_TRUE(contains(d.reason, "relay secondary")) << d.reason;
}

// --- Microsoft 365's replies ------------------------------------------------------------------

TEST_F(RouterTest, QuotaReplyExhaustsTheRouteUntilTheOldestRecordedSendFrees) {
  sendViaM365(2, kT0 + kSecondMs);
  const int64_t t = kT0 + 3 * kDayWidthMs;
  const RouteDecision d = decide(1, t - kSecondMs);
  ASSERT_EQ(d.route, kMicrosoft365Route);
  const route::ReplyRule& quota = rule(554, kQuotaText);
  ASSERT_EQ(quota.action, route::ReplyAction::kFailOver);

  const ReplyEffect e = router().onReply(kAddress, quota, 554, kQuotaText, t);
  EXPECT_EQ(e.action, route::ReplyAction::kFailOver);
  EXPECT_EQ(e.retry_at_ms, t);
  EXPECT_FALSE(e.close_connection);
  EXPECT_TRUE(e.reply.starts_with("554 5.2.0")) << e.reply;
  EXPECT_TRUE(contains(e.reply, quota.hint)) << e.reply;
  // The refused attempt's recipients come back (the oldest send decides `until` either way).
  const auto refunds = router().refund(d.charges, 0, t);
  ASSERT_EQ(refunds.size(), 1u);
  EXPECT_EQ(refunds[0].count, -1);

  const int64_t until = kT0 + kDayWidthMs + kDayMs; // the first send's bucket leaves the window
  const auto evs = events();
  ASSERT_EQ(types(evs), Types{"route.exhausted"});
  EXPECT_EQ(evs[0].data.value("route", ""), "microsoft365");
  EXPECT_EQ(evs[0].data.value("state", ""), "exhausted");
  EXPECT_EQ(evs[0].data.value("source", ""), "upstream");
  EXPECT_FALSE(evs[0].data.contains("alert"));
  EXPECT_TRUE(contains(evs[0].data.value("reason", ""), "SubmissionQuotaExceededException"));
  EXPECT_EQ(evs[0].data.value("hint", ""), quota.hint);
  EXPECT_EQ(evs[0].data.value("until_ms", int64_t{0}), until);
  EXPECT_EQ(evs[0].state.state, "exhausted");
  EXPECT_EQ(evs[0].state.until_ms, until);

  const auto v = router().view(kAddress, t);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->state, RouteState::kExhausted);
  EXPECT_EQ(v->until_ms, until);
  EXPECT_TRUE(contains(v->reason, "554 5.2.0")) << v->reason;
  EXPECT_EQ(v->hint, quota.hint);
  EXPECT_EQ(v->usage.used, 2u); // plenty of budget left by the ledger's count...

  // ...but later decisions go to the relay until the oldest send frees.
  const RouteDecision r = decide(1, t + kSecondMs);
  ASSERT_EQ(r.kind, Kind::kSend) << r.reason;
  EXPECT_EQ(r.route, "primary");
  EXPECT_TRUE(r.failover);
  const auto fo = events();
  ASSERT_EQ(types(fo), Types{"route.failover"});
  EXPECT_EQ(fo[0].data.value("to", ""), "primary");
  EXPECT_EQ(decide(1, until - 1).route, "primary");
  EXPECT_TRUE(events().empty());
  EXPECT_TRUE(router().view(kAddress, until - 1)->failed_over);

  const RouteDecision back = decide(1, until);
  EXPECT_EQ(back.route, kMicrosoft365Route);
  // The lazy transition is persisted (no event of its own), then the failback is recorded.
  const auto ch = changes();
  ASSERT_EQ(ch.size(), 2u);
  EXPECT_FALSE(ch[0].event.has_value());
  EXPECT_EQ(ch[0].state.key, kM365Key);
  EXPECT_EQ(ch[0].state.state, "active");
  ASSERT_TRUE(ch[1].event.has_value());
  EXPECT_EQ(ch[1].event->type, "route.failback");
  EXPECT_EQ(state(until), RouteState::kActive);
}

TEST_F(RouterTest, QuotaReplyWithNothingRecordedWaitsTheMinimum) {
  options_.exhausted_min_wait = 30min;
  const int64_t t = kT0 + 7 * kSecondMs;
  (void)router().onReply(kAddress, rule(554, kQuotaText), 554, kQuotaText, t);
  const auto v = router().view(kAddress, t);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->state, RouteState::kExhausted);
  EXPECT_EQ(v->until_ms, t + 30 * kMinuteMs);
  EXPECT_EQ(decide(1, t + 30 * kMinuteMs - 1).route, "primary");
  EXPECT_EQ(decide(1, t + 30 * kMinuteMs).route, kMicrosoft365Route);
}

TEST_F(RouterTest, QuotaReplyToTheOnlyRecordedSendWaitsTheMinimumNotTheWholeWindow) {
  const RouteDecision d = decide(1, kT0);
  ASSERT_EQ(d.route, kMicrosoft365Route);
  const int64_t t = kT0 + kSecondMs;
  // The driver gives the refused attempt's recipients back first (onReply's contract).
  (void)router().refund(d.charges, 0, t);
  (void)router().onReply(kAddress, rule(554, kQuotaText), 554, kQuotaText, t);
  const auto v = router().view(kAddress, t);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->usage.used, 0u);
  EXPECT_EQ(v->until_ms, t + 30 * kMinuteMs);
}

TEST_F(RouterTest, OutboundSpamReplyFailsOverWithAnAlert) {
  const route::ReplyRule& spam = rule(554, kSpamText);
  ASSERT_EQ(spam.action, route::ReplyAction::kFailOverAlert);
  const ReplyEffect e = router().onReply(kAddress, spam, 554, kSpamText, kT0);
  EXPECT_EQ(e.action, route::ReplyAction::kFailOverAlert);
  const auto evs = events();
  ASSERT_EQ(types(evs), Types{"route.exhausted"});
  EXPECT_EQ(evs[0].data.value("alert", false), true);
  EXPECT_EQ(state(kT0), RouteState::kExhausted);
  EXPECT_EQ(decide(1, kT0 + kSecondMs).route, "primary");
}

TEST_F(RouterTest, ConcurrencyReplyLowersTheConnectionCapByOneForAWhile) {
  const route::ReplyRule& fewer = rule(432, kThreadLimitText);
  ASSERT_EQ(fewer.action, route::ReplyAction::kFewerConnections);
  EXPECT_EQ(router().maxConnections(kAddress, kT0), 3u);

  const ReplyEffect e = router().onReply(kAddress, fewer, 432, kThreadLimitText, kT0);
  EXPECT_EQ(e.action, route::ReplyAction::kFewerConnections);
  EXPECT_EQ(e.retry_at_ms, kT0 + 5 * kSecondMs);
  EXPECT_TRUE(e.close_connection);
  EXPECT_EQ(router().maxConnections(kAddress, kT0), 2u);
  const auto evs = events();
  ASSERT_EQ(types(evs), Types{"route.throttled"});
  EXPECT_EQ(evs[0].data.value("action", ""), "fewer_connections");
  EXPECT_EQ(evs[0].data.value("max_connections", 0), 2);
  EXPECT_TRUE(contains(evs[0].data.value("reply", ""), "432 4.3.2"));

  const int64_t last = kT0 + kMinuteMs;
  (void)router().onReply(kAddress, fewer, 432, kThreadLimitText, kT0 + kSecondMs);
  EXPECT_EQ(router().maxConnections(kAddress, kT0 + kSecondMs), 1u);
  (void)router().onReply(kAddress, fewer, 432, kThreadLimitText, last);
  EXPECT_EQ(router().maxConnections(kAddress, last), 1u); // never below 1
  EXPECT_EQ(router().view(kAddress, last)->max_connections, 1u);
  (void)events();

  // Recovers fewer_connections_for (10 min) after the last such reply; the route never changed.
  EXPECT_EQ(router().maxConnections(kAddress, last + 10 * kMinuteMs - 1), 1u);
  EXPECT_EQ(router().maxConnections(kAddress, last + 10 * kMinuteMs), 3u);
  EXPECT_EQ(router().view(kAddress, last + 10 * kMinuteMs)->max_connections, 3u);
  EXPECT_EQ(state(last), RouteState::kActive);
  sendViaM365(1, last);
}

TEST_F(RouterTest, ConcurrencyReplyWithACapOfOneKeepsOne) {
  acme().limits.max_connections = 1;
  const route::ReplyRule& fewer = rule(432, kThreadLimitText);
  (void)router().onReply(kAddress, fewer, 432, kThreadLimitText, kT0);
  EXPECT_EQ(router().maxConnections(kAddress, kT0), 1u);
}

TEST_F(RouterTest, RateReplyRetriesThePacedWayWithoutTouchingTheRoute) {
  const route::ReplyRule& pace = rule(451, kRateText);
  ASSERT_EQ(pace.action, route::ReplyAction::kPace);
  const ReplyEffect e = router().onReply(kAddress, pace, 451, kRateText, kT0);
  EXPECT_EQ(e.action, route::ReplyAction::kPace);
  EXPECT_EQ(e.retry_at_ms, kT0 + kMinuteMs);
  EXPECT_FALSE(e.close_connection);
  const auto evs = events();
  ASSERT_EQ(types(evs), Types{"route.throttled"});
  EXPECT_EQ(evs[0].data.value("action", ""), "pace");
  EXPECT_EQ(state(kT0), RouteState::kActive);
  EXPECT_EQ(router().maxConnections(kAddress, kT0), 3u);
  sendViaM365(1, kT0 + kSecondMs);
}

TEST_F(RouterTest, SenderThrottledPausesTheRouteForTheConfiguredTime) {
  options_.pause = 1h;
  const route::ReplyRule& pause = rule(550, kThrottledText);
  ASSERT_EQ(pause.action, route::ReplyAction::kPauseRoute);
  const ReplyEffect e = router().onReply(kAddress, pause, 550, kThrottledText, kT0);
  EXPECT_EQ(e.action, route::ReplyAction::kPauseRoute);
  EXPECT_EQ(e.retry_at_ms, kT0);

  const auto evs = events();
  ASSERT_EQ(types(evs), Types{"route.paused"});
  const json& data = evs[0].data;
  EXPECT_EQ(data.value("state", ""), "paused");
  EXPECT_EQ(data.value("alert", false), true);
  EXPECT_EQ(data.value("until_ms", int64_t{0}), kT0 + kHourMs);
  // Quotes, a newline and a tab in the reply survive as JSON string content.
  EXPECT_EQ(data.value("reason", ""), fmt::format("550 {}", kThrottledText));
  EXPECT_EQ(data.value("hint", ""), pause.hint);

  const auto v = router().view(kAddress, kT0);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->state, RouteState::kPaused);
  EXPECT_EQ(v->until_ms, kT0 + kHourMs);

  const RouteDecision d = decide(1, kT0 + kSecondMs);
  EXPECT_EQ(d.route, "primary");
  EXPECT_TRUE(d.failover);
  EXPECT_EQ(types(events()), Types{"route.failover"});
  EXPECT_EQ(decide(1, kT0 + kHourMs - 1).route, "primary");

  EXPECT_EQ(state(kT0 + kHourMs), RouteState::kActive);
  EXPECT_EQ(decide(1, kT0 + kHourMs).route, kMicrosoft365Route);
  EXPECT_EQ(types(events()), Types{"route.failback"});
}

TEST_F(RouterTest, AuthenticationReplyDisconnectsAndHoldsTheMail) {
  const route::ReplyRule& off = rule(535, kSmtpAuthOffText);
  ASSERT_EQ(off.action, route::ReplyAction::kDisconnect);
  ASSERT_FALSE(off.slow_retry);
  const ReplyEffect e = router().onReply(kAddress, off, 535, kSmtpAuthOffText, kT0);
  EXPECT_EQ(e.action, route::ReplyAction::kDisconnect);
  EXPECT_TRUE(e.close_connection);
  EXPECT_TRUE(contains(e.reply, "Set-CASMailbox")) << e.reply;

  const int64_t probe = kT0 + kMinuteMs; // login_backoff.initial, no jitter
  const auto evs = events();
  ASSERT_EQ(types(evs), Types{"route.disconnected"});
  EXPECT_EQ(evs[0].data.value("state", ""), "disconnected");
  EXPECT_TRUE(contains(evs[0].data.value("reason", ""), "535 5.7.139"));
  EXPECT_EQ(evs[0].data.value("hint", ""), off.hint);
  EXPECT_EQ(evs[0].data.value("next_login_ms", int64_t{0}), probe);

  const auto v = router().view(kAddress, kT0);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->state, RouteState::kDisconnected);
  EXPECT_EQ(v->until_ms, probe);
  EXPECT_TRUE(contains(v->hint, "Set-CASMailbox")) << v->hint;
  const auto probes = router().probesDue();
  ASSERT_EQ(probes.size(), 1u);
  EXPECT_EQ(probes[0].first, kAddress);
  EXPECT_EQ(probes[0].second, probe);

  // on_disconnect: hold (the default): the mail waits, looked at again just after the probe.
  const RouteDecision d = decide(1, kT0 + kSecondMs);
  EXPECT_EQ(d.kind, Kind::kWait);
  EXPECT_GT(d.until_ms, kT0 + kSecondMs);
  EXPECT_LE(d.until_ms, probe + kSecondMs);
  EXPECT_TRUE(contains(d.reason, "disconnected")) << d.reason;
  EXPECT_TRUE(d.charges.empty());
  EXPECT_TRUE(events().empty());
}

TEST_F(RouterTest, AuthenticationReplyWithFallbackSendsThroughTheChain) {
  acme().on_disconnect = config::OnDisconnect::kFallback;
  (void)router().onReply(kAddress, rule(535, kSmtpAuthOffText), 535, kSmtpAuthOffText, kT0);
  (void)events();
  const RouteDecision d = decide(1, kT0 + kSecondMs);
  ASSERT_EQ(d.kind, Kind::kSend) << d.reason;
  EXPECT_EQ(d.route, "primary");
  EXPECT_TRUE(d.failover);
  EXPECT_TRUE(contains(d.reason, "disconnected")) << d.reason;
  const auto evs = events();
  ASSERT_EQ(types(evs), Types{"route.failover"});
  EXPECT_EQ(evs[0].data.value("to", ""), "primary");
}

TEST_F(RouterTest, BadPasswordReplyProbesTheSlowWay) {
  const route::ReplyRule& bad = rule(535, kBadPasswordText);
  ASSERT_TRUE(bad.slow_retry);
  (void)router().onReply(kAddress, bad, 535, kBadPasswordText, kT0);
  EXPECT_EQ(router().view(kAddress, kT0)->until_ms, kT0 + 5 * kMinuteMs);
}

TEST_F(RouterTest, SendAsDeniedRejectsTheMessageAndLeavesTheRouteAlone) {
  const route::ReplyRule& reject = rule(550, kSendAsText);
  ASSERT_EQ(reject.action, route::ReplyAction::kReject);
  const ReplyEffect e = router().onReply(kAddress, reject, 550, kSendAsText, kT0);
  EXPECT_EQ(e.action, route::ReplyAction::kReject);
  EXPECT_TRUE(e.reply.starts_with("550 5.7.60")) << e.reply;
  EXPECT_TRUE(contains(e.reply, reject.hint)) << e.reply;
  EXPECT_FALSE(e.close_connection);
  EXPECT_TRUE(changes().empty());
  const auto v = router().view(kAddress, kT0);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->state, RouteState::kActive);
  EXPECT_TRUE(v->reason.empty());
  EXPECT_EQ(v->max_connections, 3u);
  EXPECT_TRUE(router().probesDue().empty());
  sendViaM365(1, kT0 + kSecondMs);
}

TEST_F(RouterTest, ReplyForAnUnknownMailboxChangesNothing) {
  const ReplyEffect e =
      router().onReply("nobody@acme.example", rule(554, kQuotaText), 554, kQuotaText, kT0);
  EXPECT_EQ(e.action, route::ReplyAction::kFailOver);
  EXPECT_TRUE(changes().empty());
  EXPECT_EQ(state(kT0), RouteState::kActive);
}

// --- logins -----------------------------------------------------------------------------------

TEST_F(RouterTest, FailedLoginDisconnectsAndAWorkingLoginConnects) {
  const route::ReplyRule& off = rule(535, kSmtpAuthOffText);
  const std::string reason = fmt::format("535 {}", kSmtpAuthOffText);
  EXPECT_EQ(router().onLoginFailed(kAddress, &off, reason, kT0), kT0 + kMinuteMs);
  const auto evs = events();
  ASSERT_EQ(types(evs), Types{"route.disconnected"});
  EXPECT_EQ(evs[0].data.value("reason", ""), reason);
  EXPECT_EQ(evs[0].data.value("hint", ""), off.hint);
  EXPECT_EQ(evs[0].data.value("next_login_ms", int64_t{0}), kT0 + kMinuteMs);
  EXPECT_EQ(state(kT0), RouteState::kDisconnected);

  // The same failure again: backoff doubles, no new event.
  const int64_t t2 = kT0 + kMinuteMs;
  EXPECT_EQ(router().onLoginFailed(kAddress, &off, reason, t2), t2 + 2 * kMinuteMs);
  EXPECT_TRUE(events().empty());
  ASSERT_EQ(router().probesDue().size(), 1u);
  EXPECT_EQ(router().probesDue()[0].second, t2 + 2 * kMinuteMs);

  const int64_t t3 = t2 + 2 * kMinuteMs;
  EXPECT_TRUE(router().onLoginOk(kAddress, t3));
  const auto ok = events();
  ASSERT_EQ(types(ok), Types{"route.connected"});
  EXPECT_EQ(ok[0].data.value("state", ""), "active");
  EXPECT_EQ(ok[0].state.state, "active");
  const auto v = router().view(kAddress, t3);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->state, RouteState::kActive);
  EXPECT_TRUE(v->reason.empty());
  EXPECT_TRUE(router().probesDue().empty());
  sendViaM365(1, t3);

  // A login that works on a connected route is no news.
  EXPECT_FALSE(router().onLoginOk(kAddress, t3 + kSecondMs));
  EXPECT_FALSE(router().onLoginOk("nobody@acme.example", t3 + kSecondMs));
  EXPECT_TRUE(events().empty());
}

TEST_F(RouterTest, BadCredentialsRetryTheLoginOverHours) {
  const route::ReplyRule& bad = rule(535, kBadPasswordText);
  ASSERT_TRUE(bad.slow_retry);
  const std::string why = "535 5.7.3 Authentication unsuccessful";
  EXPECT_EQ(router().onLoginFailed(kAddress, &bad, why, kT0), kT0 + 5 * kMinuteMs);
  EXPECT_EQ(router().onLoginFailed(kAddress, &bad, why, kT0 + kHourMs),
            kT0 + kHourMs + 10 * kMinuteMs);
  EXPECT_EQ(router().onLoginFailed(kAddress, &bad, why, kT0 + 2 * kHourMs),
            kT0 + 2 * kHourMs + 20 * kMinuteMs);
  EXPECT_EQ(types(events()), Types{"route.disconnected"});

  // Another reason, not about the password: the ordinary backoff from its start, and an event.
  const route::ReplyRule& off = rule(535, kSmtpAuthOffText);
  const int64_t t = kT0 + 3 * kHourMs;
  EXPECT_EQ(router().onLoginFailed(kAddress, &off, fmt::format("535 {}", kSmtpAuthOffText), t),
            t + kMinuteMs);
  const auto evs = events();
  ASSERT_EQ(types(evs), Types{"route.disconnected"});
  EXPECT_EQ(evs[0].data.value("hint", ""), off.hint);
}

TEST_F(RouterTest, BadCredentialsWithDefaultOptionsProbeMinutesApartNotSeconds) {
  options_ = RouterOptions{}; // jittered: 5 min ± 20 % against 1 min ± 20 %
  const route::ReplyRule& bad = rule(535, kBadPasswordText);
  const int64_t slow = router().onLoginFailed(kAddress, &bad, "535 5.7.3", kT0);
  EXPECT_GE(slow, kT0 + 4 * kMinuteMs);
  EXPECT_LE(slow, kT0 + 6 * kMinuteMs);
  const route::ReplyRule& off = rule(535, kSmtpAuthOffText);
  const int64_t fast = router().onLoginFailed(kAddress, &off, "535 5.7.139", kT0);
  EXPECT_GE(fast, kT0 + 48 * kSecondMs);
  EXPECT_LE(fast, kT0 + 72 * kSecondMs);
}

TEST_F(RouterTest, ConnectionFailureWithoutAReplyOnlySchedulesTheNextProbe) {
  // A connected route: nothing to schedule, nothing changes.
  EXPECT_EQ(router().onLoginFailed(kAddress, nullptr, "connection refused", kT0), kT0);
  EXPECT_TRUE(changes().empty());
  EXPECT_EQ(state(kT0), RouteState::kActive);
  EXPECT_TRUE(router().probesDue().empty());

  // A disconnected route keeps its reason and hint; only the probe moves.
  const route::ReplyRule& off = rule(535, kSmtpAuthOffText);
  const std::string reason = fmt::format("535 {}", kSmtpAuthOffText);
  (void)router().onLoginFailed(kAddress, &off, reason, kT0);
  (void)events();
  const int64_t t = kT0 + kMinuteMs;
  EXPECT_EQ(router().onLoginFailed(kAddress, nullptr, "connection refused", t), t + 2 * kMinuteMs);
  EXPECT_TRUE(events().empty());
  const auto v = router().view(kAddress, t);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->state, RouteState::kDisconnected);
  EXPECT_EQ(v->reason, reason);
  EXPECT_EQ(v->hint, off.hint);
  EXPECT_EQ(v->until_ms, t + 2 * kMinuteMs);
}

// --- pinned messages --------------------------------------------------------------------------

TEST_F(RouterTest, MessagePinnedToMicrosoft365NeverGoesToARelay) {
  QueuedMessage pinned = message(1);
  pinned.route = std::string(kMicrosoft365Route);
  pinned.route_pinned = true;

  // Over the ledger's budget: waits for the window.
  sendViaM365(5, kT0);
  sendViaM365(5, kT0 + kSecondMs);
  const RouteDecision over = decide(pinned, kT0 + 2 * kSecondMs);
  EXPECT_EQ(over.kind, Kind::kWait);
  EXPECT_EQ(over.until_ms, kT0 + kDayWidthMs + kDayMs);
  EXPECT_TRUE(over.charges.empty());
  EXPECT_TRUE(events().empty()); // no failover of the route for it

  // Exhausted by a quota reply: waits for its end.
  router_.reset();
  (void)router().onReply(kAddress, rule(554, kQuotaText), 554, kQuotaText, kT0);
  const int64_t until = router().view(kAddress, kT0)->until_ms;
  (void)events();
  const RouteDecision exhausted = decide(pinned, kT0 + kSecondMs);
  EXPECT_EQ(exhausted.kind, Kind::kWait);
  EXPECT_EQ(exhausted.until_ms, until);
  EXPECT_TRUE(contains(exhausted.reason, "pinned")) << exhausted.reason;
  EXPECT_TRUE(events().empty());
  EXPECT_FALSE(router().view(kAddress, kT0 + kSecondMs)->failed_over);
  const RouteDecision resumed = decide(pinned, until);
  EXPECT_EQ(resumed.kind, Kind::kSend);
  EXPECT_EQ(resumed.route, kMicrosoft365Route);

  // Paused: waits too.
  router_.reset();
  (void)router().onReply(kAddress, rule(550, kThrottledText), 550, kThrottledText, kT0);
  const RouteDecision paused = decide(pinned, kT0 + kSecondMs);
  EXPECT_EQ(paused.kind, Kind::kWait);
  EXPECT_EQ(paused.until_ms, kT0 + options_.pause.count());

  // Disconnected with on_disconnect: fallback: still waits.
  acme().on_disconnect = config::OnDisconnect::kFallback;
  router_.reset();
  (void)router().onReply(kAddress, rule(535, kSmtpAuthOffText), 535, kSmtpAuthOffText, kT0);
  (void)events();
  const RouteDecision held = decide(pinned, kT0 + kSecondMs);
  EXPECT_EQ(held.kind, Kind::kWait);
  EXPECT_GT(held.until_ms, kT0 + kSecondMs);
  EXPECT_TRUE(events().empty());
  EXPECT_EQ(decide(1, kT0 + 2 * kSecondMs).route, "primary"); // unpinned mail fails over
}

TEST_F(RouterTest, MessagePinnedToARelayStaysOnIt) {
  QueuedMessage pinned = message(2);
  pinned.route = "secondary";
  pinned.route_pinned = true;
  const RouteDecision d = decide(pinned, kT0);
  ASSERT_EQ(d.kind, Kind::kSend) << d.reason;
  EXPECT_EQ(d.route, "secondary");
  EXPECT_TRUE(d.mailbox.empty());
  ASSERT_EQ(d.charges.size(), 1u);
  EXPECT_EQ(d.charges[0].key, "relay:secondary");
  EXPECT_EQ(router().view(kAddress, kT0)->usage.used, 0u);
  EXPECT_TRUE(events().empty());

  // Even when the chain's first relay is the one that is up.
  const RouteDecision stays =
      router().decide(pinned, kT0 + kSecondMs, [](std::string_view r) { return r == "primary"; });
  EXPECT_EQ(stays.route, "secondary");

  pinned.route = "gone";
  const RouteDecision gone = decide(pinned, kT0);
  EXPECT_EQ(gone.kind, Kind::kFail);
  EXPECT_TRUE(gone.reason.starts_with("550 5.3.5")) << gone.reason;
}

// --- giving charges back ----------------------------------------------------------------------

TEST_F(RouterTest, CancelGivesEveryChargeBack) {
  const RouteDecision a = decide(5, kT0);
  sendViaM365(5, kT0 + kSecondMs);
  const RouteDecision relayed = decide(1, kT0 + 2 * kSecondMs);
  ASSERT_EQ(relayed.route, "primary");

  router().cancel(a.charges, kT0 + 3 * kSecondMs);
  EXPECT_EQ(router().view(kAddress, kT0 + 3 * kSecondMs)->usage.used, 5u);
  sendViaM365(5, kT0 + 4 * kSecondMs);

  // Relay charges come back as well.
  relayLimits("primary").recipients_per_day = 6;
  router_.reset();
  const RouteDecision r = decide(6, kT0);
  ASSERT_EQ(r.route, "primary");
  EXPECT_EQ(decide(6, kT0 + kSecondMs).route, "secondary");
  router().cancel(r.charges, kT0 + 2 * kSecondMs);
  EXPECT_EQ(decide(6, kT0 + 3 * kSecondMs).route, "primary");
}

TEST_F(RouterTest, RefundGivesBackWhatTheAttemptDidNotKeep) {
  const RouteDecision d = decide(5, kT0 + kSecondMs);
  ASSERT_EQ(d.route, kMicrosoft365Route);
  const auto back = router().refund(d.charges, 2, kT0 + 2 * kSecondMs);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].key, kM365Key);
  EXPECT_EQ(back[0].bucket_ms, d.charges[0].bucket_ms);
  EXPECT_EQ(back[0].count, -3);
  EXPECT_EQ(router().view(kAddress, kT0 + 2 * kSecondMs)->usage.used, 2u);

  // Everything kept: nothing to persist.
  const RouteDecision all = decide(3, kT0 + 3 * kSecondMs);
  EXPECT_TRUE(router().refund(all.charges, 3, kT0 + 4 * kSecondMs).empty());
  EXPECT_EQ(router().view(kAddress, kT0 + 4 * kSecondMs)->usage.used, 5u);
}

// --- restart ----------------------------------------------------------------------------------

TEST_F(RouterTest, RestoredBucketsCountAgain) {
  relayLimits("primary").recipients_per_day = 6;
  RoutingSnapshot snap;
  snap.buckets.push_back({kM365Key, kT0, 10});
  snap.buckets.push_back({"relay:primary", kT0, 6});
  snap.buckets.push_back({"m365:nobody@acme.example", kT0, 3}); // no longer configured
  snap.buckets.push_back({"relay:gone", kT0, 3});
  snap.buckets.push_back({kM365Key, kT0 - 2 * kDayMs, 7}); // already out of the window
  const int64_t now = kT0 + kMinuteMs;
  router().restore(snap, now);

  const auto v = router().view(kAddress, now);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->usage.used, 10u);
  EXPECT_EQ(v->usage.remaining, 0u);
  EXPECT_EQ(v->usage.frees_at_ms, kT0 + kDayWidthMs + kDayMs);
  const RouteDecision d = decide(1, now);
  EXPECT_EQ(d.route, "secondary"); // the mailbox and the first relay are both spent
  EXPECT_TRUE(d.failover);
}

TEST_F(RouterTest, RestoredExhaustedStateHoldsUntilItsEnd) {
  const int64_t now = kT0 + kMinuteMs;
  const int64_t until = now + kHourMs;
  RoutingSnapshot snap;
  snap.states.push_back(
      {kM365Key, "exhausted", until, "554 5.2.0 SubmissionQuotaExceededException", "hint", now});
  router().restore(snap, now);

  const auto v = router().view(kAddress, now);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->state, RouteState::kExhausted);
  EXPECT_EQ(v->until_ms, until);
  EXPECT_EQ(v->reason, "554 5.2.0 SubmissionQuotaExceededException");
  EXPECT_EQ(v->hint, "hint");
  EXPECT_EQ(v->usage.exhausted_until_ms, until);

  const RouteDecision d = decide(1, now + kSecondMs);
  ASSERT_EQ(d.kind, Kind::kSend) << d.reason;
  EXPECT_EQ(d.route, "primary");
  EXPECT_TRUE(d.failover);
  EXPECT_TRUE(events().empty()); // the episode began before the restart
  EXPECT_EQ(decide(1, until).route, kMicrosoft365Route);
  EXPECT_EQ(types(events()), Types{"route.failback"});
}

TEST_F(RouterTest, RestoredPausedStateHoldsUntilItsEnd) {
  const int64_t now = kT0;
  RoutingSnapshot snap;
  snap.states.push_back({kM365Key, "paused", now + kMinuteMs, "550 5.2.252", "", now});
  router().restore(snap, now);
  EXPECT_EQ(state(now), RouteState::kPaused);
  EXPECT_EQ(decide(1, now + kSecondMs).route, "primary");
  EXPECT_EQ(decide(1, now + kMinuteMs).route, kMicrosoft365Route);
}

TEST_F(RouterTest, RestoredExhaustedStateThatEndedIsActive) {
  const int64_t now = kT0 + kHourMs;
  RoutingSnapshot snap;
  snap.states.push_back({kM365Key, "exhausted", now - 1, "554 5.2.0 quota", "hint", kT0});
  router().restore(snap, now);
  EXPECT_EQ(state(now), RouteState::kActive);
  sendViaM365(1, now);
}

TEST_F(RouterTest, RestoredStateThatEndedLeavesNoStaleReason) {
  const int64_t now = kT0 + kHourMs;
  RoutingSnapshot snap;
  snap.states.push_back({kM365Key, "exhausted", now - 1, "554 5.2.0 quota", "hint", kT0});
  router().restore(snap, now);
  const auto v = router().view(kAddress, now);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->state, RouteState::kActive);
  EXPECT_TRUE(v->reason.empty()) << v->reason;
  EXPECT_TRUE(v->hint.empty()) << v->hint;
}

TEST_F(RouterTest, RestoredDisconnectedStateIsProbedAtOnce) {
  const int64_t now = kT0;
  RoutingSnapshot snap;
  snap.states.push_back({kM365Key, "disconnected", now + kHourMs, "535 5.7.139 off", "enable", 0});
  router().restore(snap, now);
  const auto probes = router().probesDue();
  ASSERT_EQ(probes.size(), 1u);
  EXPECT_EQ(probes[0].first, kAddress);
  EXPECT_EQ(probes[0].second, now);
  const auto v = router().view(kAddress, now);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->state, RouteState::kDisconnected);
  EXPECT_EQ(v->reason, "535 5.7.139 off");
  EXPECT_EQ(v->hint, "enable");
  EXPECT_EQ(decide(1, now).kind, Kind::kWait); // hold

  // The probe fails without a reply: the next one follows the login backoff.
  EXPECT_EQ(router().onLoginFailed(kAddress, nullptr, "connection refused", now), now + kMinuteMs);
  EXPECT_TRUE(router().onLoginOk(kAddress, now + kMinuteMs));
  EXPECT_EQ(types(events()), Types{"route.connected"});
}

TEST_F(RouterTest, RestoreIgnoresUnknownKeysAndStates) {
  RoutingSnapshot snap;
  snap.states.push_back({kM365Key, "failover", kT0 + kHourMs, "?", "", 0});
  snap.states.push_back({"relay:primary", "disconnected", kT0 + kHourMs, "?", "", 0});
  snap.states.push_back({"m365:nobody@acme.example", "exhausted", kT0 + kHourMs, "?", "", 0});
  router().restore(snap, kT0);
  EXPECT_EQ(state(kT0), RouteState::kActive);
  EXPECT_TRUE(router().probesDue().empty());
  sendViaM365(1, kT0);
}

// --- mailboxes without a Microsoft 365 route --------------------------------------------------

TEST_F(RouterTest, MailboxWithoutCredentialsIsUnconfiguredAndHeld) {
  rep1().auth.reset();
  const auto v = router().view(kAddress, kT0);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->state, RouteState::kUnconfigured);
  EXPECT_TRUE(contains(v->reason, "no credentials")) << v->reason;
  EXPECT_FALSE(v->hint.empty());
  EXPECT_TRUE(router().probesDue().empty());
  EXPECT_FALSE(router().onLoginOk(kAddress, kT0));

  const RouteDecision d = decide(1, kT0);
  EXPECT_EQ(d.kind, Kind::kWait);
  EXPECT_EQ(d.until_ms, kT0 + options_.hold_recheck.count());
  EXPECT_TRUE(contains(d.reason, "unconfigured")) << d.reason;
  EXPECT_TRUE(changes().empty());

  // A stored state does not make it configured.
  RoutingSnapshot snap;
  snap.states.push_back({kM365Key, "disconnected", kT0, "x", "", 0});
  router().restore(snap, kT0);
  EXPECT_EQ(state(kT0), RouteState::kUnconfigured);
  EXPECT_TRUE(router().probesDue().empty());
}

TEST_F(RouterTest, UnconfiguredMailboxFollowsOnDisconnectFallback) {
  acme().on_disconnect = config::OnDisconnect::kFallback;
  rep1().access = config::Access::kGraph; // credentials, but no SMTP
  const auto v = router().view(kAddress, kT0);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->state, RouteState::kUnconfigured);
  EXPECT_TRUE(contains(v->reason, "graph")) << v->reason;
  const RouteDecision d = decide(1, kT0);
  ASSERT_EQ(d.kind, Kind::kSend) << d.reason;
  EXPECT_EQ(d.route, "primary");
  ASSERT_EQ(d.charges.size(), 1u);
  EXPECT_EQ(d.charges[0].key, "relay:primary");
  EXPECT_EQ(router().view(kAddress, kT0)->usage.used, 0u);
}

TEST_F(RouterTest, OAuth2MailboxHasNoSmtpRouteYet) {
  rep1().auth = config::MailboxAuth{config::AuthMethod::kOauth2, std::nullopt, Secret("refresh")};
  EXPECT_EQ(state(kT0), RouteState::kUnconfigured);
  rep1().auth = config::MailboxAuth{config::AuthMethod::kAppPassword, std::nullopt, std::nullopt};
  router_.reset();
  EXPECT_EQ(state(kT0), RouteState::kUnconfigured); // app_password without a password
  rep1().auth = config::MailboxAuth{config::AuthMethod::kAppPassword, Secret("pw"), std::nullopt};
  rep1().access = config::Access::kCustom;
  router_.reset();
  EXPECT_EQ(state(kT0), RouteState::kActive);
}

TEST_F(RouterTest, MessageOfAMailboxNoLongerConfiguredWaitsAndNeverFails) {
  for (bool pinned : {false, true}) {
    QueuedMessage m = message(1, "bulk", "gone@acme.example");
    m.route = pinned ? "primary" : "";
    m.route_pinned = pinned;
    const RouteDecision d = decide(m, kT0);
    EXPECT_EQ(d.kind, Kind::kWait) << d.reason;
    EXPECT_EQ(d.until_ms, kT0 + options_.hold_recheck.count());
    EXPECT_TRUE(contains(d.reason, "no longer configured")) << d.reason;
    EXPECT_TRUE(d.charges.empty());
  }
  EXPECT_TRUE(changes().empty());
}

// --- what the API shows -----------------------------------------------------------------------

TEST_F(RouterTest, ViewShowsTheRouteAndItsLedger) {
  EXPECT_FALSE(router().view("nobody@acme.example", kT0).has_value());
  sendViaM365(4, kT0 + kSecondMs);
  const auto v = router().view("REP1@ACME.EXAMPLE", kT0 + kMinuteMs);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->tenant, "acme");
  EXPECT_EQ(v->address, kWritten);
  EXPECT_EQ(v->state, RouteState::kActive);
  EXPECT_EQ(v->until_ms, 0);
  EXPECT_TRUE(v->reason.empty());
  EXPECT_TRUE(v->hint.empty());
  EXPECT_EQ(v->usage.used, 4u);
  EXPECT_EQ(v->usage.limit, 10u);
  EXPECT_EQ(v->usage.remaining, 6u);
  EXPECT_EQ(v->usage.frees_at_ms, kT0 + kDayWidthMs + kDayMs);
  EXPECT_FALSE(v->usage.exhausted_until_ms.has_value());
  EXPECT_EQ(v->max_connections, 3u);
  EXPECT_FALSE(v->failed_over);
  EXPECT_EQ(toString(v->state), "active");
}

TEST_F(RouterTest, MailboxLookupAndLongestWindow) {
  acme().limits.window = 3600s;
  config_.relays["secondary"].limits.window = 48h;
  EXPECT_EQ(router().mailbox(kAddress), &rep1());
  EXPECT_EQ(router().mailbox("nobody@acme.example"), nullptr);
  EXPECT_EQ(router().maxWindowMs(), 48 * kHourMs);
}

// --- operator failover and failback -----------------------------------------------------------

TEST_F(RouterTest, ManualFailoverSendsNewMailThroughTheChainUntilFailback) {
  EXPECT_EQ(manualFailoverKey(kAddress), kManualKey);
  auto started = router().failover(kAddress, "ops-token", kT0);
  ASSERT_TRUE(started.has_value()) << started.error().describe();
  EXPECT_TRUE(*started);
  auto cs = changes();
  ASSERT_EQ(cs.size(), 1u);
  EXPECT_TRUE(cs[0].manual);
  EXPECT_EQ(cs[0].state.key, kManualKey);
  EXPECT_EQ(cs[0].state.state, "failover");
  EXPECT_EQ(cs[0].state.reason, "manual failover by ops-token");
  ASSERT_TRUE(cs[0].event.has_value());
  EXPECT_EQ(cs[0].event->type, "route.failover");
  const json data = json::parse(cs[0].event->data_json);
  EXPECT_EQ(data.value("manual", false), true);
  EXPECT_EQ(data.value("actor", ""), "ops-token");
  EXPECT_EQ(data.value("from", ""), "microsoft365");
  EXPECT_EQ(data.value("to", ""), "primary");

  const auto v = router().view(kAddress, kT0);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->state, RouteState::kActive); // the route itself is fine
  EXPECT_TRUE(v->manual_failover);
  EXPECT_EQ(v->manual_actor, "ops-token");
  EXPECT_EQ(v->manual_since_ms, kT0);
  EXPECT_TRUE(v->failed_over);

  // New mail goes through the chain; no second failover event, none per message.
  for (int i = 0; i < 3; ++i) {
    const RouteDecision d = decide(1, kT0 + (i + 1) * kSecondMs);
    ASSERT_EQ(d.kind, Kind::kSend) << d.reason;
    EXPECT_EQ(d.route, "primary");
    EXPECT_TRUE(d.failover);
    EXPECT_TRUE(contains(d.reason, "manual failover by ops-token")) << d.reason;
  }
  EXPECT_TRUE(events().empty());
  // Asking again changes nothing.
  ASSERT_TRUE(router().failover(kAddress, "someone-else", kT0 + 5 * kSecondMs).has_value());
  EXPECT_FALSE(*router().failover(kAddress, "someone-else", kT0 + 5 * kSecondMs));
  EXPECT_TRUE(changes().empty());
  EXPECT_EQ(router().view(kAddress, kT0)->manual_actor, "ops-token");

  ASSERT_TRUE(router().failback(kAddress, "ops-token", kT0 + 10 * kSecondMs).has_value());
  cs = changes();
  ASSERT_EQ(cs.size(), 2u);
  EXPECT_EQ(cs[0].state.key, kManualKey);
  EXPECT_EQ(cs[0].state.state, "active");
  EXPECT_FALSE(cs[0].event.has_value());
  EXPECT_EQ(cs[1].state.key, kM365Key);
  ASSERT_TRUE(cs[1].event.has_value());
  EXPECT_EQ(cs[1].event->type, "route.failback");
  const json back = json::parse(cs[1].event->data_json);
  EXPECT_EQ(back.value("manual", false), true);
  EXPECT_EQ(back.value("actor", ""), "ops-token");
  EXPECT_EQ(back.value("manual_failover_cleared", false), true);
  EXPECT_FALSE(router().view(kAddress, kT0)->manual_failover);
  EXPECT_FALSE(router().view(kAddress, kT0)->failed_over);

  // Back through Microsoft 365 without another (automatic) failback event.
  sendViaM365(1, kT0 + 11 * kSecondMs);
  EXPECT_TRUE(events().empty());
}

TEST_F(RouterTest, ManualFailoverIsRefusedWithoutAFallbackAndForAnUnknownMailbox) {
  auto unknown = router().failover("nobody@acme.example", "ops", kT0);
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().code, "route.unknown_mailbox");
  auto unknown_back = router().failback("nobody@acme.example", "ops", kT0);
  ASSERT_FALSE(unknown_back.has_value());
  EXPECT_EQ(unknown_back.error().code, "route.unknown_mailbox");

  acme().fallback.clear();
  router_.reset();
  auto none = router().failover(kAddress, "ops", kT0);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().code, "route.no_fallback");
  EXPECT_TRUE(contains(none.error().message, "acme")) << none.error().message;
  EXPECT_TRUE(changes().empty());
  EXPECT_FALSE(router().view(kAddress, kT0)->manual_failover);
}

TEST_F(RouterTest, ManualFailoverLetsMessagesPinnedToMicrosoft365KeepTheirRoute) {
  ASSERT_TRUE(router().failover(kAddress, "ops", kT0).has_value());
  (void)changes();
  QueuedMessage pinned = message(1);
  pinned.route = std::string(kMicrosoft365Route);
  pinned.route_pinned = true;
  const RouteDecision d = decide(pinned, kT0 + kSecondMs);
  ASSERT_EQ(d.kind, Kind::kSend) << d.reason;
  EXPECT_EQ(d.route, kMicrosoft365Route);
  EXPECT_TRUE(events().empty()); // not a failback
  EXPECT_EQ(decide(1, kT0 + 2 * kSecondMs).route, "primary");
  EXPECT_TRUE(events().empty());
}

TEST_F(RouterTest, ManualFailoverOverridesAHeldDisconnectedRoute) {
  (void)router().onReply(kAddress, rule(535, kSmtpAuthOffText), 535, kSmtpAuthOffText, kT0);
  (void)events();
  EXPECT_EQ(decide(1, kT0 + kSecondMs).kind, Kind::kWait); // on_disconnect: hold
  ASSERT_TRUE(router().failover(kAddress, "ops", kT0 + 2 * kSecondMs).has_value());
  (void)events();
  const RouteDecision d = decide(1, kT0 + 3 * kSecondMs);
  ASSERT_EQ(d.kind, Kind::kSend) << d.reason;
  EXPECT_EQ(d.route, "primary");
}

TEST_F(RouterTest, FailbackClearsAnExhaustedRouteButTheLedgerStillCounts) {
  (void)router().onReply(kAddress, rule(554, kQuotaText), 554, kQuotaText, kT0);
  (void)events();
  EXPECT_EQ(state(kT0 + kSecondMs), RouteState::kExhausted);
  ASSERT_TRUE(router().failback(kAddress, "ops", kT0 + 2 * kSecondMs).has_value());
  const auto evs = events();
  ASSERT_EQ(types(evs), Types{"route.failback"});
  EXPECT_EQ(evs[0].data.value("previous_state", ""), "exhausted");
  EXPECT_EQ(evs[0].data.value("state", ""), "active");
  EXPECT_EQ(evs[0].data.value("manual_failover_cleared", true), false);
  EXPECT_EQ(evs[0].state.state, "active");
  const auto v = router().view(kAddress, kT0 + 2 * kSecondMs);
  EXPECT_EQ(v->state, RouteState::kActive);
  EXPECT_FALSE(v->usage.exhausted_until_ms.has_value());
  sendViaM365(5, kT0 + 3 * kSecondMs);
  sendViaM365(5, kT0 + 4 * kSecondMs);
  // The ledger's own budget (10) still applies.
  const RouteDecision d = decide(1, kT0 + 5 * kSecondMs);
  EXPECT_EQ(d.route, "primary");
  EXPECT_EQ(types(events()), (Types{"route.exhausted", "route.failover"}));
}

TEST_F(RouterTest, FailbackClearsAPausedRouteAndProbesADisconnectedOneNow) {
  (void)router().onReply(kAddress, rule(550, kThrottledText), 550, kThrottledText, kT0);
  (void)events();
  ASSERT_TRUE(router().failback(kAddress, "ops", kT0 + kSecondMs).has_value());
  (void)events();
  EXPECT_EQ(state(kT0 + kSecondMs), RouteState::kActive);

  (void)router().onReply(kAddress, rule(535, kSmtpAuthOffText), 535, kSmtpAuthOffText, kT0);
  (void)events();
  ASSERT_EQ(router().probesDue().at(0).second, kT0 + kMinuteMs);
  ASSERT_TRUE(router().failback(kAddress, "ops", kT0 + 2 * kSecondMs).has_value());
  const auto evs = events();
  ASSERT_EQ(types(evs), Types{"route.failback"});
  EXPECT_EQ(evs[0].data.value("state", ""), "disconnected");
  EXPECT_EQ(state(kT0 + 2 * kSecondMs), RouteState::kDisconnected); // until a login works
  EXPECT_EQ(router().probesDue().at(0).second, kT0 + 2 * kSecondMs);
}

TEST_F(RouterTest, RestoredManualFailoverIsInForceWithItsActor) {
  RoutingSnapshot snap;
  snap.states.push_back({kManualKey, "failover", 0, "manual failover by ops-token", "", kT0});
  router().restore(snap, kT0 + kMinuteMs);
  const auto v = router().view(kAddress, kT0 + kMinuteMs);
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->manual_failover);
  EXPECT_EQ(v->manual_actor, "ops-token");
  EXPECT_EQ(v->manual_since_ms, kT0);
  EXPECT_EQ(decide(1, kT0 + kMinuteMs).route, "primary");
  EXPECT_TRUE(events().empty());

  // A failback stored as "active" under the same key restores nothing.
  router_.reset();
  snap.states[0].state = "active";
  router().restore(snap, kT0 + kMinuteMs);
  EXPECT_FALSE(router().view(kAddress, kT0 + kMinuteMs)->manual_failover);
}

TEST_F(RouterTest, ForEachViewVisitsEveryMailboxOfATenant) {
  acme().mailboxes.push_back(appPasswordMailbox("a@acme.example"));
  config::Tenant beta;
  beta.id = "beta";
  beta.mailboxes.push_back(appPasswordMailbox("b@beta.example"));
  config_.tenants.push_back(beta);
  std::vector<std::string> all;
  router().forEachView({}, kT0, [&](const MailboxRouteView& v) { all.push_back(v.address); });
  EXPECT_EQ(all, (std::vector<std::string>{"a@acme.example", "b@beta.example", kWritten.data()}));
  std::vector<std::string> acme_only;
  router().forEachView("acme", kT0,
                       [&](const MailboxRouteView& v) { acme_only.push_back(v.address); });
  EXPECT_EQ(acme_only, (std::vector<std::string>{"a@acme.example", kWritten.data()}));
}

// --- reconfigure (live reload) ----------------------------------------------------------------

bool said(const RouterReload& r, std::string_view part) {
  return std::any_of(r.changes.begin(), r.changes.end(),
                     [&](const std::string& l) { return contains(l, part); });
}

TEST_F(RouterTest, ReconfigureCarriesLedgersOverWithTheNewLimits) {
  sendViaM365(4, kT0);
  (void)decide(message(6), kT0); // the relay chain: relay:primary counts 6
  config::Config next = config_;
  next.tenants[0].limits.recipients_per_day = 4;
  next.relays["primary"].limits.recipients_per_day = 6;
  const RouterReload r = router().reconfigure(next, options_, kT0 + kSecondMs);
  EXPECT_TRUE(said(r, "tenant acme: limits changed"));
  EXPECT_TRUE(said(r, "relay primary: limits changed"));
  EXPECT_TRUE(r.mailboxes.contains(std::string(kAddress)));
  EXPECT_TRUE(r.relays.contains("primary"));
  EXPECT_FALSE(r.relays.contains("secondary"));
  // The old configuration's contents are gone; only `next` may be used now.
  config_.tenants.clear();
  config_.relays.clear();
  const auto v = router().view(kAddress, kT0 + kSecondMs);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->usage.used, 4u);
  EXPECT_EQ(v->usage.limit, 4u);
  EXPECT_EQ(router().mailbox(kAddress), &next.tenants[0].mailboxes[0]);
  // Both budgets are spent: the message goes to the next relay of the chain.
  const RouteDecision d = decide(1, kT0 + 2 * kSecondMs);
  ASSERT_EQ(d.kind, Kind::kSend) << d.reason;
  EXPECT_EQ(d.route, "secondary");
}

TEST_F(RouterTest, ReconfigureKeepsARemovedMailboxLedgerUntilItReturns) {
  sendViaM365(5, kT0);
  ASSERT_TRUE(router().failover(kAddress, "ops", kT0).has_value());
  (void)changes();
  config::Config without = config_;
  without.tenants[0].mailboxes.clear();
  const RouterReload gone = router().reconfigure(without, options_, kT0 + kSecondMs);
  EXPECT_TRUE(said(gone, "mailbox Rep1@Acme.example removed"));
  EXPECT_TRUE(gone.mailboxes.contains(std::string(kAddress)));
  EXPECT_FALSE(router().view(kAddress, kT0).has_value());
  EXPECT_EQ(router().mailbox(kAddress), nullptr);
  EXPECT_TRUE(router().probesDue().empty());
  const RouteDecision held = decide(1, kT0 + 2 * kSecondMs);
  EXPECT_EQ(held.kind, Kind::kWait);
  EXPECT_TRUE(held.reason.starts_with("mailbox no longer configured")) << held.reason;
  // Refunds of an attempt that was in flight still reach the kept ledger.
  (void)router().refund({{kM365Key, kT0, 5}}, 3, kT0 + 3 * kSecondMs);

  const RouterReload back = router().reconfigure(config_, options_, kT0 + 4 * kSecondMs);
  EXPECT_TRUE(said(back, "configured again"));
  const auto v = router().view(kAddress, kT0 + 4 * kSecondMs);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->usage.used, 3u);
  EXPECT_TRUE(v->manual_failover); // it comes back as it was
}

TEST_F(RouterTest, ReconfigureDerivesStatesFromCredentials) {
  rep1().auth.reset();
  EXPECT_EQ(state(kT0), RouteState::kUnconfigured);
  config::Config with = config_;
  with.tenants[0].mailboxes[0].auth =
      config::MailboxAuth{config::AuthMethod::kAppPassword, Secret("pw"), std::nullopt};
  const RouterReload r = router().reconfigure(with, options_, kT0);
  EXPECT_TRUE(said(r, "credentials or access changed"));
  EXPECT_EQ(state(kT0), RouteState::kActive);
  EXPECT_TRUE(router().view(kAddress, kT0)->reason.empty());

  // Disconnected, then the password changes: the login is due now.
  (void)router().onReply(kAddress, rule(535, kBadPasswordText), 535, kBadPasswordText, kT0);
  (void)events();
  ASSERT_GT(router().probesDue().at(0).second, kT0 + kMinuteMs);
  config::Config rotated = with;
  rotated.tenants[0].mailboxes[0].auth->password = Secret("new");
  (void)router().reconfigure(rotated, options_, kT0 + kSecondMs);
  EXPECT_EQ(state(kT0 + kSecondMs), RouteState::kDisconnected);
  EXPECT_EQ(router().probesDue().at(0).second, kT0 + kSecondMs);

  // Credentials removed: no route of its own, nothing to probe.
  config::Config none = rotated;
  none.tenants[0].mailboxes[0].auth.reset();
  (void)router().reconfigure(none, options_, kT0 + 2 * kSecondMs);
  EXPECT_EQ(state(kT0 + 2 * kSecondMs), RouteState::kUnconfigured);
  EXPECT_TRUE(router().probesDue().empty());
  (void)router().reconfigure(rotated, options_, kT0 + 3 * kSecondMs);
}

TEST_F(RouterTest, ReconfigureMarksMailboxesWhoseChainChangedAndCapsTheReport) {
  for (int i = 0; i < 60; ++i) {
    acme().mailboxes.push_back(appPasswordMailbox(fmt::format("m{}@acme.example", i)));
  }
  (void)router();
  config::Config next = config_;
  next.relays["secondary"].server.port = 2600;
  next.tenants[0].mailboxes.clear();
  const RouterReload r = router().reconfigure(next, options_, kT0);
  EXPECT_TRUE(said(r, "relay secondary: server changed"));
  EXPECT_TRUE(said(r, "... and 11 more mailbox change(s)"));
  EXPECT_EQ(r.mailboxes.size(), 61u);
}

TEST_F(RouterTest, RestoreKeepsTheLedgerOfAMailboxThatIsNotConfigured) {
  RoutingSnapshot snap;
  snap.buckets.push_back({"m365:gone@acme.example", kT0, 9});
  router().restore(snap, kT0 + kSecondMs);
  EXPECT_FALSE(router().view("gone@acme.example", kT0).has_value());
  config::Config next = config_;
  next.tenants[0].mailboxes.push_back(appPasswordMailbox("gone@acme.example"));
  const RouterReload r = router().reconfigure(next, options_, kT0 + 2 * kSecondMs);
  EXPECT_TRUE(said(r, "gone@acme.example is configured again"));
  EXPECT_EQ(router().view("gone@acme.example", kT0 + 2 * kSecondMs)->usage.used, 9u);
}

TEST(RouterStateNames, AreTheStoredSpellings) {
  EXPECT_EQ(toString(RouteState::kActive), "active");
  EXPECT_EQ(toString(RouteState::kExhausted), "exhausted");
  EXPECT_EQ(toString(RouteState::kPaused), "paused");
  EXPECT_EQ(toString(RouteState::kDisconnected), "disconnected");
  EXPECT_EQ(toString(RouteState::kUnconfigured), "unconfigured");
}

} // namespace
} // namespace mailgate::relay

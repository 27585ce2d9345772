#include "relay/router.h"

#include "base/log.h"
#include "config/values.h"

#include <algorithm>
#include <array>
#include <fmt/format.h>
#include <set>

namespace mailgate::relay {

using route::Ledger;
using route::LedgerCheck;
using route::ReplyAction;
using route::Verdict;

std::string_view toString(RouteState s) {
  switch (s) {
  case RouteState::kActive:
    return "active";
  case RouteState::kExhausted:
    return "exhausted";
  case RouteState::kPaused:
    return "paused";
  case RouteState::kDisconnected:
    return "disconnected";
  case RouteState::kUnconfigured:
    return "unconfigured";
  }
  return "unknown";
}

namespace {

std::optional<RouteState> parseState(std::string_view s) {
  for (auto st : {RouteState::kActive, RouteState::kExhausted, RouteState::kPaused,
                  RouteState::kDisconnected}) {
    if (toString(st) == s) {
      return st;
    }
  }
  return std::nullopt;
}

std::string m365Key(std::string_view address) {
  return "m365:" + std::string(address);
}

std::string relayKey(std::string_view name) {
  return "relay:" + std::string(name);
}

constexpr std::string_view kManualPrefix = "manual:";
// The persisted reason of a manual failover; the actor is read back from it at start-up.
constexpr std::string_view kManualReason = "manual failover by ";

// A small JSON object from string and integer fields, for event data.
class JsonObject {
public:
  JsonObject& str(std::string_view key, std::string_view value) {
    name(key);
    quoted(value);
    return *this;
  }
  JsonObject& num(std::string_view key, int64_t value) {
    name(key);
    out_ += std::to_string(value);
    return *this;
  }
  JsonObject& flag(std::string_view key, bool value) {
    name(key);
    out_ += value ? "true" : "false";
    return *this;
  }
  std::string done() {
    out_ += '}';
    return std::move(out_);
  }

private:
  void quoted(std::string_view text) {
    out_ += '"';
    appendJsonEscaped(text, out_);
    out_ += '"';
  }
  void name(std::string_view key) {
    out_ += out_.size() > 1 ? "," : "";
    quoted(key);
    out_ += ':';
  }
  std::string out_ = "{";
};

route::LedgerLimits m365Limits(const config::Microsoft365Limits& m, uint32_t reserve_percent) {
  route::LedgerLimits l;
  l.recipients_per_window = m.recipients_per_day;
  l.window = std::chrono::duration_cast<std::chrono::milliseconds>(m.window);
  l.messages_per_minute = m.messages_per_minute;
  l.recipients_per_message = m.recipients_per_message;
  l.max_message_bytes = std::nullopt; // Microsoft 365 advertises SIZE; the session checks it
  l.reserve_percent = std::min<uint32_t>(reserve_percent, 100);
  return l;
}

route::LedgerLimits mailboxLimits(const config::Tenant& t) {
  return m365Limits(t.limits, t.priority_reserve_percent);
}

// A reload report names at most this many mailboxes one by one; the rest are counted.
constexpr size_t kMaxReportedMailboxes = 50;

// Why a mailbox has no Microsoft 365 route of its own; nullopt when it has one.
struct NoRoute {
  std::string reason;
  std::string hint;
};
std::optional<NoRoute> noRouteReason(const config::Mailbox& m) {
  if (m.held) {
    return NoRoute{"the mailbox was disconnected through the API",
                   "POST /v1/mailboxes/{address}/connect connects it again; its mail waits "
                   "until then"};
  }
  if (m.access == config::Access::kGraph) {
    return NoRoute{"the mailbox has access: graph (no SMTP AUTH)",
                   "its mail goes through the tenant's relays"};
  }
  const bool has_login =
      m.auth && m.auth->method == config::AuthMethod::kAppPassword && m.auth->password;
  if (!has_login) {
    return m.auth ? NoRoute{"OAuth2 sign-in for SMTP is not available in this version",
                            "use an App Password (auth.method: app_password) for now"}
                  : NoRoute{"the mailbox has no credentials",
                            "set auth (an App Password) for the mailbox, or connect it"};
  }
  return std::nullopt;
}

bool sameSecret(const std::optional<Secret>& a, const std::optional<Secret>& b) {
  return a.has_value() == b.has_value() && (!a || a->reveal() == b->reveal());
}

bool sameUpstream(const config::Upstream& a, const config::Upstream& b) {
  return a.host == b.host && a.port == b.port && a.tls == b.tls &&
         a.allow_self_signed == b.allow_self_signed && a.ca_file == b.ca_file && a.pins == b.pins;
}

bool sameCredentials(const config::Mailbox& a, const config::Mailbox& b) {
  if (a.access != b.access || a.held != b.held || a.auth.has_value() != b.auth.has_value()) {
    return false;
  }
  return !a.auth ||
         (a.auth->method == b.auth->method && sameSecret(a.auth->password, b.auth->password) &&
          sameSecret(a.auth->refresh_token, b.auth->refresh_token));
}

bool sameLimits(const config::Microsoft365Limits& a, const config::Microsoft365Limits& b) {
  return a.recipients_per_day == b.recipients_per_day &&
         a.messages_per_minute == b.messages_per_minute &&
         a.recipients_per_message == b.recipients_per_message &&
         a.max_connections == b.max_connections && a.window == b.window;
}

// What changed in a relay, as key names ("server", "auth", "limits"); empty: nothing.
std::vector<std::string> relayDiff(const config::Relay& a, const config::Relay& b) {
  std::vector<std::string> what;
  if (!sameUpstream(a.server, b.server)) {
    what.emplace_back("server");
  }
  const bool same_auth = a.auth.has_value() == b.auth.has_value() &&
                         (!a.auth || (a.auth->username == b.auth->username &&
                                      a.auth->password.reveal() == b.auth->password.reveal()));
  if (!same_auth) {
    what.emplace_back("auth");
  }
  const auto& l = a.limits;
  const auto& m = b.limits;
  if (l.messages_per_minute != m.messages_per_minute ||
      l.recipients_per_day != m.recipients_per_day ||
      l.recipients_per_message != m.recipients_per_message ||
      l.max_message_bytes != m.max_message_bytes || l.max_connections != m.max_connections ||
      l.window != m.window) {
    what.emplace_back("limits");
  }
  return what;
}

std::string joined(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    out += out.empty() ? "" : ", ";
    out += p;
  }
  return out;
}

route::LedgerLimits relayLimits(const config::RelayLimits& r) {
  route::LedgerLimits l;
  l.recipients_per_window = r.recipients_per_day;
  l.window = std::chrono::duration_cast<std::chrono::milliseconds>(r.window);
  l.messages_per_minute = r.messages_per_minute;
  l.recipients_per_message = r.recipients_per_message;
  l.max_message_bytes = r.max_message_bytes;
  return l;
}

bool neverFits(Verdict v) {
  return v == Verdict::kTooManyRecipients || v == Verdict::kTooLarge;
}

// The pacing hint of a wait caused by a ledger's messages-per-minute limit.
void paceHint(RouteDecision& d, const Ledger& ledger) {
  if (const auto per_minute = ledger.limits().messages_per_minute; per_minute && *per_minute > 0) {
    d.pace_key = ledger.key();
    d.pace_interval_us = (60'000'000 + *per_minute - 1) / *per_minute;
  }
}

} // namespace

std::string manualFailoverKey(std::string_view address) {
  return std::string(kManualPrefix) + std::string(address);
}

struct Router::MailboxRoute {
  const config::Tenant* tenant = nullptr;
  const config::Mailbox* mailbox = nullptr;
  std::string address; // lower case
  Ledger ledger;
  RouteState state = RouteState::kActive;
  int64_t until_ms = 0; // exhausted/paused: end; disconnected: next login probe
  std::string reason;
  std::string hint;
  // Per priority (bulk, personal): an episode of failover is going on, and the ledger's own
  // "over budget" was reported for it; so each event is recorded once per episode, and bulk mail
  // failing over while personal mail still goes through Microsoft 365 is not a failback.
  std::array<bool, 2> failed_over{};
  std::array<bool, 2> over_budget_reported{};
  uint32_t fewer_connections = 0; // subtracted from max_connections until fewer_until_ms
  int64_t fewer_until_ms = 0;
  std::unique_ptr<net::Backoff> login_backoff; // only while disconnected (it is large)
  bool slow = false;
  // An operator's failover, until failback (persisted under manualFailoverKey()).
  bool manual = false;
  std::string manual_actor;
  int64_t manual_since_ms = 0;

  // tenant and mailbox are set by configure(); both stay null while the mailbox is not in the
  // configuration (Router::retired_).
  MailboxRoute(std::string addr, route::LedgerLimits limits)
      : address(std::move(addr)), ledger(m365Key(address), std::move(limits)) {}

  // Points at `t` and `m` and derives what the configuration alone decides: no route of its own
  // (kUnconfigured) without credentials or SMTP, otherwise whatever state it had (a route that
  // was unconfigured starts active).
  void configure(const config::Tenant& t, const config::Mailbox& m) {
    tenant = &t;
    mailbox = &m;
    if (auto none = noRouteReason(m)) {
      if (state != RouteState::kUnconfigured || reason != none->reason) {
        state = RouteState::kUnconfigured;
        until_ms = 0;
        reason = std::move(none->reason);
        hint = std::move(none->hint);
        login_backoff.reset();
      }
    } else if (state == RouteState::kUnconfigured) {
      state = RouteState::kActive;
      until_ms = 0;
      reason.clear();
      hint.clear();
    }
  }
};

struct Router::RelayRoute {
  const config::Relay* relay = nullptr;
  Ledger ledger;

  explicit RelayRoute(const config::Relay& r)
      : relay(&r), ledger(relayKey(r.name), relayLimits(r.limits)) {}
};

Router::Router(const config::Config& config, RouterOptions options)
    : config_(&config), options_(std::move(options)) {
  for (const auto& [name, relay] : config.relays) {
    relays_.emplace(name, std::make_unique<RelayRoute>(relay));
  }
  for (const auto& t : config.tenants) {
    for (const auto& m : t.mailboxes) {
      std::string addr = config::lowerAscii(m.address);
      auto mb = std::make_unique<MailboxRoute>(addr, mailboxLimits(t));
      mb->configure(t, m);
      mailboxes_.emplace(std::move(addr), std::move(mb));
    }
  }
}

Router::~Router() = default;

int64_t Router::maxWindowMs() const {
  int64_t w = 0;
  for (const auto& [_, mb] : mailboxes_) {
    w = std::max<int64_t>(w, mb->ledger.limits().window.count());
  }
  for (const auto& [_, r] : relays_) {
    w = std::max<int64_t>(w, r->ledger.limits().window.count());
  }
  return w;
}

Router::MailboxRoute* Router::find(std::string_view address) {
  auto it = mailboxes_.find(address);
  return it == mailboxes_.end() ? nullptr : it->second.get();
}

const Router::MailboxRoute* Router::find(std::string_view address) const {
  auto it = mailboxes_.find(address);
  return it == mailboxes_.end() ? nullptr : it->second.get();
}

const config::Mailbox* Router::mailbox(std::string_view address) const {
  const MailboxRoute* mb = find(address);
  return mb != nullptr ? mb->mailbox : nullptr;
}

Router::MailboxRoute* Router::findAny(std::string_view address) {
  if (MailboxRoute* mb = find(address)) {
    return mb;
  }
  auto it = retired_.find(address);
  return it == retired_.end() ? nullptr : it->second.get();
}

Router::MailboxRoute& Router::routeForRestore(std::string_view address) {
  if (MailboxRoute* mb = findAny(address)) {
    return *mb;
  }
  // Not configured now: kept aside so that its sends still count if it is configured again.
  auto mb = std::make_unique<MailboxRoute>(std::string(address),
                                           m365Limits(config_->microsoft365.limits, 0));
  MailboxRoute& ref = *mb;
  retired_.emplace(std::string(address), std::move(mb));
  return ref;
}

route::Ledger* Router::ledgerFor(std::string_view key) {
  if (key.starts_with("m365:")) {
    MailboxRoute* mb = findAny(key.substr(5));
    return mb != nullptr ? &mb->ledger : nullptr;
  }
  if (key.starts_with("relay:")) {
    auto it = relays_.find(key.substr(6));
    return it == relays_.end() ? nullptr : &it->second->ledger;
  }
  return nullptr;
}

void Router::restore(const RoutingSnapshot& snapshot, int64_t now_ms) {
  for (const auto& b : snapshot.buckets) {
    if (b.key.starts_with("m365:")) {
      routeForRestore(std::string_view(b.key).substr(5))
          .ledger.restore(b.bucket_ms, b.count, now_ms);
    } else if (Ledger* l = ledgerFor(b.key)) {
      l->restore(b.bucket_ms, b.count, now_ms);
    }
  }
  for (const auto& s : snapshot.states) {
    if (s.key.starts_with(kManualPrefix)) {
      if (s.state == "failover") {
        MailboxRoute* mb = &routeForRestore(std::string_view(s.key).substr(kManualPrefix.size()));
        mb->manual = true;
        mb->manual_actor = s.reason.starts_with(kManualReason)
                               ? s.reason.substr(kManualReason.size())
                               : std::string("unknown");
        mb->manual_since_ms = s.updated_ms;
        mb->failed_over.fill(true); // the event was recorded when it started
      }
      continue;
    }
    auto st = parseState(s.state);
    if (!s.key.starts_with("m365:") || !st || *st == RouteState::kActive) {
      continue;
    }
    MailboxRoute* mb = &routeForRestore(std::string_view(s.key).substr(5));
    if (mb->state == RouteState::kUnconfigured) {
      continue;
    }
    switch (*st) {
    case RouteState::kExhausted:
    case RouteState::kPaused:
      if (s.until_ms > now_ms) {
        mb->state = *st;
        mb->until_ms = s.until_ms;
        mb->reason = s.reason;
        mb->hint = s.hint;
        mb->failed_over.fill(true);
        if (*st == RouteState::kExhausted) {
          mb->ledger.restoreExhausted(s.until_ms);
        }
      }
      break;
    case RouteState::kDisconnected:
      mb->state = RouteState::kDisconnected;
      mb->reason = s.reason;
      mb->hint = s.hint;
      mb->until_ms = now_ms; // probe the login at once
      mb->login_backoff = std::make_unique<net::Backoff>(options_.login_backoff);
      break;
    default:
      break;
    }
  }
}

void Router::event(const MailboxRoute& mb, std::string type, std::string data_json) {
  Change c;
  c.state.key = m365Key(mb.address);
  c.state.state = std::string(toString(mb.state));
  c.state.until_ms = mb.until_ms;
  c.state.reason = mb.reason;
  c.state.hint = mb.hint;
  c.event = EventRecord{std::move(type), mb.tenant->id, mb.mailbox->address, std::move(data_json)};
  changes_.push_back(std::move(c));
}

void Router::setState(MailboxRoute& mb, RouteState state, int64_t until_ms, std::string reason,
                      std::string hint, std::string event_type, bool alert, int64_t now_ms) {
  mb.state = state;
  mb.until_ms = until_ms;
  mb.reason = std::move(reason);
  mb.hint = std::move(hint);
  JsonObject data;
  data.str("route", kMicrosoft365Route).str("state", toString(state)).str("reason", mb.reason);
  if (state == RouteState::kExhausted) {
    data.str("source", "upstream"); // Microsoft 365 said so (the ledger's own: "ledger")
  }
  if (!mb.hint.empty()) {
    data.str("hint", mb.hint);
  }
  if (until_ms > 0) {
    data.num(state == RouteState::kDisconnected ? "next_login_ms" : "until_ms", until_ms);
  }
  if (alert) {
    data.flag("alert", true);
  }
  data.num("time_ms", now_ms);
  event(mb, std::move(event_type), data.done());
}

// Lazy transitions: an exhausted or paused route whose time is up becomes active again.
void Router::refresh(MailboxRoute& mb, int64_t now_ms) {
  if ((mb.state == RouteState::kExhausted || mb.state == RouteState::kPaused) &&
      now_ms >= mb.until_ms) {
    mb.ledger.clearExhausted();
    mb.state = RouteState::kActive;
    mb.until_ms = 0;
    mb.reason.clear();
    mb.hint.clear();
    Change c;
    c.state.key = m365Key(mb.address);
    c.state.state = "active";
    c.state.updated_ms = now_ms;
    changes_.push_back(std::move(c));
  }
  if (mb.fewer_connections > 0 && now_ms >= mb.fewer_until_ms) {
    mb.fewer_connections = 0;
  }
}

RouteDecision Router::decide(const QueuedMessage& msg, int64_t now_ms,
                             const std::function<bool(std::string_view)>& relay_usable) {
  if (msg.mailbox.empty()) {
    // Relay-only mode (no tenants), or a message queued before routing existed.
    return viaRelay(msg, msg.route.empty() ? std::string_view("default") : msg.route, now_ms);
  }
  MailboxRoute* mb = find(config::lowerAscii(msg.mailbox));
  if (mb == nullptr) {
    RouteDecision d;
    d.kind = RouteDecision::Kind::kWait;
    d.until_ms = now_ms + options_.hold_recheck.count();
    d.reason = fmt::format("mailbox no longer configured: {} is not in the configuration; the "
                           "message waits until it is configured again or its lifetime ends",
                           msg.mailbox);
    return d;
  }
  refresh(*mb, now_ms);
  const auto recipients = static_cast<uint32_t>(msg.pendingRecipients());
  const auto priority = route::parsePriority(msg.priority).value_or(route::Priority::kBulk);

  if (msg.route_pinned && msg.route != kMicrosoft365Route) {
    return viaRelay(msg, msg.route, now_ms);
  }
  const bool pinned_m365 = msg.route_pinned;
  if (mb->manual && !pinned_m365) {
    // The failover event was recorded by failover(); failed_over keeps viaRelays from another.
    return viaRelays(msg, *mb, true, 0, now_ms, relay_usable,
                     std::string(kManualReason) + mb->manual_actor);
  }

  switch (mb->state) {
  case RouteState::kActive: {
    const LedgerCheck check = mb->ledger.check(now_ms, recipients, msg.size, priority);
    if (check.verdict == Verdict::kSend) {
      RouteDecision d;
      d.kind = RouteDecision::Kind::kSend;
      d.route = std::string(kMicrosoft365Route);
      d.mailbox = mb->address;
      d.charges.push_back(mb->ledger.charge(now_ms, recipients));
      const auto p = static_cast<size_t>(priority);
      mb->over_budget_reported[p] = false;
      if (mb->failed_over[p] && !mb->manual) { // a pinned message under a manual failover
        mb->failed_over[p] = false;
        event(*mb, "route.failback",
              JsonObject()
                  .str("route", kMicrosoft365Route)
                  .str("reason", "the mailbox's Microsoft 365 route takes mail again")
                  .str("priority", route::toString(priority))
                  .num("time_ms", now_ms)
                  .done());
      }
      return d;
    }
    if (check.verdict == Verdict::kWait || pinned_m365) {
      // Pacing is not a reason to fail over; a pinned message waits for its route.
      RouteDecision d;
      d.kind = RouteDecision::Kind::kWait;
      d.until_ms = std::max(check.until_ms, now_ms + 1);
      d.reason = check.reason;
      if (check.verdict == Verdict::kWait) {
        paceHint(d, mb->ledger);
      }
      return d;
    }
    const auto p = static_cast<size_t>(priority);
    if (check.verdict == Verdict::kOverBudget && !mb->over_budget_reported[p]) {
      mb->over_budget_reported[p] = true;
      event(*mb, "route.exhausted",
            JsonObject()
                .str("route", kMicrosoft365Route)
                .str("source", "ledger")
                .str("priority", route::toString(priority))
                .str("reason", check.reason)
                .num("until_ms", check.until_ms)
                .num("time_ms", now_ms)
                .done());
    }
    if (neverFits(check.verdict)) {
      // Goes to the relay whole: a failover of this message, not an episode of the route.
      return viaRelays(msg, *mb, false, 0, now_ms, relay_usable, check.reason);
    }
    return viaRelays(msg, *mb, true, check.until_ms, now_ms, relay_usable, check.reason);
  }
  case RouteState::kExhausted:
  case RouteState::kPaused:
    if (pinned_m365) {
      RouteDecision d;
      d.kind = RouteDecision::Kind::kWait;
      d.until_ms = mb->until_ms;
      d.reason = "the message is pinned to Microsoft 365 (" + mb->reason + ")";
      return d;
    }
    return viaRelays(msg, *mb, true, mb->until_ms, now_ms, relay_usable, mb->reason);
  case RouteState::kDisconnected:
  case RouteState::kUnconfigured:
    if (pinned_m365 || mb->tenant->on_disconnect == config::OnDisconnect::kHold ||
        mb->mailbox->held) {
      RouteDecision d;
      d.kind = RouteDecision::Kind::kWait;
      d.until_ms = mb->state == RouteState::kDisconnected && mb->until_ms > now_ms
                       ? std::min(mb->until_ms + 1000, now_ms + options_.hold_recheck.count())
                       : now_ms + options_.hold_recheck.count();
      d.reason =
          fmt::format("held: the Microsoft 365 route is {} ({})", toString(mb->state), mb->reason);
      return d;
    }
    return viaRelays(
        msg, *mb, true, 0, now_ms, relay_usable,
        fmt::format("the Microsoft 365 route is {} ({})", toString(mb->state), mb->reason));
  }
  return {};
}

RouteDecision Router::viaRelays(const QueuedMessage& msg, MailboxRoute& mb, bool episode,
                                int64_t m365_until_ms, int64_t now_ms,
                                const std::function<bool(std::string_view)>& relay_usable,
                                std::string why) {
  const std::vector<std::string>& chain = mb.tenant->fallback;
  const auto recipients = static_cast<uint32_t>(msg.pendingRecipients());
  const auto priority = route::parsePriority(msg.priority).value_or(route::Priority::kBulk);
  std::optional<int64_t> earliest;
  const Ledger* earliest_paced = nullptr; // the ledger of `earliest` when it is a pacing wait
  std::string refusals;
  // Relays that can be reached first; unreachable ones only when no other can take the message.
  for (const bool want_usable : {true, false}) {
    for (const auto& name : chain) {
      auto it = relays_.find(name);
      if (it == relays_.end() || (relay_usable && relay_usable(name) != want_usable)) {
        continue;
      }
      Ledger& ledger = it->second->ledger;
      const LedgerCheck check = ledger.check(now_ms, recipients, msg.size, priority);
      if (check.verdict == Verdict::kSend) {
        RouteDecision d;
        d.kind = RouteDecision::Kind::kSend;
        d.route = name;
        d.charges.push_back(ledger.charge(now_ms, recipients));
        d.failover = true;
        d.reason = why;
        if (const auto p = static_cast<size_t>(priority); episode && !mb.failed_over[p]) {
          mb.failed_over[p] = true;
          event(mb, "route.failover",
                JsonObject()
                    .str("from", kMicrosoft365Route)
                    .str("to", name)
                    .str("reason", why)
                    .str("priority", route::toString(priority))
                    .num("time_ms", now_ms)
                    .done());
        }
        return d;
      }
      if (!neverFits(check.verdict) && (!earliest || check.until_ms < *earliest)) {
        earliest = check.until_ms;
        earliest_paced = check.verdict == Verdict::kWait ? &ledger : nullptr;
      }
      refusals += fmt::format("{}relay {}: {}", refusals.empty() ? "" : "; ", name, check.reason);
    }
    if (!relay_usable) {
      break;
    }
  }
  RouteDecision d;
  if (earliest || chain.empty()) {
    d.kind = RouteDecision::Kind::kWait;
    d.until_ms = std::max(earliest.value_or(now_ms + options_.hold_recheck.count()), now_ms + 1);
    if (m365_until_ms > now_ms && !chain.empty() && m365_until_ms < d.until_ms) {
      d.until_ms = m365_until_ms; // the mailbox's own route may come back first
    } else if (earliest_paced != nullptr) {
      paceHint(d, *earliest_paced);
    }
    d.reason = chain.empty() ? why + "; the tenant has no fallback relay, so the message waits"
                             : why + "; " + refusals;
    return d;
  }
  d.kind = RouteDecision::Kind::kFail;
  d.reason = fmt::format("554 5.3.4 no route can take this message: {}; {}", why, refusals);
  return d;
}

RouteDecision Router::viaRelay(const QueuedMessage& msg, std::string_view relay, int64_t now_ms) {
  RouteDecision d;
  auto it = relays_.find(relay);
  if (it == relays_.end()) {
    d.kind = RouteDecision::Kind::kFail;
    d.reason = fmt::format("550 5.3.5 no relay named '{}' is configured", relay);
    return d;
  }
  const auto recipients = static_cast<uint32_t>(msg.pendingRecipients());
  const auto priority = route::parsePriority(msg.priority).value_or(route::Priority::kBulk);
  Ledger& ledger = it->second->ledger;
  const LedgerCheck check = ledger.check(now_ms, recipients, msg.size, priority);
  if (check.verdict == Verdict::kSend) {
    d.kind = RouteDecision::Kind::kSend;
    d.route = std::string(relay);
    d.charges.push_back(ledger.charge(now_ms, recipients));
    return d;
  }
  if (neverFits(check.verdict)) {
    d.kind = RouteDecision::Kind::kFail;
    d.reason = fmt::format("554 5.3.4 relay {} cannot take this message: {}", relay, check.reason);
    return d;
  }
  d.kind = RouteDecision::Kind::kWait;
  d.until_ms = std::max(check.until_ms, now_ms + 1);
  d.reason = check.reason;
  if (check.verdict == Verdict::kWait) {
    paceHint(d, ledger);
  }
  return d;
}

void Router::cancel(const std::vector<LedgerCharge>& charges, int64_t now_ms) {
  for (const auto& c : charges) {
    if (Ledger* l = ledgerFor(c.key); l != nullptr && c.count > 0) {
      (void)l->refund(c, static_cast<uint32_t>(c.count), now_ms);
    }
  }
}

std::vector<LedgerCharge> Router::refund(const std::vector<LedgerCharge>& charges, uint32_t kept,
                                         int64_t now_ms) {
  std::vector<LedgerCharge> out;
  for (const auto& c : charges) {
    if (c.count <= static_cast<int64_t>(kept)) {
      continue;
    }
    if (Ledger* l = ledgerFor(c.key)) {
      out.push_back(l->refund(c, static_cast<uint32_t>(c.count - kept), now_ms));
    }
  }
  return out;
}

ReplyEffect Router::onReply(std::string_view mailbox, const route::ReplyRule& rule, int code,
                            std::string_view reply, int64_t now_ms) {
  ReplyEffect e;
  e.action = rule.action;
  e.reply = fmt::format("{} {} [{}: {}]", code, reply, rule.name, rule.hint);
  e.retry_at_ms = now_ms;
  MailboxRoute* mb = find(mailbox);
  if (mb == nullptr) {
    return e;
  }
  const std::string text = fmt::format("{} {}", code, reply);
  switch (rule.action) {
  case ReplyAction::kFailOver:
  case ReplyAction::kFailOverAlert: {
    mb->ledger.markExhausted(now_ms, options_.exhausted_min_wait);
    const int64_t until = mb->ledger.exhaustedUntil(now_ms).value_or(now_ms + 1000);
    setState(*mb, RouteState::kExhausted, until, text, std::string(rule.hint), "route.exhausted",
             rule.alert, now_ms);
    break;
  }
  case ReplyAction::kFewerConnections: {
    const uint32_t cap = mb->tenant->limits.max_connections;
    if (mb->fewer_connections + 1 < cap) {
      ++mb->fewer_connections;
    }
    mb->fewer_until_ms = now_ms + options_.fewer_connections_for.count();
    e.retry_at_ms = now_ms + options_.retry_soon.count();
    e.close_connection = true;
    event(*mb, "route.throttled",
          JsonObject()
              .str("route", kMicrosoft365Route)
              .str("reply", text)
              .str("action", route::toString(rule.action))
              .num("max_connections", maxConnections(mailbox, now_ms))
              .num("time_ms", now_ms)
              .done());
    break;
  }
  case ReplyAction::kPace:
    e.retry_at_ms = now_ms + options_.retry_paced.count();
    event(*mb, "route.throttled",
          JsonObject()
              .str("route", kMicrosoft365Route)
              .str("reply", text)
              .str("action", route::toString(rule.action))
              .num("time_ms", now_ms)
              .done());
    break;
  case ReplyAction::kPauseRoute:
    setState(*mb, RouteState::kPaused, now_ms + options_.pause.count(), text,
             std::string(rule.hint), "route.paused", true, now_ms);
    break;
  case ReplyAction::kDisconnect: {
    mb->slow = rule.slow_retry;
    mb->login_backoff = std::make_unique<net::Backoff>(rule.slow_retry ? options_.slow_login_backoff
                                                                       : options_.login_backoff);
    const int64_t next = now_ms + mb->login_backoff->next().count();
    setState(*mb, RouteState::kDisconnected, next, text, std::string(rule.hint),
             "route.disconnected", rule.alert, now_ms);
    e.close_connection = true;
    break;
  }
  case ReplyAction::kReject:
    break;
  }
  return e;
}

int64_t Router::onLoginFailed(std::string_view mailbox, const route::ReplyRule* rule,
                              std::string_view reason, int64_t now_ms) {
  MailboxRoute* mb = find(mailbox);
  if (mb == nullptr) {
    return now_ms + options_.login_backoff.initial.count();
  }
  const bool was_disconnected = mb->state == RouteState::kDisconnected;
  if (rule == nullptr && !was_disconnected) {
    return now_ms;
  }
  if (!mb->login_backoff || (rule != nullptr && rule->slow_retry != mb->slow)) {
    mb->slow = rule != nullptr && rule->slow_retry;
    mb->login_backoff = std::make_unique<net::Backoff>(mb->slow ? options_.slow_login_backoff
                                                                : options_.login_backoff);
  }
  const int64_t next = now_ms + mb->login_backoff->next().count();
  const std::string why(reason);
  if (!was_disconnected || (rule != nullptr && why != mb->reason)) {
    setState(*mb, RouteState::kDisconnected, next, why,
             rule != nullptr ? std::string(rule->hint) : mb->hint, "route.disconnected",
             rule != nullptr && rule->alert, now_ms);
  } else {
    mb->until_ms = next;
  }
  return next;
}

bool Router::onLoginOk(std::string_view mailbox, int64_t now_ms) {
  MailboxRoute* mb = find(mailbox);
  if (mb == nullptr || mb->state != RouteState::kDisconnected) {
    return false;
  }
  mb->login_backoff.reset();
  setState(*mb, RouteState::kActive, 0, "the login works again", "", "route.connected", false,
           now_ms);
  mb->reason.clear();
  return true;
}

uint32_t Router::maxConnections(std::string_view mailbox, int64_t now_ms) const {
  const MailboxRoute* mb = find(mailbox);
  if (mb == nullptr) {
    return 1;
  }
  const uint32_t cap = std::max<uint32_t>(mb->tenant->limits.max_connections, 1);
  if (mb->fewer_connections > 0 && now_ms < mb->fewer_until_ms) {
    return std::max<uint32_t>(cap - std::min(cap, mb->fewer_connections), 1);
  }
  return cap;
}

std::vector<std::pair<std::string, int64_t>> Router::probesDue() const {
  std::vector<std::pair<std::string, int64_t>> out;
  for (const auto& [addr, mb] : mailboxes_) {
    if (mb->state == RouteState::kDisconnected) {
      out.emplace_back(addr, mb->until_ms);
    }
  }
  return out;
}

void Router::fillView(MailboxRoute& mb, int64_t now_ms, MailboxRouteView& v) {
  refresh(mb, now_ms);
  // Assignments, so that a view filled again reuses its strings' storage.
  v.tenant = mb.tenant->id;
  v.address = mb.mailbox->address;
  v.state = mb.state;
  v.until_ms = mb.until_ms;
  v.reason = mb.reason;
  v.hint = mb.hint;
  v.usage = mb.ledger.usage(now_ms);
  v.max_connections = maxConnections(mb.address, now_ms);
  v.failed_over = mb.manual || mb.failed_over[0] || mb.failed_over[1];
  v.manual_failover = mb.manual;
  v.manual_actor = mb.manual_actor;
  v.manual_since_ms = mb.manual_since_ms;
}

bool Router::viewInto(std::string_view address, int64_t now_ms, MailboxRouteView& out) {
  MailboxRoute* mb =
      config::hasUpperAscii(address) ? find(config::lowerAscii(address)) : find(address);
  if (mb == nullptr) {
    return false;
  }
  fillView(*mb, now_ms, out);
  return true;
}

std::optional<MailboxRouteView> Router::view(std::string_view address, int64_t now_ms) {
  MailboxRouteView v;
  if (!viewInto(address, now_ms, v)) {
    return std::nullopt;
  }
  return v;
}

void Router::forEachView(std::string_view tenant, int64_t now_ms,
                         const std::function<void(const MailboxRouteView&)>& fn) {
  MailboxRouteView v; // refilled for each mailbox: its strings' storage is reused
  for (auto& [_, mb] : mailboxes_) {
    if (tenant.empty() || mb->tenant->id == tenant) {
      fillView(*mb, now_ms, v);
      fn(v);
    }
  }
}

Result<bool> Router::failover(std::string_view address, std::string_view actor, int64_t now_ms) {
  MailboxRoute* mb = find(address);
  if (mb == nullptr) {
    return fail("route.unknown_mailbox",
                fmt::format("{} is not a configured mailbox's primary address", address),
                "use the address under tenants[].mailboxes[].address");
  }
  if (mb->tenant->fallback.empty()) {
    return fail("route.no_fallback",
                fmt::format("tenant {} has no fallback relay, so a failover of {} would only hold "
                            "its mail",
                            mb->tenant->id, mb->mailbox->address),
                "list relays under the tenant's fallback first");
  }
  if (mb->manual) {
    return false;
  }
  mb->manual = true;
  mb->manual_actor = std::string(actor);
  mb->manual_since_ms = now_ms;
  mb->failed_over.fill(true);
  Change c;
  c.manual = true;
  c.state.key = manualFailoverKey(mb->address);
  c.state.state = "failover";
  c.state.reason = std::string(kManualReason) + mb->manual_actor;
  c.state.hint = "failback sends the mailbox's mail through Microsoft 365 again";
  c.event = EventRecord{"route.failover", mb->tenant->id, mb->mailbox->address,
                        JsonObject()
                            .flag("manual", true)
                            .str("actor", actor)
                            .str("from", kMicrosoft365Route)
                            .str("to", mb->tenant->fallback.front())
                            .str("reason", c.state.reason)
                            .str("state", toString(mb->state))
                            .num("time_ms", now_ms)
                            .done()};
  changes_.push_back(std::move(c));
  return true;
}

Result<void> Router::failback(std::string_view address, std::string_view actor, int64_t now_ms) {
  MailboxRoute* mb = find(address);
  if (mb == nullptr) {
    return fail("route.unknown_mailbox",
                fmt::format("{} is not a configured mailbox's primary address", address),
                "use the address under tenants[].mailboxes[].address");
  }
  refresh(*mb, now_ms);
  const RouteState before = mb->state;
  const bool was_manual = mb->manual;
  if (was_manual) {
    mb->manual = false;
    mb->manual_actor.clear();
    mb->manual_since_ms = 0;
    Change c;
    c.manual = true;
    c.state.key = manualFailoverKey(mb->address);
    c.state.state = "active";
    changes_.push_back(std::move(c));
  }
  if (before == RouteState::kExhausted || before == RouteState::kPaused) {
    mb->ledger.clearExhausted();
    mb->state = RouteState::kActive;
    mb->until_ms = 0;
    mb->reason.clear();
    mb->hint.clear();
  } else if (before == RouteState::kDisconnected) {
    mb->until_ms = now_ms; // probesDue(): a login probe now
  }
  // A new episode starts from here: the next message that cannot use the route records
  // route.failover again, and the next one through it records no second failback.
  mb->failed_over.fill(false);
  mb->over_budget_reported.fill(false);
  Change c;
  c.manual = true;
  c.state.key = m365Key(mb->address);
  c.state.state = std::string(toString(mb->state));
  c.state.until_ms = mb->until_ms;
  c.state.reason = mb->reason;
  c.state.hint = mb->hint;
  JsonObject data;
  data.flag("manual", true)
      .str("actor", actor)
      .str("route", kMicrosoft365Route)
      .str("previous_state", toString(before))
      .str("state", toString(mb->state))
      .flag("manual_failover_cleared", was_manual);
  if (mb->state == RouteState::kDisconnected) {
    data.str("reason", "the login is tried again now: " + mb->reason);
  }
  c.event = EventRecord{"route.failback", mb->tenant->id, mb->mailbox->address,
                        data.num("time_ms", now_ms).done()};
  changes_.push_back(std::move(c));
  return {};
}

RouterReload Router::reconfigure(const config::Config& next, RouterOptions options,
                                 int64_t now_ms) {
  RouterReload out;
  options_ = std::move(options);
  const config::Config& old = *config_; // still alive until this returns

  // Relays by name: ledgers carry over, with the new limits.
  std::map<std::string, std::unique_ptr<RelayRoute>, std::less<>> relays;
  for (const auto& [name, relay] : next.relays) {
    auto it = relays_.find(name);
    if (it == relays_.end()) {
      relays.emplace(name, std::make_unique<RelayRoute>(relay));
      out.relays.insert(name);
      out.changes.push_back(fmt::format("relay {} added", name));
      continue;
    }
    std::unique_ptr<RelayRoute> rr = std::move(it->second);
    relays_.erase(it);
    if (const auto what = relayDiff(*rr->relay, relay); !what.empty()) {
      out.relays.insert(name);
      out.changes.push_back(fmt::format("relay {}: {} changed", name, joined(what)));
    }
    rr->ledger.setLimits(relayLimits(relay.limits), now_ms);
    rr->relay = &relay;
    relays.emplace(name, std::move(rr));
  }
  for (const auto& [name, _] : relays_) {
    out.relays.insert(name);
    out.changes.push_back(
        fmt::format("relay {} removed: messages pinned to it, or without a mailbox and routed to "
                    "it, fail with 550 5.3.5 when they come due",
                    name));
  }
  relays_ = std::move(relays);

  // Tenants by id: what changed for all their mailboxes.
  std::set<std::string, std::less<>> tenants_changed;
  for (const auto& t : next.tenants) {
    const config::Tenant* was = old.findTenant(t.id);
    if (was == nullptr) {
      tenants_changed.insert(t.id);
      out.changes.push_back(
          fmt::format("tenant {} added with {} mailbox(es)", t.id, t.mailboxes.size()));
      continue;
    }
    std::vector<std::string> what;
    if (!sameLimits(was->limits, t.limits)) {
      what.emplace_back("limits");
    }
    if (was->fallback != t.fallback) {
      what.emplace_back("fallback");
    }
    if (was->priority_reserve_percent != t.priority_reserve_percent) {
      what.emplace_back("priority_reserve_percent");
    }
    if (was->on_disconnect != t.on_disconnect) {
      what.emplace_back("on_disconnect");
    }
    const bool chain_changed = std::any_of(t.fallback.begin(), t.fallback.end(),
                                           [&](const auto& r) { return out.relays.contains(r); });
    if (!what.empty() || chain_changed) {
      tenants_changed.insert(t.id);
    }
    if (!what.empty()) {
      out.changes.push_back(fmt::format("tenant {}: {} changed", t.id, joined(what)));
    }
  }
  for (const auto& t : old.tenants) {
    if (next.findTenant(t.id) == nullptr) {
      out.changes.push_back(
          fmt::format("tenant {} removed: the waiting mail of its {} mailbox(es) stays queued "
                      "until they are configured again or its lifetime ends",
                      t.id, t.mailboxes.size()));
    }
  }

  // Mailboxes by address: ledgers, states and manual failovers carry over.
  size_t reported = 0;
  size_t unreported = 0;
  const auto note = [&](std::string line) {
    if (reported < kMaxReportedMailboxes) {
      out.changes.push_back(std::move(line));
      ++reported;
    } else {
      ++unreported;
    }
  };
  std::map<std::string, std::unique_ptr<MailboxRoute>, std::less<>> mailboxes;
  for (const auto& t : next.tenants) {
    for (const auto& m : t.mailboxes) {
      std::string addr = config::lowerAscii(m.address);
      std::unique_ptr<MailboxRoute> mb;
      bool changed = tenants_changed.contains(t.id);
      bool credentials_changed = false;
      if (auto it = mailboxes_.find(addr); it != mailboxes_.end()) {
        mb = std::move(it->second);
        mailboxes_.erase(it);
        std::vector<std::string> what;
        if (mb->tenant->id != t.id) {
          what.push_back("moved from tenant " + mb->tenant->id);
        }
        credentials_changed = !sameCredentials(*mb->mailbox, m);
        if (credentials_changed) {
          what.emplace_back("credentials or access");
        }
        if (!sameUpstream(mb->mailbox->smtp, m.smtp)) {
          what.emplace_back("smtp server");
          credentials_changed = true;
        }
        if (mb->mailbox->aliases != m.aliases) {
          what.emplace_back("aliases");
        }
        if (!what.empty()) {
          changed = true;
          note(fmt::format("mailbox {} (tenant {}): {} changed", m.address, t.id, joined(what)));
        }
      } else if (auto r = retired_.find(addr); r != retired_.end()) {
        mb = std::move(r->second);
        retired_.erase(r);
        changed = true;
        note(fmt::format("mailbox {} is configured again (tenant {}); its waiting mail is routed "
                         "again",
                         m.address, t.id));
      } else {
        mb = std::make_unique<MailboxRoute>(addr, mailboxLimits(t));
        changed = true;
        note(fmt::format("mailbox {} added to tenant {}", m.address, t.id));
      }
      mb->ledger.setLimits(mailboxLimits(t), now_ms);
      mb->configure(t, m);
      if (credentials_changed && mb->state == RouteState::kDisconnected) {
        mb->until_ms = now_ms; // the new settings may work: probe the login now
      }
      if (mb->manual && t.fallback.empty()) {
        note(fmt::format("mailbox {} is failed over by hand but tenant {} has no fallback relay "
                         "now: its mail waits until failback",
                         m.address, t.id));
      }
      if (changed) {
        out.mailboxes.insert(addr);
      }
      mailboxes.emplace(std::move(addr), std::move(mb));
    }
  }
  for (auto& [addr, mb] : mailboxes_) {
    note(fmt::format("mailbox {} removed: its waiting mail stays queued (\"mailbox no longer "
                     "configured\") until it is configured again or its lifetime ends",
                     mb->mailbox->address));
    mb->tenant = nullptr;
    mb->mailbox = nullptr;
    out.mailboxes.insert(addr);
    retired_[addr] = std::move(mb);
  }
  mailboxes_ = std::move(mailboxes);
  // Kept aside only while their ledgers still count something (or a manual failover waits).
  std::erase_if(retired_, [now_ms](const auto& kv) {
    return kv.second->ledger.usage(now_ms).used == 0 && !kv.second->manual;
  });
  if (unreported > 0) {
    out.changes.push_back(fmt::format("... and {} more mailbox change(s)", unreported));
  }
  config_ = &next;
  return out;
}

std::vector<Router::Change> Router::takeChanges() {
  std::vector<Change> out = std::move(changes_);
  changes_.clear();
  return out;
}

} // namespace mailgate::relay

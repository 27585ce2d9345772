// The control API's handlers as plain functions of a request: requests go through the sans-IO
// HTTP session (no socket), answers come back once the loop has run the store's completions. The
// store and the delivery engine are the real ones, over a temporary data_dir; nothing is sent.
#include "config/loader.h"
#include "gateway/api/control_api.h"
#include "gateway/api/http_server_session.h"
#include "gateway/api/openapi_document.h"
#include "gateway/store/sqlite_queue_store.h"
#include "imap/mailbox_status.h"
#include "net/loop.h"
#include "net/timer.h"
#include "relay/delivery_engine.h"
#include "tests/gateway/api/http_test_clients.h"
#include "tests/relay/delivery_test_support.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <gtest/gtest.h>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

namespace mailgate::api {
namespace {

using testing::Parsed;
using testing::parseResponses;

constexpr std::string_view kConfig = R"(
node: {id: api.test, data_dir: DATA}
listeners:
  smtp: {address: 127.0.0.1:0}
  api:
    address: 127.0.0.1:0
    tokens:
      - {name: admin, secret: admin-secret-0001, roles: [admin]}
      - {name: acme-reader, secret: acme-reader-0002, roles: [reader], tenants: [acme]}
      - {name: acme-submitter, secret: acme-submit-0003, roles: [submitter], tenants: [acme]}
      - {name: ops, secret: operator-secret-04, roles: [operator]}
relays:
  default: {host: 127.0.0.1, port: 9, tls: none}
tenants:
  - id: acme
    fallback: [default]
    imap: {max_sessions: 10}
    mailboxes:
      - {address: rep1@acme.example, aliases: [sales@acme.example]}
  - id: globex
    fallback: [default]
    mailboxes:
      - {address: rep@globex.example}
)";

class ControlApiTest : public ::testing::Test {
protected:
  void SetUp() override {
    std::string yaml(kConfig);
    yaml.replace(yaml.find("DATA"), 4, dir_.path() + "/data");
    auto config = config::loadString(yaml);
    ASSERT_TRUE(config.has_value()) << config.error().message;
    config_ = std::make_shared<const config::Config>(std::move(*config));
    store::SqliteStoreOptions so;
    so.data_dir = dir_.path() + "/data";
    so.post = [l = &loop_.loop()](std::function<void()> fn) { l->post(std::move(fn)); };
    auto st = store::openSqliteQueueStore(std::move(so));
    ASSERT_TRUE(st.has_value());
    store_ = std::move(*st);
    loop_.call([&] {
      auto engine = relay::DeliveryEngine::create(loop_.loop(), *config_, *store_);
      ASSERT_TRUE(engine.has_value()) << engine.error().describe();
      engine_ = std::move(*engine);
      ControlApiDeps deps;
      deps.loop = &loop_.loop();
      deps.store = store_.get();
      deps.delivery = engine_.get();
      deps.version = "test";
      if (with_imap_) {
        // The fake IMAP side: the statuses the test chose, by address (loop thread only).
        deps.imap_status = [this](std::string_view address, imap::MailboxImapStatus& out) {
          ++imap_calls_;
          const auto it = imap_.find(std::string(address));
          if (it == imap_.end()) {
            return false;
          }
          out = it->second;
          return true;
        };
      }
      deps.reload = [this]() -> Result<ReloadReport> {
        if (reload_error_) {
          return std::unexpected(*reload_error_);
        }
        return ReloadReport{"mailgate.yaml", {"listeners.api.tokens"}, {"listeners.api.address"}};
      };
      api_ = std::make_unique<ControlApi>(std::move(deps), config_);
    });
  }

  void TearDown() override {
    loop_.call([&] {
      sessions_.clear();
      api_.reset();
      engine_.reset();
    });
    store_.reset();
    loop_.stop();
  }

  // Sends one HTTP/1.1 request through a sans-IO session on the loop thread and waits until its
  // answer is complete (store completions arrive through the loop).
  Parsed request(const std::string& method, const std::string& target,
                 const std::string& token = {}, const std::string& body = {},
                 const std::string& content_type = {}, const HttpHeaders& extra = {}) {
    std::string in = method + " " + target + " HTTP/1.1\r\nHost: t\r\n";
    if (!token.empty()) {
      in += "Authorization: Bearer " + token + "\r\n";
    }
    if (!content_type.empty()) {
      in += "Content-Type: " + content_type + "\r\n";
    }
    for (const auto& [n, v] : extra) {
      in += n + ": " + v + "\r\n";
    }
    in += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    auto out = std::make_shared<std::string>();
    loop_.call([&] {
      auto session = std::make_shared<HttpServerSession>(HttpServerOptions{}, api_->handler());
      std::weak_ptr<HttpServerSession> weak = session;
      session->setWakeup([this, weak, out] {
        loop_.loop().defer([weak, out] {
          if (auto s = weak.lock()) {
            *out += s->takeOutput();
          }
        });
      });
      session->receive(std::span<const char>(in.data(), in.size()));
      *out += session->takeOutput();
      sessions_.push_back(session);
    });
    EXPECT_TRUE(loop_.eventually([&] { return !parseResponses(*out).empty(); })) << *out;
    const std::string bytes = loop_.call([&] { return *out; });
    auto parsed = parseResponses(bytes);
    return parsed.empty() ? Parsed{} : parsed.front();
  }

  static nlohmann::json json(const Parsed& p) { return nlohmann::json::parse(p.body); }
  static std::string code(const Parsed& p) { return json(p)["error"]["code"].get<std::string>(); }

  relay::test::TempDir dir_;
  relay::test::LoopThread loop_;
  std::shared_ptr<const config::Config> config_;
  std::unique_ptr<store::SqliteQueueStore> store_;
  std::unique_ptr<relay::DeliveryEngine> engine_;
  std::unique_ptr<ControlApi> api_;
  std::vector<std::shared_ptr<HttpServerSession>> sessions_;
  std::optional<Error> reload_error_;
  bool with_imap_ = false; // set before SetUp: give the API an IMAP status provider
  std::map<std::string, imap::MailboxImapStatus> imap_;
  int imap_calls_ = 0;
};

constexpr std::string_view kAdmin = "admin-secret-0001";
constexpr std::string_view kAcmeReader = "acme-reader-0002";
constexpr std::string_view kAcmeSubmitter = "acme-submit-0003";
constexpr std::string_view kOps = "operator-secret-04";

TEST_F(ControlApiTest, EveryRouteIsInTheOpenApiDocumentAndBack) {
  const auto doc = nlohmann::json::parse(openApiDocument());
  std::set<std::pair<std::string, std::string>> documented;
  for (const auto& [path, ops] : doc["paths"].items()) {
    for (const auto& [method, op] : ops.items()) {
      std::string upper = method;
      for (auto& c : upper) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      }
      documented.emplace(upper, path);
    }
  }
  std::set<std::pair<std::string, std::string>> served;
  loop_.call([&] {
    for (const auto& r : api_->routeList()) {
      served.insert(r);
    }
  });
  for (const auto& r : served) {
    EXPECT_TRUE(documented.count(r)) << r.first << " " << r.second << " is not documented";
  }
  for (const auto& r : documented) {
    EXPECT_TRUE(served.count(r)) << r.first << " " << r.second << " is documented, not served";
  }
  // The public routes are marked public in the document and the others need the bearer scheme.
  EXPECT_EQ(doc["paths"]["/healthz"]["get"]["security"], nlohmann::json::array());
  EXPECT_FALSE(doc["paths"]["/v1/queue"]["get"].contains("security"));
  EXPECT_TRUE(doc["components"]["securitySchemes"].contains("bearerAuth"));
}

TEST_F(ControlApiTest, PublicEndpointsNeedNoToken) {
  const auto health = request("GET", "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(json(health)["status"], "ok");
  EXPECT_EQ(request("GET", "/readyz").status, 200);
  const auto doc = request("GET", "/v1/openapi.json");
  EXPECT_EQ(doc.status, 200);
  EXPECT_EQ(json(doc)["openapi"], "3.1.0");
}

TEST_F(ControlApiTest, MissingMalformedAndUnknownTokensAre401WithoutEchoingTheSecret) {
  const auto missing = request("GET", "/v1/tenants");
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(code(missing), "auth.missing");
  EXPECT_EQ(missing.header("www-authenticate"), "Bearer realm=\"mailgate\"");
  const auto unknown = request("GET", "/v1/tenants", "not-a-configured-secret");
  EXPECT_EQ(unknown.status, 401);
  EXPECT_EQ(code(unknown), "auth.invalid");
  EXPECT_EQ(unknown.body.find("not-a-configured-secret"), std::string::npos);
}

TEST_F(ControlApiTest, RolesDecideWhatATokenMayDo) {
  // A reader may not reload or fail over; an operator may; a submitter may not fail over.
  EXPECT_EQ(code(request("POST", "/v1/config/reload", std::string(kAcmeReader))), "auth.forbidden");
  EXPECT_EQ(request("POST", "/v1/config/reload", std::string(kOps)).status, 200);
  EXPECT_EQ(request("POST", "/v1/mailboxes/rep1@acme.example/failover", std::string(kAcmeSubmitter))
                .status,
            403);
  const auto failover =
      request("POST", "/v1/mailboxes/rep1@acme.example/failover", std::string(kOps));
  ASSERT_EQ(failover.status, 200) << failover.body;
  EXPECT_EQ(json(failover)["route"]["manual"]["actor"], "API token ops");
  const auto failback =
      request("POST", "/v1/mailboxes/rep1%40acme.example/failback", std::string(kOps));
  ASSERT_EQ(failback.status, 200) << failback.body;
  EXPECT_TRUE(json(failback)["route"]["manual"].is_null());
}

TEST_F(ControlApiTest, AMailboxAnswerFollowsEveryChangeOfItsStatus) {
  // The rendering of a mailbox is reused while its status is the same; every change shows.
  const std::string path = "/v1/mailboxes/rep1@acme.example";
  const auto before = json(request("GET", path, std::string(kAcmeReader)));
  EXPECT_TRUE(before["route"]["manual"].is_null());
  EXPECT_EQ(json(request("GET", path, std::string(kAcmeReader))), before);
  ASSERT_EQ(request("POST", path + "/failover", std::string(kOps)).status, 200);
  const auto during = json(request("GET", path, std::string(kAcmeReader)));
  EXPECT_EQ(during["route"]["manual"]["actor"], "API token ops");
  ASSERT_EQ(request("POST", path + "/failback", std::string(kOps)).status, 200);
  const auto after = json(request("GET", path, std::string(kAcmeReader)));
  EXPECT_TRUE(after["route"]["manual"].is_null());
  // A reload renders again under the new configuration (aliases come from it).
  std::string yaml(kConfig);
  yaml.replace(yaml.find("DATA"), 4, dir_.path() + "/data");
  yaml.replace(yaml.find("aliases: [sales@acme.example]"), 29,
               "aliases: [sales@acme.example, team@acme.example]");
  auto next = config::loadString(yaml);
  ASSERT_TRUE(next.has_value()) << next.error().message;
  auto shared = std::make_shared<const config::Config>(std::move(*next));
  loop_.call([&] { api_->reconfigure(shared); });
  const auto reloaded = json(request("GET", path, std::string(kAcmeReader)));
  EXPECT_EQ(reloaded["aliases"].size(), 2u);
}

TEST_F(ControlApiTest, ATokenScopedToOneTenantSeesNothingOfAnother) {
  const auto tenants = json(request("GET", "/v1/tenants", std::string(kAcmeReader)));
  ASSERT_EQ(tenants["tenants"].size(), 1u);
  EXPECT_EQ(tenants["tenants"][0]["id"], "acme");
  const auto own = request("GET", "/v1/mailboxes/REP1@acme.example", std::string(kAcmeReader));
  ASSERT_EQ(own.status, 200) << own.body;
  EXPECT_EQ(json(own)["tenant"], "acme");
  EXPECT_EQ(json(own)["aliases"][0], "sales@acme.example");
  // Another tenant's mailbox and an unknown one answer the same 404.
  const auto other = request("GET", "/v1/mailboxes/rep@globex.example", std::string(kAcmeReader));
  const auto none = request("GET", "/v1/mailboxes/nobody@acme.example", std::string(kAcmeReader));
  EXPECT_EQ(other.status, 404);
  EXPECT_EQ(none.status, 404);
  EXPECT_EQ(code(other), code(none));
  EXPECT_EQ(json(other)["error"]["hint"], json(none)["error"]["hint"]);
  const auto list = json(request("GET", "/v1/mailboxes", std::string(kAcmeReader)));
  ASSERT_EQ(list["mailboxes"].size(), 1u);
  EXPECT_EQ(list["mailboxes"][0]["address"], "rep1@acme.example");
  EXPECT_EQ(request("GET", "/v1/mailboxes?tenant=globex", std::string(kAcmeReader)).status, 404);
  EXPECT_EQ(request("GET", "/metrics", std::string(kAcmeReader)).status, 403);
  EXPECT_EQ(request("GET", "/v1/events?tenant=globex", std::string(kAcmeReader)).status, 404);
}

TEST_F(ControlApiTest, MessagesOfOtherTenantsAre404AndTheQueueListsOnlyTheScope) {
  relay::test::TestStore* unused = nullptr;
  (void)unused;
  auto enqueue = [&](const std::string& tenant, const std::string& mailbox) {
    relay::NewMessage m = relay::test::makeMessage({"p@example.com"});
    m.tenant = tenant;
    m.mailbox = mailbox;
    m.mail_from = mailbox;
    m.route.clear();
    std::promise<Result<std::string>> p;
    auto f = p.get_future();
    store_->enqueue(std::move(m), [&p](Result<std::string> r) { p.set_value(std::move(r)); });
    auto id = f.get();
    EXPECT_TRUE(id.has_value());
    return id.value_or("");
  };
  const std::string acme = enqueue("acme", "rep1@acme.example");
  const std::string globex = enqueue("globex", "rep@globex.example");
  const auto mine = request("GET", "/v1/messages/" + acme, std::string(kAcmeReader));
  ASSERT_EQ(mine.status, 200) << mine.body;
  EXPECT_EQ(json(mine)["tenant"], "acme");
  EXPECT_EQ(json(mine)["events"][0]["type"], "message.queued");
  const auto theirs = request("GET", "/v1/messages/" + globex, std::string(kAcmeReader));
  EXPECT_EQ(theirs.status, 404);
  EXPECT_EQ(code(theirs), "message.not_found");
  const auto queue = json(request("GET", "/v1/queue", std::string(kAcmeReader)));
  ASSERT_EQ(queue["messages"].size(), 1u);
  EXPECT_EQ(queue["messages"][0]["id"], acme);
  EXPECT_EQ(queue["counts"]["queued"].get<int>() + queue["counts"]["sending"].get<int>() +
                queue["counts"]["deferred"].get<int>(),
            1);
  const auto all = json(request("GET", "/v1/queue?order=oldest", std::string(kAdmin)));
  ASSERT_EQ(all["messages"].size(), 2u);
  EXPECT_EQ(all["messages"][0]["id"], acme);
  EXPECT_EQ(request("GET", "/v1/queue?state=bogus", std::string(kAdmin)).status, 400);
  EXPECT_EQ(request("GET", "/v1/queue?limit=0", std::string(kAdmin)).status, 400);
  // An operator scoped to every tenant may cancel; the cancelled message says by whom.
  const auto cancelled = request("DELETE", "/v1/messages/" + globex, std::string(kOps));
  if (cancelled.status == 409) {
    GTEST_SKIP() << "the engine had the message in flight: " << cancelled.body;
  }
  ASSERT_EQ(cancelled.status, 200) << cancelled.body;
  EXPECT_EQ(json(cancelled)["state"], "failed");
  EXPECT_EQ(json(cancelled)["last_reply"], "cancelled by API token ops");
  EXPECT_EQ(code(request("DELETE", "/v1/messages/" + globex, std::string(kOps))), "store.state");
}

TEST_F(ControlApiTest, UnknownPathsAndMethodsSayWhatExists) {
  const auto nothing = request("GET", "/v2/nothing", std::string(kAdmin));
  EXPECT_EQ(nothing.status, 404);
  EXPECT_EQ(code(nothing), "api.not_found");
  const auto method = request("PUT", "/v1/queue", std::string(kAdmin));
  EXPECT_EQ(method.status, 405);
  EXPECT_EQ(method.header("allow"), "GET");
  EXPECT_EQ(request("GET", "/v1/mailboxes/a%zzb", std::string(kAdmin)).status, 400);
}

TEST_F(ControlApiTest, ReloadErrorsListEveryLine) {
  reload_error_ = Error("config.invalid",
                        "/etc/mailgate.yaml:3:5: listeners.api: unknown key 'adress'\n"
                        "/etc/mailgate.yaml:9:1: relays: unknown relay 'x'",
                        "fix the file and reload again; nothing was changed");
  const auto r = request("POST", "/v1/config/reload", std::string(kAdmin));
  EXPECT_EQ(r.status, 422);
  const auto body = json(r);
  EXPECT_EQ(body["error"]["code"], "config.invalid");
  ASSERT_EQ(body["error"]["details"].size(), 2u);
  EXPECT_EQ(body["error"]["details"][0],
            "/etc/mailgate.yaml:3:5: listeners.api: unknown key 'adress'");
  reload_error_.reset();
  const auto ok = json(request("POST", "/v1/config/reload", std::string(kAdmin)));
  EXPECT_EQ(ok["status"], "reloaded");
  EXPECT_EQ(ok["restart_required"][0], "listeners.api.address");
}

TEST_F(ControlApiTest, MetricsAreValidPrometheusText) {
  const auto r = request("GET", "/metrics", std::string(kAdmin));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(r.body.find("mailgate_queue_messages{state=\"queued\"} 0\n"), std::string::npos);
  EXPECT_NE(r.body.find("mailgate_route_state{tenant=\"acme\",mailbox=\"rep1@acme.example\""),
            std::string::npos);
  // Every line is a comment or `name{labels} value`.
  std::istringstream lines(r.body);
  std::string line;
  std::set<std::string> typed;
  while (std::getline(lines, line)) {
    if (line.starts_with("# TYPE ")) {
      const std::string name = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_TRUE(typed.insert(name).second) << "family typed twice: " << name;
      continue;
    }
    if (line.starts_with("#")) {
      continue;
    }
    const auto name_end = line.find_first_of("{ ");
    ASSERT_NE(name_end, std::string::npos) << line;
    EXPECT_TRUE(typed.count(line.substr(0, name_end))) << "sample before its TYPE: " << line;
  }
}

// Without an IMAP provider (the daemon today) every mailbox still has the whole "imap" object,
// in its "off" form, and /metrics has no IMAP families.
nlohmann::json offImap() {
  return nlohmann::json::parse(R"({"state": "off", "max_sessions": 0,
      "sessions": {"open": 0, "idle": 0, "busy": 0, "connecting": 0}, "jobs_waiting": 0,
      "sent_folder": null, "last_error": null, "next_retry_at": null, "connected_since": null,
      "logins": 0, "failures": 0})");
}

TEST_F(ControlApiTest, WithoutAnImapProviderEveryMailboxShowsImapOff) {
  const auto one = json(request("GET", "/v1/mailboxes/rep1@acme.example", std::string(kAdmin)));
  EXPECT_EQ(one["imap"], offImap());
  const auto list = json(request("GET", "/v1/mailboxes", std::string(kAdmin)));
  ASSERT_EQ(list["mailboxes"].size(), 2u);
  for (const auto& m : list["mailboxes"]) {
    EXPECT_EQ(m["imap"], offImap()) << m["address"];
  }
  const auto metrics = request("GET", "/metrics", std::string(kAdmin));
  ASSERT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.body.find("mailgate_imap_"), std::string::npos);
  // The tenant-wide cap shows under /v1/tenants (null: none).
  const auto tenants = json(request("GET", "/v1/tenants", std::string(kAdmin)));
  ASSERT_EQ(tenants["tenants"].size(), 2u);
  for (const auto& t : tenants["tenants"]) {
    EXPECT_EQ(t["imap"]["max_sessions"],
              t["id"] == "acme" ? nlohmann::json(10) : nlohmann::json(nullptr));
  }
}

TEST(PoolStateName, EveryStateHasItsDocumentedName) {
  EXPECT_EQ(imap::poolStateName(imap::PoolState::kOff), "off");
  EXPECT_EQ(imap::poolStateName(imap::PoolState::kConnecting), "connecting");
  EXPECT_EQ(imap::poolStateName(imap::PoolState::kConnected), "connected");
  EXPECT_EQ(imap::poolStateName(imap::PoolState::kThrottled), "throttled");
  EXPECT_EQ(imap::poolStateName(imap::PoolState::kBackoff), "backoff");
  EXPECT_EQ(imap::poolStateName(imap::PoolState::kDisconnected), "disconnected");
}

class ControlApiImapTest : public ControlApiTest {
protected:
  ControlApiImapTest() {
    with_imap_ = true;
    imap::MailboxImapStatus s;
    s.state = imap::PoolState::kConnected;
    s.max_sessions = 3;
    s.sessions_open = 2;
    s.sessions_idle = 1;
    s.sessions_busy = 1;
    s.sessions_connecting = 1;
    s.jobs_waiting = 4;
    s.sent_folder = "Gesendete Elemente";
    s.last_error_code = "imap.throttled";
    s.last_error = "NO [LIMIT] too many connections";
    s.hint = "close other IMAP clients of this mailbox";
    s.last_error_at_ms = 1796292000000;   // 2026-12-03T10:00:00Z
    s.next_retry_at_ms = 1796292300000;   // 2026-12-03T10:05:00Z
    s.connected_since_ms = 1796284805000; // 2026-12-03T08:00:05Z
    s.logins = 7;
    s.failures = 2;
    imap_["rep1@acme.example"] = s; // rep@globex.example has no IMAP side
  }

  // Changes rep1's status on the loop thread, where the provider reads it.
  void setRep1(const std::function<void(imap::MailboxImapStatus&)>& change) {
    loop_.call([&] { change(imap_["rep1@acme.example"]); });
  }
};

TEST_F(ControlApiImapTest, AMailboxShowsItsImapPool) {
  const auto r = request("GET", "/v1/mailboxes/rep1@acme.example", std::string(kAcmeReader));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json(r)["imap"], nlohmann::json::parse(R"({"state": "connected", "max_sessions": 3,
      "sessions": {"open": 2, "idle": 1, "busy": 1, "connecting": 1}, "jobs_waiting": 4,
      "sent_folder": "Gesendete Elemente",
      "last_error": {"code": "imap.throttled", "message": "NO [LIMIT] too many connections",
                     "hint": "close other IMAP clients of this mailbox",
                     "at": "2026-12-03T10:00:00.000Z"},
      "next_retry_at": "2026-12-03T10:05:00.000Z", "connected_since": "2026-12-03T08:00:05.000Z",
      "logins": 7, "failures": 2})"));
  // The SMTP side's own fields are still there, before it.
  EXPECT_TRUE(json(r).contains("smtp"));
  EXPECT_TRUE(json(r).contains("last_error"));
  // A mailbox the provider says has no IMAP side looks like one without a provider.
  const auto globex = request("GET", "/v1/mailboxes/rep@globex.example", std::string(kAdmin));
  ASSERT_EQ(globex.status, 200);
  EXPECT_EQ(json(globex)["imap"], offImap());
  // The listing renders the same objects.
  const auto list = json(request("GET", "/v1/mailboxes", std::string(kAdmin)));
  ASSERT_EQ(list["mailboxes"].size(), 2u);
  for (const auto& m : list["mailboxes"]) {
    EXPECT_EQ(m["imap"], m["address"] == "rep1@acme.example" ? json(r)["imap"] : offImap());
  }
}

TEST_F(ControlApiImapTest, TextsLeftEmptyAreNullAndStatesHaveTheirNames) {
  setRep1([](imap::MailboxImapStatus& s) {
    s = imap::MailboxImapStatus{};
    s.state = imap::PoolState::kBackoff;
    s.last_error = "connection refused"; // no code, hint or time
  });
  const auto imap =
      json(request("GET", "/v1/mailboxes/rep1@acme.example", std::string(kAdmin)))["imap"];
  EXPECT_EQ(imap["state"], "backoff");
  EXPECT_TRUE(imap["sent_folder"].is_null());
  EXPECT_EQ(imap["last_error"], nlohmann::json::parse(R"({"code": "", "message":
      "connection refused", "hint": null, "at": null})"));
  EXPECT_TRUE(imap["next_retry_at"].is_null());
  EXPECT_TRUE(imap["connected_since"].is_null());
}

TEST_F(ControlApiImapTest, AChangedImapStatusIsNeverAnsweredFromTheCache) {
  const std::string path = "/v1/mailboxes/rep1@acme.example";
  const auto first = json(request("GET", path, std::string(kAcmeReader)));
  EXPECT_EQ(json(request("GET", path, std::string(kAcmeReader))), first); // from the cache
  // Every kind of field: a count, the state, a text, a time.
  setRep1([](imap::MailboxImapStatus& s) { s.sessions_busy = 0; });
  const auto busy = json(request("GET", path, std::string(kAcmeReader)));
  EXPECT_EQ(busy["imap"]["sessions"]["busy"], 0);
  setRep1([](imap::MailboxImapStatus& s) { s.state = imap::PoolState::kThrottled; });
  EXPECT_EQ(json(request("GET", path, std::string(kAcmeReader)))["imap"]["state"], "throttled");
  setRep1([](imap::MailboxImapStatus& s) { s.hint = "wait"; });
  EXPECT_EQ(json(request("GET", path, std::string(kAcmeReader)))["imap"]["last_error"]["hint"],
            "wait");
  setRep1([](imap::MailboxImapStatus& s) { s.next_retry_at_ms = 0; });
  EXPECT_TRUE(
      json(request("GET", path, std::string(kAcmeReader)))["imap"]["next_retry_at"].is_null());
  // The mailbox loses its IMAP side.
  loop_.call([&] { imap_.erase("rep1@acme.example"); });
  EXPECT_EQ(json(request("GET", path, std::string(kAcmeReader)))["imap"], offImap());
  // The provider is asked once per answer, cached or not.
  EXPECT_GE(loop_.call([&] { return imap_calls_; }), 7);
}

TEST_F(ControlApiImapTest, MetricsHaveTheImapFamiliesPerMailbox) {
  const auto r = request("GET", "/metrics", std::string(kAdmin));
  ASSERT_EQ(r.status, 200);
  const std::string labels = R"(tenant="acme",mailbox="rep1@acme.example")";
  const std::vector<std::string> lines = {
      "# TYPE mailgate_imap_sessions gauge\n",
      "mailgate_imap_sessions{" + labels + R"(,state="open"} 2)" + "\n",
      "mailgate_imap_sessions{" + labels + R"(,state="idle"} 1)" + "\n",
      "mailgate_imap_sessions{" + labels + R"(,state="busy"} 1)" + "\n",
      "mailgate_imap_sessions{" + labels + R"(,state="connecting"} 1)" + "\n",
      "# TYPE mailgate_imap_pool_state gauge\n",
      "mailgate_imap_pool_state{" + labels + R"(,state="off"} 0)" + "\n",
      "mailgate_imap_pool_state{" + labels + R"(,state="connecting"} 0)" + "\n",
      "mailgate_imap_pool_state{" + labels + R"(,state="connected"} 1)" + "\n",
      "mailgate_imap_pool_state{" + labels + R"(,state="throttled"} 0)" + "\n",
      "mailgate_imap_pool_state{" + labels + R"(,state="backoff"} 0)" + "\n",
      "mailgate_imap_pool_state{" + labels + R"(,state="disconnected"} 0)" + "\n",
      "# TYPE mailgate_imap_logins_total counter\n",
      "mailgate_imap_logins_total{" + labels + "} 7\n",
      "# TYPE mailgate_imap_failures_total counter\n",
      "mailgate_imap_failures_total{" + labels + "} 2\n",
  };
  for (const std::string& line : lines) {
    EXPECT_NE(r.body.find(line), std::string::npos) << line << r.body;
  }
  // No IMAP side, no IMAP series.
  EXPECT_EQ(r.body.find(R"(mailgate_imap_sessions{tenant="globex")"), std::string::npos);
  EXPECT_EQ(r.body.find(R"(mailgate_imap_pool_state{tenant="globex")"), std::string::npos);
}

} // namespace
} // namespace mailgate::api

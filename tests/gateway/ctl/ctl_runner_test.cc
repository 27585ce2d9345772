// The commands end to end below main(): command line, environment, token, requests sent, output
// and exit codes, against a fake transport.
#include "gateway/ctl/ctl_runner.h"
#include "tests/gateway/ctl/fixtures.h"

#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <gtest/gtest.h>
#include <map>
#include <sstream>
#include <unistd.h>

namespace mailgate::ctl {
namespace {

using testing::fixture;

constexpr const char* kToken = "tok-5ecret-abc123";
constexpr const char* kBase = "http://127.0.0.1:8025";

std::string errorBody(const std::string& code, const std::string& message,
                      const std::string& hint) {
  return Json{{"error", {{"code", code}, {"message", message}, {"hint", hint}}}}.dump();
}

// Answers requests from a table keyed by "METHOD URL"; records every request.
class FakeApi {
public:
  void on(const std::string& method, const std::string& url, int status, std::string body) {
    replies_[method + " " + url] = ApiAnswer{status, "application/json", std::move(body)};
  }
  void failAll(Error e) { failure_ = std::move(e); }

  Result<ApiAnswer> send(const ApiRequest& r) {
    requests.push_back(r);
    if (failure_) {
      return std::unexpected(*failure_);
    }
    const auto it = replies_.find(r.method + " " + r.url);
    if (it == replies_.end()) {
      ADD_FAILURE() << "unexpected request " << r.method << " " << r.url;
      return ApiAnswer{404, "application/json",
                       errorBody("api.not_found", "no endpoint", "GET /v1/openapi.json")};
    }
    return it->second;
  }

  std::vector<ApiRequest> requests;

private:
  std::map<std::string, ApiAnswer> replies_;
  std::optional<Error> failure_;
};

class ForwardingClient final : public ApiClient {
public:
  explicit ForwardingClient(FakeApi& api) : api_(api) {}
  Result<ApiAnswer> send(const ApiRequest& r) override { return api_.send(r); }

private:
  FakeApi& api_;
};

struct Outcome {
  int code = -1;
  std::string out;
  std::string err;
};

class Ctl : public ::testing::Test {
protected:
  Outcome run(std::vector<std::string> args) {
    std::ostringstream out;
    std::ostringstream err;
    CtlEnvironment env;
    env.getenv = [this](const char* name) -> std::optional<std::string> {
      const auto it = vars.find(name);
      return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
    };
    env.make_client = [this](const ClientSettings& s) -> Result<ApiClientPtr> {
      settings = s;
      return std::make_unique<ForwardingClient>(api);
    };
    env.out = &out;
    env.err = &err;
    env.render = render;
    env.version = "1.2.3";
    Outcome o;
    o.code = runCtl(args, env);
    o.out = out.str();
    o.err = err.str();
    // Whatever happened, the token never shows.
    EXPECT_EQ(o.out.find(kToken), std::string::npos) << o.out;
    EXPECT_EQ(o.err.find(kToken), std::string::npos) << o.err;
    return o;
  }

  std::string url(const std::string& path) { return std::string(kBase) + path; }

  std::string tempFile(const std::string& content) {
    const auto path =
        std::filesystem::temp_directory_path() /
        ("mailgatectl-runner-" + std::to_string(::getpid()) + "-" + std::to_string(files_.size()));
    std::ofstream(path, std::ios::binary) << content;
    files_.push_back(path);
    return path.string();
  }

  void TearDown() override {
    for (const auto& f : files_) {
      std::filesystem::remove(f);
    }
  }

  FakeApi api;
  std::map<std::string, std::string> vars{{"MAILGATE_TOKEN", kToken}};
  std::optional<ClientSettings> settings;
  RenderOptions render;

private:
  std::vector<std::filesystem::path> files_;
};

// --- command line, environment, token -------------------------------------------------------

TEST_F(Ctl, HelpAndVersionNeedNoTokenAndSendNothing) {
  vars.clear();
  auto o = run({"--help"});
  EXPECT_EQ(o.code, 0);
  EXPECT_EQ(o.out, helpText());
  o = run({"help"});
  EXPECT_EQ(o.code, 0);
  o = run({"--version"});
  EXPECT_EQ(o.code, 0);
  EXPECT_EQ(o.out, "mailgatectl 1.2.3\n");
  EXPECT_TRUE(api.requests.empty());
  EXPECT_FALSE(settings.has_value());
}

TEST_F(Ctl, UsageErrorsExit2WithTheReasonOnStderr) {
  auto o = run({"queue", "--state", "lost"});
  EXPECT_EQ(o.code, 2);
  EXPECT_EQ(o.out, "");
  EXPECT_EQ(o.err, "mailgatectl: --state lost is not a message state\n"
                   "hint: use queued, sending, deferred, sent or failed\n");
  o = run({});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("--help"), std::string::npos);
  o = run({"status", "--token", kToken});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("never taken on the command line"), std::string::npos);
  EXPECT_TRUE(api.requests.empty());
}

TEST_F(Ctl, NoTokenExits3BeforeAnyRequest) {
  vars.clear();
  auto o = run({"status"});
  EXPECT_EQ(o.code, 3);
  EXPECT_EQ(o.err, "mailgatectl: no API token given\n"
                   "hint: set MAILGATE_TOKEN, or put the token in a file and pass --token-file "
                   "FILE (or set MAILGATE_TOKEN_FILE); the token is never taken as a "
                   "command-line argument\n");
  EXPECT_TRUE(api.requests.empty());
  o = run({"status", "--token-file", "/nonexistent/mailgate-token"});
  EXPECT_EQ(o.code, 3);
  EXPECT_NE(o.err.find("cannot read token file /nonexistent/mailgate-token"), std::string::npos);
}

TEST_F(Ctl, TheTokenFileLosesItsNewlineAndBecomesTheBearer) {
  vars.clear();
  api.on("GET", url("/v1/status"), 200, fixture("status.json"));
  auto o = run({"status", "--token-file", tempFile(std::string(kToken) + "\n")});
  EXPECT_EQ(o.code, 0) << o.err;
  ASSERT_EQ(api.requests.size(), 1u);
  EXPECT_EQ(api.requests[0].bearer.reveal(), kToken);

  vars["MAILGATE_TOKEN_FILE"] = tempFile("from-env-file\r\n");
  o = run({"status"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(api.requests.back().bearer.reveal(), "from-env-file");
  vars["MAILGATE_TOKEN"] = "from-env";
  o = run({"status"});
  EXPECT_EQ(api.requests.back().bearer.reveal(), "from-env");
}

TEST_F(Ctl, TheUrlComesFromTheOptionThenTheEnvironmentThenTheDefault) {
  api.on("GET", "http://127.0.0.1:8025/v1/status", 200, fixture("status.json"));
  api.on("GET", "https://gw.example:9443/v1/status", 200, fixture("status.json"));
  api.on("GET", "http://10.1.1.1/prefix/v1/status", 200, fixture("status.json"));
  EXPECT_EQ(run({"status"}).code, 0);
  EXPECT_EQ(settings->base_url, "http://127.0.0.1:8025");
  vars["MAILGATE_URL"] = "https://gw.example:9443/";
  EXPECT_EQ(run({"status"}).code, 0);
  EXPECT_EQ(settings->base_url, "https://gw.example:9443");
  EXPECT_EQ(run({"status", "--url", "http://10.1.1.1/prefix"}).code, 0);
  EXPECT_EQ(api.requests.back().url, "http://10.1.1.1/prefix/v1/status");

  auto o = run({"status", "--url", "gw.example:8025"});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("--url gw.example:8025: the URL has no http:// or https://"),
            std::string::npos);
  vars["MAILGATE_URL"] = "ftp://x";
  o = run({"status"});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("MAILGATE_URL ftp://x"), std::string::npos);
}

TEST_F(Ctl, TransportSettingsFollowTheOptions) {
  api.on("GET", url("/v1/status"), 200, fixture("status.json"));
  const std::string ca = tempFile("-----BEGIN CERTIFICATE-----\n");
  EXPECT_EQ(run({"status", "--timeout", "2.5", "--http2", "--cacert", ca}).code, 0);
  EXPECT_EQ(settings->timeout, std::chrono::milliseconds(2500));
  EXPECT_TRUE(settings->http2_prior_knowledge);
  EXPECT_EQ(settings->cacert, ca);
  EXPECT_EQ(run({"status"}).code, 0);
  EXPECT_EQ(settings->timeout, std::chrono::seconds(10));
  EXPECT_FALSE(settings->http2_prior_knowledge);
  EXPECT_EQ(settings->cacert, "");
}

TEST_F(Ctl, AnUnreadableCaFileIsAUsageError) {
  auto o = run({"status", "--cacert", "/nonexistent/ca.pem"});
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.err.find("cannot read --cacert /nonexistent/ca.pem"), std::string::npos);
  EXPECT_TRUE(api.requests.empty());
}

// --- exit codes -----------------------------------------------------------------------------

TEST_F(Ctl, EveryHttpStatusMapsToItsExitCode) {
  const std::vector<std::pair<int, int>> cases{{401, 3}, {403, 3}, {404, 4}, {409, 5}, {400, 1},
                                               {405, 1}, {422, 1}, {429, 1}, {500, 1}, {503, 1}};
  for (const auto& [status, code] : cases) {
    api.on("GET", url("/v1/messages/01JX"), status, errorBody("x.y", "went wrong", "do this"));
    auto o = run({"message", "01JX"});
    EXPECT_EQ(o.code, code) << status;
    EXPECT_EQ(o.out, "") << status;
    EXPECT_EQ(o.err, "mailgatectl: went wrong (x.y)\nhint: do this\n") << status;
  }
}

TEST_F(Ctl, UnreachableApiExits7) {
  for (const char* code : {"net.connect", "net.tls", "net.timeout", "net.io"}) {
    api.failAll(Error(code, "it failed", "try that"));
    auto o = run({"status"});
    EXPECT_EQ(o.code, 7) << code;
    EXPECT_EQ(o.err, fmt::format("mailgatectl: cannot reach http://127.0.0.1:8025: it failed "
                                 "({})\nhint: try that\n",
                                 code));
  }
  api.failAll(Error("ctl.answer_too_large", "too big", "narrow it"));
  EXPECT_EQ(run({"status"}).code, 1);
}

TEST_F(Ctl, AnswersThatAreNotUnderstoodExit1) {
  api.on("GET", url("/v1/status"), 200, "<html>hello</html>");
  auto o = run({"status"});
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.err.find("the answer to GET /v1/status (HTTP 200) is not JSON"), std::string::npos);
  api.on("GET", url("/v1/status"), 200, "[1, 2]");
  EXPECT_EQ(run({"status"}).code, 1);
  api.on("GET", url("/v1/status"), 200, R"({"node": "x"})"); // no readiness
  EXPECT_EQ(run({"status"}).code, 1);
  api.on("GET", url("/v1/status"), 502, "<html>Bad Gateway\x1b[31m</html>");
  o = run({"status"});
  EXPECT_EQ(o.code, 1);
  EXPECT_EQ(o.err, "mailgatectl: GET /v1/status answered HTTP 502 without a mailgate error: "
                   "<html>Bad Gateway?[31m</html>\nhint: is --url the mailgate control API?\n");
  api.on("GET", url("/v1/status"), 404, "not here");
  EXPECT_EQ(run({"status"}).code, 4);
}

// --- status ---------------------------------------------------------------------------------

TEST_F(Ctl, StatusReadyExits0AndDrainingExits8) {
  api.on("GET", url("/v1/status"), 200, fixture("status.json"));
  auto o = run({"status"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_NE(o.out.find("ready:       yes\n"), std::string::npos);
  EXPECT_EQ(o.err, "");
  api.on("GET", url("/v1/status"), 200, fixture("status_draining.json"));
  o = run({"status"});
  EXPECT_EQ(o.code, 8);
  EXPECT_NE(o.out.find("ready:       no (draining)\n"), std::string::npos);
  o = run({"status", "--json"});
  EXPECT_EQ(o.code, 8);
}

TEST_F(Ctl, JsonPrintsTheAnswerAsOnePrettyDocumentInTheServersOrder) {
  api.on("GET", url("/v1/status"), 200, fixture("status.json"));
  auto o = run({"--json", "status"});
  EXPECT_EQ(o.code, 0);
  const Json doc = Json::parse(o.out);
  EXPECT_EQ(doc, Json::parse(fixture("status.json")));
  EXPECT_EQ(o.out, doc.dump(2) + "\n");
  EXPECT_LT(o.out.find("\"failed\""), o.out.find("\"sent\"")); // as the fixture has them
  EXPECT_NE(o.out.find("\n  \"node\": \"gw-1\",\n"), std::string::npos);
}

TEST_F(Ctl, JsonPrintsTheErrorDocumentToo) {
  api.on("GET", url("/v1/messages/nope"), 404,
         errorBody("message.not_found", "no message with id nope", "ids are listed by queue"));
  auto o = run({"message", "nope", "--json"});
  EXPECT_EQ(o.code, 4);
  EXPECT_EQ(Json::parse(o.out)["error"]["code"], "message.not_found");
  EXPECT_EQ(o.err, "mailgatectl: no message with id nope (message.not_found)\n"
                   "hint: ids are listed by queue\n");
}

TEST_F(Ctl, AMissingEndpointSaysSo) {
  api.on("GET", url("/v1/queue?limit=50"), 404,
         errorBody("api.not_found", "no endpoint at /v1/queue",
                   "GET /v1/openapi.json lists every endpoint"));
  auto o = run({"queue"});
  EXPECT_EQ(o.code, 4);
  EXPECT_NE(o.err.find("note: this mailgated does not serve GET /v1/queue"), std::string::npos);
}

// --- reload ---------------------------------------------------------------------------------

TEST_F(Ctl, ReloadReportsWhatWasApplied) {
  api.on("POST", url("/v1/config/reload"), 200, fixture("reload_ok.json"));
  auto o = run({"reload"});
  EXPECT_EQ(o.code, 0);
  EXPECT_NE(o.out.find("restart required: listeners.api.address\n"), std::string::npos);
  ASSERT_EQ(api.requests.size(), 1u);
  EXPECT_EQ(api.requests[0].body, "");
}

TEST_F(Ctl, AnInvalidConfigurationExits6WithEveryDetailLine) {
  api.on("POST", url("/v1/config/reload"), 422, fixture("reload_invalid.json"));
  auto o = run({"reload"});
  EXPECT_EQ(o.code, 6);
  EXPECT_EQ(o.out, "");
  EXPECT_EQ(o.err, "mailgatectl: 2 errors (config.invalid)\n"
                   "  gw.yaml:3:3: node: unknown key colour\n"
                   "  gw.yaml:11:10: relays.default.tls: must be one of implicit, starttls, none\n"
                   "hint: fix the file and reload again; nothing was changed\n");
  o = run({"reload", "--json"});
  EXPECT_EQ(o.code, 6);
  EXPECT_EQ(Json::parse(o.out)["error"]["details"].size(), 2u);
  api.on("POST", url("/v1/config/reload"), 403,
         errorBody("auth.forbidden", "token may not", "use another"));
  EXPECT_EQ(run({"reload"}).code, 3);
}

// --- mailboxes ------------------------------------------------------------------------------

TEST_F(Ctl, MailboxesFollowsEveryPage) {
  Json page1 = Json::parse(fixture("mailboxes.json"));
  Json page2 = page1;
  page1["mailboxes"].erase(1);
  page1["next"] = "rep1@acme.example";
  page2["mailboxes"].erase(0);
  api.on("GET", url("/v1/mailboxes?tenant=acme%20corp&limit=1000"), 200, page1.dump());
  api.on("GET", url("/v1/mailboxes?tenant=acme%20corp&limit=1000&after=rep1%40acme.example"), 200,
         page2.dump());
  auto o = run({"mailboxes", "--tenant", "acme corp"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(api.requests.size(), 2u);
  EXPECT_EQ(o.out, *renderMailboxTable(Json::parse(fixture("mailboxes.json"))["mailboxes"], {}));
  o = run({"mailboxes", "--tenant", "acme corp", "--json"});
  EXPECT_EQ(Json::parse(o.out), Json::parse(fixture("mailboxes.json")));
}

TEST_F(Ctl, MailboxesStopsOnARepeatedCursor) {
  Json page = Json::parse(fixture("mailboxes.json"));
  page["next"] = "same";
  api.on("GET", url("/v1/mailboxes?limit=1000"), 200, page.dump());
  api.on("GET", url("/v1/mailboxes?limit=1000&after=same"), 200, page.dump());
  auto o = run({"mailboxes"});
  EXPECT_EQ(o.code, 1);
  EXPECT_NE(o.err.find("the same cursor twice"), std::string::npos);
}

TEST_F(Ctl, MailboxPercentEncodesTheAddress) {
  api.on("GET", url("/v1/mailboxes/rep1%40acme.example"), 200, fixture("mailbox.json"));
  auto o = run({"mailbox", "rep1@acme.example"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(o.out, *renderMailbox(Json::parse(fixture("mailbox.json"))));
  api.on("GET", url("/v1/mailboxes/a%2F..%2Fb%40x"), 404,
         errorBody("mailbox.not_found", "no mailbox a/../b@x", "list them with mailboxes"));
  EXPECT_EQ(run({"mailbox", "a/../b@x"}).code, 4);
}

TEST_F(Ctl, FailoverSendsTheReasonAsJson) {
  api.on("POST", url("/v1/mailboxes/rep1%40acme.example/failover"), 200, fixture("mailbox.json"));
  auto o = run({"failover", "rep1@acme.example", "--reason", "planned \"maintenance\""});
  EXPECT_EQ(o.code, 0) << o.err;
  ASSERT_EQ(api.requests.size(), 1u);
  EXPECT_EQ(api.requests[0].content_type, "application/json");
  EXPECT_EQ(Json::parse(api.requests[0].body), Json({{"reason", "planned \"maintenance\""}}));
  EXPECT_NE(o.out.find("address:            rep1@acme.example\n"), std::string::npos);
  o = run({"failover", "rep1@acme.example"});
  EXPECT_EQ(api.requests.back().body, "");
  api.on("POST", url("/v1/mailboxes/rep1%40acme.example/failover"), 409,
         errorBody("route.no_fallback", "tenant acme has no fallback relay", "add one"));
  EXPECT_EQ(run({"failover", "rep1@acme.example"}).code, 5);
}

TEST_F(Ctl, FailbackPostsWithoutABody) {
  api.on("POST", url("/v1/mailboxes/rep1%40acme.example/failback"), 200, fixture("mailbox.json"));
  auto o = run({"failback", "rep1@acme.example"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(api.requests[0].method, "POST");
  EXPECT_EQ(api.requests[0].body, "");
  api.on("POST", url("/v1/mailboxes/rep1%40acme.example/failback"), 403,
         errorBody("auth.forbidden", "token crm may not POST", "use an operator token"));
  EXPECT_EQ(run({"failback", "rep1@acme.example"}).code, 3);
}

// --- queue ----------------------------------------------------------------------------------

TEST_F(Ctl, QueueShowsFiftyByDefaultFollowingNextUntilThen) {
  api.on("GET", url("/v1/queue?limit=50"), 200, fixture("queue_page1.json"));
  api.on("GET", url("/v1/queue?limit=48&after=cursor-2"), 200, fixture("queue_page2.json"));
  auto o = run({"queue"});
  EXPECT_EQ(o.code, 0) << o.err;
  Json all = Json::parse(fixture("queue_page1.json"));
  all["messages"].push_back(Json::parse(fixture("queue_page2.json"))["messages"][0]);
  EXPECT_EQ(o.out, *renderQueueTable(all["messages"], {}) + *renderQueueCounts(all["counts"]));
  EXPECT_EQ(o.err, "");
}

TEST_F(Ctl, QueueSaysWhenMoreMessagesMatchThanShown) {
  api.on("GET", url("/v1/queue?limit=2"), 200, fixture("queue_page1.json"));
  auto o = run({"queue", "--limit", "2"});
  EXPECT_EQ(o.code, 0) << o.err;
  const Json page = Json::parse(fixture("queue_page1.json"));
  EXPECT_EQ(o.out, *renderQueueTable(page["messages"], {}) + *renderQueueCounts(page["counts"]));
  EXPECT_EQ(o.err, "mailgatectl: more messages match; show them with --all or a larger --limit\n");
  EXPECT_EQ(api.requests.size(), 1u);
  o = run({"queue", "--limit", "2", "--json"});
  EXPECT_EQ(Json::parse(o.out)["next"], "cursor-2");
}

TEST_F(Ctl, QueuePassesEveryFilterEncoded) {
  api.on("GET",
         url("/v1/queue?state=deferred&tenant=acme&mailbox=rep1%40acme.example&route="
             "microsoft365&limit=7"),
         200, fixture("queue_page2.json"));
  auto o = run({"queue", "--state", "deferred", "--tenant", "acme", "--mailbox",
                "rep1@acme.example", "--route", "microsoft365", "--limit", "7"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(o.err, "");
}

TEST_F(Ctl, QueueAllFollowsNextToTheEnd) {
  api.on("GET", url("/v1/queue?limit=500"), 200, fixture("queue_page1.json"));
  api.on("GET", url("/v1/queue?limit=500&after=cursor-2"), 200, fixture("queue_page2.json"));
  auto o = run({"queue", "--all"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(api.requests.size(), 2u);
  EXPECT_NE(o.out.find("01JEXAMPLE3"), std::string::npos);
  EXPECT_NE(o.out.find("01JEXAMPLE1"), std::string::npos);
  EXPECT_EQ(o.err, "");

  o = run({"queue", "--all", "--json"});
  const Json doc = Json::parse(o.out);
  ASSERT_EQ(doc["messages"].size(), 3u);
  EXPECT_EQ(doc["messages"][2]["id"], "01JEXAMPLE1");
  EXPECT_TRUE(doc["next"].is_null());
  EXPECT_EQ(doc["counts"]["sent"], 1);
}

TEST_F(Ctl, QueueLimitAsksForWhatIsStillMissing) {
  api.on("GET", url("/v1/queue?limit=3"), 200, fixture("queue_page1.json"));
  api.on("GET", url("/v1/queue?limit=1&after=cursor-2"), 200, fixture("queue_page2.json"));
  auto o = run({"queue", "--limit", "3", "--json"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(Json::parse(o.out)["messages"].size(), 3u);

  // Past 500, pages of 500 until the limit.
  Json full = Json::parse(fixture("queue_page1.json"));
  const Json one = full["messages"][0];
  full["messages"] = Json::array();
  for (int i = 0; i < 500; ++i) {
    full["messages"].push_back(one);
  }
  api.on("GET", url("/v1/queue?limit=500"), 200, full.dump());
  api.on("GET", url("/v1/queue?limit=498&after=cursor-2"), 200, fixture("queue_page2.json"));
  o = run({"queue", "--limit", "998", "--json"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(Json::parse(o.out)["messages"].size(), 501u);
}

TEST_F(Ctl, QueueWithASinglePageJsonIsTheAnswerAsIs) {
  api.on("GET", url("/v1/queue?limit=50"), 200, fixture("queue_page2.json"));
  auto o = run({"queue", "--json"});
  EXPECT_EQ(Json::parse(o.out), Json::parse(fixture("queue_page2.json")));
}

// --- messages -------------------------------------------------------------------------------

TEST_F(Ctl, MessageShowsTheMessage) {
  api.on("GET", url("/v1/messages/01JEXAMPLE"), 200, fixture("message.json"));
  auto o = run({"message", "01JEXAMPLE"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(o.out, *renderMessage(Json::parse(fixture("message.json")), {}));
}

TEST_F(Ctl, RetryAndCancelUseTheirMethodsAndMapConflicts) {
  api.on("POST", url("/v1/messages/01JEXAMPLE/retry"), 200, fixture("message.json"));
  api.on("DELETE", url("/v1/messages/01JEXAMPLE"), 200, fixture("message.json"));
  EXPECT_EQ(run({"retry", "01JEXAMPLE"}).code, 0);
  EXPECT_EQ(run({"cancel", "01JEXAMPLE"}).code, 0);
  ASSERT_EQ(api.requests.size(), 2u);
  EXPECT_EQ(api.requests[0].method, "POST");
  EXPECT_EQ(api.requests[1].method, "DELETE");
  EXPECT_EQ(api.requests[1].body, "");

  api.on("POST", url("/v1/messages/01JEXAMPLE/retry"), 409,
         errorBody("message.in_flight", "an attempt is under way", "try again when it has ended"));
  auto o = run({"retry", "01JEXAMPLE"});
  EXPECT_EQ(o.code, 5);
  EXPECT_EQ(o.err, "mailgatectl: an attempt is under way (message.in_flight)\n"
                   "hint: try again when it has ended\n");
  api.on("DELETE", url("/v1/messages/01JEXAMPLE"), 409,
         errorBody("store.state", "the message is already sent", "nothing to cancel"));
  EXPECT_EQ(run({"cancel", "01JEXAMPLE"}).code, 5);
  api.on("DELETE", url("/v1/messages/gone"), 404,
         errorBody("message.not_found", "no message with id gone", "see queue"));
  EXPECT_EQ(run({"cancel", "gone"}).code, 4);
}

TEST_F(Ctl, ServerTextIsMadeSafeForTheTerminal) {
  api.on("GET", url("/v1/messages/x"), 500,
         errorBody("store.io", "disk \x1b]0;owned\x07 failed\nnext", "call\r\nsomeone"));
  auto o = run({"message", "x"});
  EXPECT_EQ(o.code, 1);
  EXPECT_EQ(o.err, "mailgatectl: disk ?]0;owned? failed next (store.io)\nhint: call  someone\n");
}

TEST_F(Ctl, TablesFollowTheTerminalWidth) {
  render.line_width = 100;
  api.on("GET", url("/v1/queue?limit=50"), 200, fixture("queue_page2.json"));
  auto o = run({"queue"});
  const Json page = Json::parse(fixture("queue_page2.json"));
  EXPECT_EQ(o.out, *renderQueueTable(page["messages"], {.line_width = 100}) +
                       *renderQueueCounts(page["counts"]));
}

} // namespace
} // namespace mailgate::ctl

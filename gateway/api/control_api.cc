#include "gateway/api/control_api.h"

#include "config/values.h"
#include "gateway/api/control_state.h"
#include "gateway/api/openapi_document.h"
#include "gateway/auth/api_auth.h"

#include <charconv>
#include <chrono>
#include <fmt/format.h>

namespace mailgate::api {

namespace {

int64_t wallClockMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

} // namespace

// --- Call ---------------------------------------------------------------------------------

const std::string& Call::param(std::string_view name) const {
  static const std::string kNone;
  for (const auto& [n, v] : params) {
    if (n == name) {
      return v;
    }
  }
  return kNone;
}

const std::string* Call::q(std::string_view name) const {
  for (const auto& [n, v] : query) {
    if (n == name) {
      return &v;
    }
  }
  return nullptr;
}

std::string Call::actor() const {
  return token != nullptr ? "API token " + token->name : std::string("the API");
}

// --- State --------------------------------------------------------------------------------

ControlApi::State::State(ControlApiDeps d, std::shared_ptr<const config::Config> c)
    : deps(std::move(d)), config(std::move(c)) {}

void ControlApi::State::addRoutes() {
  const auto add = [this](std::string method, std::string pattern, bool auth, Permission p,
                          Handler h) {
    routes.add(Route<Handler>{std::move(method), std::move(pattern), auth, p, h});
  };
  add("GET", "/healthz", false, Permission::kRead, &State::getHealth);
  add("GET", "/readyz", false, Permission::kRead, &State::getReady);
  add("GET", "/metrics", true, Permission::kRead, &State::getMetrics);
  add("GET", "/v1/openapi.json", false, Permission::kRead, &State::getOpenApi);
  add("GET", "/v1/status", true, Permission::kRead, &State::getStatus);
  add("GET", "/v1/tenants", true, Permission::kRead, &State::getTenants);
  add("GET", "/v1/mailboxes", true, Permission::kRead, &State::getMailboxes);
  add("GET", "/v1/mailboxes/{address}", true, Permission::kRead, &State::getMailbox);
  add("POST", "/v1/mailboxes/{address}/failover", true, Permission::kOperate, &State::postFailover);
  add("POST", "/v1/mailboxes/{address}/failback", true, Permission::kOperate, &State::postFailback);
  add("POST", "/v1/mailboxes/{address}/connect", true, Permission::kConnect, &State::postConnect);
  add("POST", "/v1/mailboxes/{address}/disconnect", true, Permission::kConnect,
      &State::postDisconnect);
  add("POST", "/v1/messages", true, Permission::kSubmit, &State::postMessage);
  add("GET", "/v1/messages/{id}", true, Permission::kRead, &State::getMessage);
  add("POST", "/v1/messages/{id}/retry", true, Permission::kOperate, &State::postRetry);
  add("DELETE", "/v1/messages/{id}", true, Permission::kOperate, &State::deleteMessage);
  add("GET", "/v1/queue", true, Permission::kRead, &State::getQueue);
  add("POST", "/v1/config/reload", true, Permission::kOperate, &State::postReload);
  add("GET", "/v1/events", true, Permission::kRead, &State::getEvents);
}

void ControlApi::State::handle(const HttpExchangePtr& ex) {
  auto call = std::make_shared<Call>();
  call->ex = ex;
  call->directory = directory;
  call->config = directory->config;
  call->now_ms = wallClockMs();
  const HttpRequest& req = ex->request();
  auto match = routes.find(req.method, req.path);
  if (match.route == nullptr) {
    if (match.bad_escape) {
      replyError(call, 400, "request.bad_path", "the path has a malformed percent escape",
                 "escape '%' as %25 and use two hex digits after each '%'");
    } else if (!match.allowed.empty()) {
      std::string allow;
      for (const auto& m : match.allowed) {
        allow += allow.empty() ? m : ", " + m;
      }
      HttpResponse r = jsonError(405, "api.method_not_allowed",
                                 fmt::format("{} is not served on {}", req.method, req.path),
                                 fmt::format("use {}", allow));
      r.headers.emplace_back("allow", allow);
      reply(call, std::move(r));
    } else {
      replyError(call, 404, "api.not_found", fmt::format("no endpoint at {}", req.path),
                 "GET /v1/openapi.json lists every endpoint");
    }
    return;
  }
  call->params = std::move(match.params);
  auto query = parseQuery(req.query);
  if (!query) {
    replyError(call, 400, "request.bad_query", "the query string has a malformed percent escape",
               "escape '%' as %25 and use two hex digits after each '%'");
    return;
  }
  call->query = std::move(*query);
  const Route<Handler>& route = *match.route;
  if (route.needs_auth) {
    const std::string* authorization = req.header("authorization");
    auto token = authenticate(call->config->listeners.api.tokens,
                              authorization != nullptr ? *authorization : std::string_view());
    if (!token) {
      HttpResponse r =
          jsonError(401, token.error().code, token.error().message, token.error().hint);
      r.headers.emplace_back("www-authenticate", "Bearer realm=\"mailgate\"");
      reply(call, std::move(r));
      return;
    }
    call->token = *token;
    if (!permits(**token, route.permission)) {
      replyError(call, 403, "auth.forbidden",
                 fmt::format("token {} may not {} {}", (*token)->name, req.method, route.pattern),
                 "use a token whose roles grant this (docs/api.md, roles)");
      return;
    }
  }
  (this->*route.handler)(call);
}

void ControlApi::State::reply(const CallPtr& call, HttpResponse response) {
  countStatus(response.status);
  call->ex->respond(std::move(response));
}

void ControlApi::State::replyJson(const CallPtr& call, int status, const nlohmann::json& body,
                                  HttpHeaders extra) {
  replyJsonText(call, status, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                std::move(extra));
}

void ControlApi::State::replyJsonText(const CallPtr& call, int status, std::string json,
                                      HttpHeaders extra) {
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.cache_control = "no-store";
  r.headers = std::move(extra);
  r.body = std::move(json);
  reply(call, std::move(r));
}

void ControlApi::State::replyJsonShared(const CallPtr& call, int status,
                                        std::shared_ptr<const std::string> json) {
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.cache_control = "no-store";
  r.shared_body = std::move(json);
  reply(call, std::move(r));
}

void ControlApi::State::replyError(const CallPtr& call, int status, std::string_view code,
                                   std::string_view message, std::string_view hint) {
  reply(call, jsonError(status, code, message, hint));
}

void ControlApi::State::replyFailure(const CallPtr& call, const Error& e) {
  int status = 500;
  HttpHeaders extra;
  if (e.code == "store.not_found" || e.code == "route.unknown_mailbox") {
    status = 404;
  } else if (e.code == "store.state" || e.code == "message.in_flight" ||
             e.code == "route.no_fallback") {
    status = 409;
  } else if (e.code == "store.full" || e.code == "store.busy" || e.code == "store.closed" ||
             e.code == "api.draining") {
    status = 503;
  } else if (e.code == "store.idempotency_mismatch") {
    status = 422;
  }
  HttpResponse r = jsonError(status, e.code, e.message, e.hint);
  if (status == 503) {
    r.headers.emplace_back("retry-after", "30");
  }
  if (status >= 500) {
    log->warn("{} {}: {}", call->req().method, call->req().path, e.describe());
  }
  reply(call, std::move(r));
}

bool ControlApi::State::canSee(const Call& call, std::string_view tenant) const {
  if (call.token == nullptr) {
    return false;
  }
  if (tenant.empty()) {
    return call.token->allTenants();
  }
  return inScope(*call.token, tenant);
}

std::optional<int64_t> ControlApi::State::intParam(const CallPtr& call, std::string_view name,
                                                   int64_t def, int64_t min, int64_t max) {
  const std::string* v = call->q(name);
  if (v == nullptr || v->empty()) {
    return def;
  }
  int64_t n = 0;
  const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (ec != std::errc() || end != v->data() + v->size() || n < min || n > max) {
    replyError(call, 400, "request.bad_parameter",
               fmt::format("{} must be an integer from {} to {}", name, min, max),
               fmt::format("send {}={}", name, def));
    return std::nullopt;
  }
  return n;
}

// --- Handlers --------------------------------------------------------------------------------

void ControlApi::State::getHealth(const CallPtr& call) {
  replyJsonText(call, 200, R"({"status":"ok"})");
}

void ControlApi::State::getReady(const CallPtr& call) {
  if (draining) {
    replyJsonText(call, 503, R"({"status":"draining"})", {{"retry-after", "5"}});
    return;
  }
  replyJsonText(call, 200, R"({"status":"ready"})");
}

void ControlApi::State::getOpenApi(const CallPtr& call) {
  HttpResponse r;
  r.content_type = "application/json";
  r.body = std::string(openApiDocument());
  reply(call, std::move(r));
}

void ControlApi::State::getStatus(const CallPtr& call) {
  const GatewayFigures f = deps.figures ? deps.figures() : GatewayFigures{};
  size_t tenants = 0;
  size_t mailboxes = 0;
  for (const auto& t : call->config->tenants) {
    if (canSee(*call, t.id)) {
      ++tenants;
      mailboxes += t.mailboxes.size();
    }
  }
  nlohmann::json body{
      {"node", call->config->node.id},
      {"version", deps.version},
      {"ready", !draining},
      {"started", timeJson(f.started_ms)},
      {"uptime_seconds", f.started_ms > 0 ? (call->now_ms - f.started_ms) / 1000 : 0},
      {"tenants", tenants},
      {"mailboxes", mailboxes},
      {"connections", {{"smtp", f.smtp_sessions}, {"api", f.api.open}}},
  };
  // Within the token's scope: a token of one tenant counts that tenant's mail only.
  replyWithCounts(call, std::move(body), "queue");
}

void ControlApi::State::replyWithCounts(const CallPtr& call, nlohmann::json body, std::string key) {
  deps.store->countsFor(
      call->token->tenants,
      then<relay::QueueCounts>(call, [call, body = std::move(body), key = std::move(key)](
                                         State& self, relay::QueueCounts c) mutable {
        body[key] = countsJson(c);
        self.replyJson(call, 200, body);
      }));
}

void ControlApi::State::getTenants(const CallPtr& call) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& t : call->config->tenants) {
    if (canSee(*call, t.id)) {
      list.push_back(tenantJson(t));
    }
  }
  replyJson(call, 200, {{"tenants", std::move(list)}});
}

void ControlApi::State::postReload(const CallPtr& call) {
  if (!call->token->allTenants()) {
    replyError(call, 403, "auth.forbidden",
               "a reload changes every tenant; this token is scoped to some",
               "use a token with tenants: [\"*\"]");
    return;
  }
  if (!deps.reload) {
    replyError(call, 503, "api.unavailable", "reload is not available here",
               "send SIGHUP to mailgated");
    return;
  }
  auto report = deps.reload();
  if (!report) {
    nlohmann::json details = nlohmann::json::array();
    std::string_view rest = report.error().message;
    while (!rest.empty()) {
      const auto nl = rest.find('\n');
      const std::string_view line = rest.substr(0, nl);
      if (!line.empty()) {
        details.push_back(line);
      }
      rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    }
    nlohmann::json body{
        {"error",
         {{"code", report.error().code},
          {"message", details.size() == 1 ? details[0].get<std::string>()
                                          : fmt::format("{} errors", details.size())},
          {"hint", report.error().hint},
          {"details", details}}}};
    replyJson(call, 422, body);
    return;
  }
  replyJson(call, 200,
            {{"status", "reloaded"},
             {"file", report->file},
             {"applied", report->applied},
             {"restart_required", report->restart_required}});
}

// --- ControlApi -----------------------------------------------------------------------------

ControlApi::ControlApi(ControlApiDeps deps, std::shared_ptr<const config::Config> config)
    : state_(std::make_shared<State>(std::move(deps), std::move(config))) {
  state_->addRoutes();
  state_->rebuildDirectory();
  state_->feed = std::make_unique<EventFeed>(*state_->deps.loop, *state_->deps.store);
}

ControlApi::~ControlApi() = default;

AsyncHttpHandler ControlApi::handler() {
  std::weak_ptr<State> weak = state_;
  return [weak](const HttpExchangePtr& ex) {
    if (auto s = weak.lock()) {
      s->handle(ex);
    } else {
      ex->respond(jsonError(503, "api.draining", "mailgated is stopping", "try again shortly"));
    }
  };
}

std::function<std::size_t(const HttpRequest& head)> ControlApi::bodyLimit() const {
  std::weak_ptr<State> weak = state_;
  return [weak](const HttpRequest& head) -> std::size_t {
    auto self = weak.lock();
    if (!self || head.method != "POST" || head.path != "/v1/messages") {
      return kSmallBodyBytes;
    }
    const std::string* authorization = head.header("authorization");
    const auto& config = *self->config;
    auto token = authenticate(config.listeners.api.tokens,
                              authorization != nullptr ? *authorization : std::string_view());
    if (!token || !permits(**token, Permission::kSubmit)) {
      return kSmallBodyBytes; // answered 401/403 once the (small) body is in
    }
    // JSON carries attachments in base64 (4 bytes per 3) and escapes; a raw message is as is.
    return static_cast<std::size_t>(config.listeners.smtp.max_message_bytes) / 3 * 4 +
           kSmallBodyBytes;
  };
}

void ControlApi::reconfigure(std::shared_ptr<const config::Config> config) {
  state_->config = std::move(config);
  state_->rebuildDirectory();
}

void ControlApi::drain() {
  state_->draining = true;
  state_->feed->drain();
}

std::vector<std::pair<std::string, std::string>> ControlApi::routeList() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& r : state_->routes.routes()) {
    out.emplace_back(r.method, r.pattern);
  }
  return out;
}

std::vector<std::pair<int, uint64_t>> ControlApi::requestsByStatus() const {
  return {state_->by_status.begin(), state_->by_status.end()};
}

} // namespace mailgate::api

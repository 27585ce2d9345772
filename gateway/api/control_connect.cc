// POST /v1/mailboxes/{address}/connect and .../disconnect (role connector): a CRM connects a
// rep's mailbox with its credentials, or disconnects it. The daemon stores the connection
// durably (gateway/store/connection_tables.h) before it answers, then applies it. docs/api.md,
// "Connecting a mailbox".
#include "config/values.h"
#include "gateway/api/control_state.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace mailgate::api {

namespace {

constexpr std::size_t kMaxSecretBytes = 16 * 1024;

bool goodSecret(const std::string& s) {
  return !s.empty() && s.size() <= kMaxSecretBytes &&
         s.find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos;
}

} // namespace

void ControlApi::State::postConnect(const CallPtr& call) {
  relay::MailboxStatus s;
  if (!mailboxVisible(call, call->param("address"), &s)) {
    return;
  }
  const auto body = nlohmann::json::parse(call->req().body, nullptr, false);
  const auto bad = [&](std::string_view message) {
    replyError(call, 400, "request.invalid_json", message,
               "send {\"auth\": {\"method\": \"app_password\", \"password\": \"...\"}} or "
               "{\"auth\": {\"method\": \"oauth2\", \"refresh_token\": \"...\"}}");
  };
  if (!body.is_object() || !body.contains("auth") || !body["auth"].is_object()) {
    bad("the body must be a JSON object with an auth object");
    return;
  }
  const auto& auth = body["auth"];
  const auto method = auth.value("method", std::string());
  ConnectRequest req;
  req.address = s.route.address;
  req.tenant = s.route.tenant;
  req.actor = call->actor();
  if (method == "app_password") {
    if (!auth.contains("password") || !auth["password"].is_string() ||
        !goodSecret(auth["password"].get<std::string>())) {
      bad("auth.password must be a string of 1 to 16384 bytes without line breaks");
      return;
    }
    req.secret = Secret(auth["password"].get<std::string>());
  } else if (method == "oauth2") {
    if (!auth.contains("refresh_token") || !auth["refresh_token"].is_string() ||
        !goodSecret(auth["refresh_token"].get<std::string>())) {
      bad("auth.refresh_token must be a string of 1 to 16384 bytes without line breaks");
      return;
    }
    req.secret = Secret(auth["refresh_token"].get<std::string>());
  } else {
    bad("auth.method must be app_password or oauth2");
    return;
  }
  req.method = method;
  const config::Mailbox* mb = nullptr;
  if (const auto* t = call->config->findTenant(s.route.tenant); t != nullptr) {
    for (const auto& m : t->mailboxes) {
      if (config::lowerAscii(m.address) == config::lowerAscii(s.route.address)) {
        mb = &m;
      }
    }
  }
  if (mb != nullptr && mb->access == config::Access::kGraph && method != "oauth2") {
    replyError(call, 422, "mailbox.auth_unsupported",
               "a mailbox with access: graph connects with OAuth2 only",
               "send auth.method oauth2 with a refresh token");
    return;
  }
  runConnect(call, std::move(req));
}

void ControlApi::State::postDisconnect(const CallPtr& call) {
  relay::MailboxStatus s;
  if (!mailboxVisible(call, call->param("address"), &s)) {
    return;
  }
  ConnectRequest req;
  req.address = s.route.address;
  req.tenant = s.route.tenant;
  req.connect = false;
  req.actor = call->actor();
  if (const auto* keep = call->q("keep_synced"); keep != nullptr) {
    if (*keep == "true") {
      req.keep_synced = true;
    } else if (*keep == "false") {
      req.keep_synced = false;
    } else {
      replyError(call, 400, "request.bad_parameter", "keep_synced must be true or false",
                 "omit it to keep what was synced (the default)");
      return;
    }
  }
  runConnect(call, std::move(req));
}

void ControlApi::State::runConnect(const CallPtr& call, ConnectRequest request) {
  if (!deps.connect) {
    replyError(call, 503, "api.unavailable", "connecting mailboxes is not available here",
               "run mailgated with its store");
    return;
  }
  std::weak_ptr<State> weak = weak_from_this();
  const bool connect = request.connect;
  const bool keep = request.keep_synced;
  const std::string address = request.address;
  const std::string method = request.method;
  const std::string actor = request.actor;
  deps.connect(std::move(request), [weak, call, connect, keep, address, method,
                                    actor](Result<ConnectOutcome> r) {
    auto self = weak.lock();
    if (!self) {
      return;
    }
    if (!r) {
      self->replyFailure(call, r.error());
      return;
    }
    self->log->info("{} {} mailbox {}{}", actor, connect ? "connected" : "disconnected", address,
                    connect ? fmt::format(" ({})", method)
                            : fmt::format(" (keep_synced={})", keep ? "true" : "false"));
    nlohmann::json body{{"address", address}, {"state", connect ? "connected" : "disconnected"}};
    if (connect) {
      body["method"] = method;
    } else {
      body["keep_synced"] = keep;
      body["synced_messages_deleted"] = r->synced_messages_deleted;
    }
    self->replyJson(call, 200, body);
  });
}

} // namespace mailgate::api

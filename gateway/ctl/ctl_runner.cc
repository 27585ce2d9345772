#include "gateway/ctl/ctl_runner.h"

#include "gateway/ctl/exit_codes.h"
#include "gateway/ctl/text_table.h"
#include "gateway/ctl/token_source.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fmt/format.h>
#include <memory>

namespace mailgate::ctl {

namespace {

constexpr int64_t kQueuePageMax = 500;
constexpr int64_t kQueueDefaultLimit = 50;
constexpr std::string_view kMailboxPage = "1000";
constexpr std::size_t kBodyExcerpt = 200;

std::string dumpJson(const Json& j) {
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

// Parses a body as JSON; nullopt when it is not.
std::optional<Json> parseJson(std::string_view body) {
  Json j = Json::parse(body, nullptr, false);
  if (j.is_discarded()) {
    return std::nullopt;
  }
  return j;
}

std::string errorField(const Json& j, const char* key) {
  const auto e = j.find("error");
  if (e == j.end() || !e->is_object()) {
    return {};
  }
  const auto v = e->find(key);
  return v != e->end() && v->is_string() ? v->get<std::string>() : std::string();
}

void printError(std::ostream& err, std::string_view message, std::string_view code,
                std::string_view hint) {
  err << "mailgatectl: " << sanitizeCell(message);
  if (!code.empty()) {
    err << " (" << sanitizeCell(code) << ")";
  }
  err << "\n";
  if (!hint.empty()) {
    err << "hint: " << sanitizeCell(hint) << "\n";
  }
}

bool readable(const std::string& path) {
  using FilePtr = std::unique_ptr<std::FILE, int (*)(std::FILE*)>;
  const FilePtr f(std::fopen(path.c_str(), "rb"), &std::fclose);
  return f != nullptr;
}

} // namespace

int runCtl(std::span<const std::string> args, const CtlEnvironment& env) {
  std::ostream& out = *env.out;
  std::ostream& err = *env.err;
  auto parsed = parseArgs(args);
  if (!parsed) {
    printError(err, parsed.error().message, {}, parsed.error().hint);
    return kExitUsage;
  }
  if (parsed->command == Command::kHelp) {
    out << helpText();
    return kExitOk;
  }
  if (parsed->command == Command::kVersion) {
    out << "mailgatectl " << env.version << "\n";
    return kExitOk;
  }
  const auto fromEnv = [&](const char* name) -> std::optional<std::string> {
    auto v = env.getenv ? env.getenv(name) : std::nullopt;
    if (v && v->empty()) {
      return std::nullopt;
    }
    return v;
  };

  ClientSettings settings;
  const std::string url =
      parsed->url ? *parsed->url : fromEnv("MAILGATE_URL").value_or(std::string(kDefaultUrl));
  auto base = normalizeBaseUrl(url);
  if (!base) {
    const std::string from = parsed->url ? "--url" : "MAILGATE_URL";
    printError(err, fmt::format("{} {}: {}", from, url, base.error().message), {},
               base.error().hint);
    return kExitUsage;
  }
  settings.base_url = *base;
  settings.timeout = parsed->timeout;
  settings.http2_prior_knowledge = parsed->http2;
  if (parsed->cacert) {
    if (!readable(*parsed->cacert)) {
      printError(err,
                 fmt::format("cannot read --cacert {}: {}", *parsed->cacert, std::strerror(errno)),
                 {}, "give a PEM file holding the CA certificate that signed the API's");
      return kExitUsage;
    }
    settings.cacert = *parsed->cacert;
  }

  auto token = loadToken(
      TokenSources{parsed->token_file, fromEnv("MAILGATE_TOKEN"), fromEnv("MAILGATE_TOKEN_FILE")});
  if (!token) {
    printError(err, token.error().message, {}, token.error().hint);
    return exitCodeForError(token.error());
  }
  auto client = env.make_client(settings);
  if (!client) {
    printError(err, client.error().message, client.error().code, client.error().hint);
    return exitCodeForError(client.error());
  }
  CtlRunner runner(**client, std::move(*token), settings.base_url, std::move(*parsed), out, err,
                   env.render);
  return runner.run();
}

CtlRunner::CtlRunner(ApiClient& client, Secret token, std::string base_url, CtlArgs args,
                     std::ostream& out, std::ostream& err, RenderOptions render)
    : client_(client), token_(std::move(token)), base_url_(std::move(base_url)),
      args_(std::move(args)), out_(out), err_(err), render_(render) {}

int CtlRunner::run() {
  switch (args_.command) {
  case Command::kStatus:
    return status();
  case Command::kMailboxes:
    return mailboxes();
  case Command::kMailbox:
    return mailbox("", "GET");
  case Command::kFailover:
    return mailbox("/failover", "POST");
  case Command::kFailback:
    return mailbox("/failback", "POST");
  case Command::kQueue:
    return queue();
  case Command::kMessage:
    return message("", "GET");
  case Command::kRetry:
    return message("/retry", "POST");
  case Command::kCancel:
    return message("", "DELETE");
  case Command::kReload:
    return reload();
  case Command::kHelp:
  case Command::kVersion:
    break;
  }
  return kExitUsage;
}

std::expected<Json, int> CtlRunner::exchange(const std::string& method, const std::string& path,
                                             const QueryParams& query, std::string body,
                                             bool reload) {
  ApiRequest req;
  req.method = method;
  req.url = apiUrl(base_url_, path, query);
  if (!body.empty()) {
    req.content_type = "application/json";
    req.body = std::move(body);
  }
  req.bearer = token_;
  auto answer = client_.send(req);
  if (!answer) {
    const Error& e = answer.error();
    const std::string message = e.code.starts_with("net.")
                                    ? fmt::format("cannot reach {}: {}", base_url_, e.message)
                                    : fmt::format("{} {}: {}", method, path, e.message);
    printError(err_, message, e.code, e.hint);
    return std::unexpected(exitCodeForError(e));
  }
  auto json = parseJson(answer->body);
  const int code = exitCodeForStatus(answer->status, reload);
  if (code == kExitOk) {
    if (!json) {
      printError(
          err_,
          fmt::format("the answer to {} {} (HTTP {}) is not JSON", method, path, answer->status),
          "ctl.answer", "is --url the mailgate control API?");
      return std::unexpected(kExitApiError);
    }
    return std::move(*json);
  }

  if (!json || !json->is_object() || !json->contains("error")) {
    std::string excerpt = sanitizeCell(answer->body.substr(0, kBodyExcerpt));
    printError(err_,
               fmt::format("{} {} answered HTTP {} without a mailgate error{}{}", method, path,
                           answer->status, excerpt.empty() ? "" : ": ", excerpt),
               {}, "is --url the mailgate control API?");
    return std::unexpected(code);
  }
  if (args_.json) {
    out_ << dumpJson(*json);
  }
  const std::string err_code = errorField(*json, "code");
  err_ << "mailgatectl: " << sanitizeCell(errorField(*json, "message"));
  if (!err_code.empty()) {
    err_ << " (" << sanitizeCell(err_code) << ")";
  }
  err_ << "\n";
  const Json& error = (*json)["error"];
  if (const auto d = error.find("details"); d != error.end() && d->is_array()) {
    for (const auto& line : *d) {
      err_ << "  " << sanitizeCell(textOf(&line)) << "\n";
    }
  }
  if (const std::string hint = errorField(*json, "hint"); !hint.empty()) {
    err_ << "hint: " << sanitizeCell(hint) << "\n";
  }
  if (answer->status == 404 && err_code == "api.not_found") {
    err_ << "note: this mailgated does not serve " << method << " " << sanitizeCell(path)
         << "; it may be older than mailgatectl\n";
  }
  return std::unexpected(code);
}

int CtlRunner::show(const Json& answer, const Result<std::string>& rendered) {
  if (args_.json) {
    out_ << dumpJson(answer);
    return kExitOk;
  }
  if (!rendered) {
    return reportLocal(rendered.error());
  }
  out_ << *rendered;
  return kExitOk;
}

int CtlRunner::reportLocal(const Error& e) {
  printError(err_, e.message, e.code, e.hint);
  return exitCodeForError(e);
}

int CtlRunner::status() {
  auto st = exchange("GET", "/v1/status");
  if (!st) {
    return st.error();
  }
  const int shown = show(*st, renderStatus(*st));
  if (shown != kExitOk) {
    return shown;
  }
  const auto ready = st->find("ready");
  if (ready == st->end() || !ready->is_boolean()) {
    return reportLocal(Error("ctl.answer", "the status answer says nothing about readiness",
                             "check that mailgatectl and mailgated are the same version"));
  }
  return ready->get<bool>() ? kExitOk : kExitNotReady;
}

int CtlRunner::mailboxes() {
  Json first;
  Json all = Json::array();
  Json next = nullptr;
  std::string after;
  while (true) {
    auto page = exchange(
        "GET", "/v1/mailboxes",
        {{"tenant", args_.tenant}, {"limit", std::string(kMailboxPage)}, {"after", after}});
    if (!page) {
      return page.error();
    }
    const auto list = page->find("mailboxes");
    if (!page->is_object() || list == page->end() || !list->is_array()) {
      return reportLocal(Error("ctl.answer", "the answer to GET /v1/mailboxes has no mailboxes",
                               "check that mailgatectl and mailgated are the same version"));
    }
    for (auto& m : *list) {
      all.push_back(std::move(m));
    }
    const auto n = page->find("next");
    next = n != page->end() && n->is_string() ? *n : Json(nullptr);
    if (first.is_null()) {
      first = std::move(*page);
    }
    if (!next.is_string()) {
      break;
    }
    if (next.get<std::string>() == after) {
      return reportLocal(Error("ctl.answer", "GET /v1/mailboxes returned the same cursor twice",
                               "report this; --json shows the answers"));
    }
    after = next.get<std::string>();
  }
  first["mailboxes"] = std::move(all);
  if (first.contains("next")) {
    first["next"] = nullptr;
  }
  return show(first, renderMailboxTable(first["mailboxes"], render_));
}

int CtlRunner::mailbox(const std::string& suffix, const std::string& method) {
  std::string body;
  if (args_.reason) {
    body = Json{{"reason", *args_.reason}}.dump(-1, ' ', false,
                                                nlohmann::json::error_handler_t::replace);
  }
  auto m = exchange(method, "/v1/mailboxes/" + percentEncode(args_.target) + suffix, {},
                    std::move(body));
  if (!m) {
    return m.error();
  }
  return show(*m, renderMailbox(*m));
}

int CtlRunner::queue() {
  const int64_t want = args_.all ? -1 : args_.limit.value_or(kQueueDefaultLimit);
  Json first;
  Json all = Json::array();
  Json next = nullptr;
  Json counts = nullptr;
  std::string after;
  while (true) {
    const int64_t have = static_cast<int64_t>(all.size());
    const int64_t page_size = want < 0 ? kQueuePageMax : std::min(kQueuePageMax, want - have);
    auto page = exchange("GET", "/v1/queue",
                         {{"state", args_.state},
                          {"tenant", args_.tenant},
                          {"mailbox", args_.mailbox},
                          {"route", args_.route},
                          {"limit", std::to_string(page_size)},
                          {"after", after}});
    if (!page) {
      return page.error();
    }
    const auto list = page->is_object() ? page->find("messages") : page->end();
    if (list == page->end() || !list->is_array()) {
      return reportLocal(Error("ctl.answer", "the answer to GET /v1/queue has no messages",
                               "check that mailgatectl and mailgated are the same version"));
    }
    for (auto& m : *list) {
      if (want >= 0 && static_cast<int64_t>(all.size()) >= want) {
        break;
      }
      all.push_back(std::move(m));
    }
    const auto n = page->find("next");
    next = n != page->end() && n->is_string() ? *n : Json(nullptr);
    if (const auto c = page->find("counts"); c != page->end()) {
      counts = *c;
    }
    if (first.is_null()) {
      first = std::move(*page);
    }
    const bool enough = want >= 0 && static_cast<int64_t>(all.size()) >= want;
    if (!next.is_string() || enough) {
      break;
    }
    if (next.get<std::string>() == after) {
      return reportLocal(Error("ctl.answer", "GET /v1/queue returned the same cursor twice",
                               "report this; --json shows the answers"));
    }
    after = next.get<std::string>();
  }
  first["messages"] = std::move(all);
  first["next"] = next;
  if (!counts.is_null()) {
    first["counts"] = counts;
  }
  if (args_.json) {
    return show(first, std::string());
  }
  auto table = renderQueueTable(first["messages"], render_);
  if (!table) {
    return reportLocal(table.error());
  }
  out_ << *table;
  if (counts.is_object()) {
    if (auto line = renderQueueCounts(counts)) {
      out_ << *line;
    }
  }
  if (next.is_string()) {
    err_ << "mailgatectl: more messages match; show them with --all or a larger --limit\n";
  }
  return kExitOk;
}

int CtlRunner::message(const std::string& suffix, const std::string& method) {
  auto m = exchange(method, "/v1/messages/" + percentEncode(args_.target) + suffix);
  if (!m) {
    return m.error();
  }
  return show(*m, renderMessage(*m, render_));
}

int CtlRunner::reload() {
  auto r = exchange("POST", "/v1/config/reload", {}, {}, true);
  if (!r) {
    return r.error();
  }
  return show(*r, renderReload(*r));
}

} // namespace mailgate::ctl

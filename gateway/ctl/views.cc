#include "gateway/ctl/views.h"

#include "gateway/ctl/text_table.h"

#include <algorithm>
#include <array>
#include <fmt/format.h>
#include <initializer_list>

namespace mailgate::ctl {

namespace {

const Json* at(const Json* j, std::initializer_list<const char*> path) {
  for (const char* key : path) {
    if (j == nullptr || !j->is_object()) {
      return nullptr;
    }
    const auto it = j->find(key);
    if (it == j->end()) {
      return nullptr;
    }
    j = &*it;
  }
  return j;
}

const Json* at(const Json& j, std::initializer_list<const char*> path) {
  return at(&j, path);
}

bool present(const Json* v) {
  return v != nullptr && !v->is_null();
}

std::string text(const Json& j, std::initializer_list<const char*> path) {
  return textOf(at(j, path));
}

std::unexpected<Error> notUnderstood(std::string_view what) {
  return fail("ctl.answer", fmt::format("the answer is not {} as docs/api.md describes", what),
              "check that mailgatectl and mailgated are the same version; --json shows the answer");
}

// "9950/10000" or "9950/-".
std::string usedOverLimit(const Json& mailbox) {
  const Json* r = at(mailbox, {"ledger", "recipients"});
  if (!present(r)) {
    return "-";
  }
  return text(*r, {"used"}) + "/" + text(*r, {"limit"});
}

// "queued 1, sending 0, deferred 2, sent 3, failed 0": the states in their life order, then any
// others the server adds.
std::string countsLine(const Json& counts) {
  static constexpr std::array<const char*, 5> kOrder{"queued", "sending", "deferred", "sent",
                                                     "failed"};
  std::string out;
  const auto add = [&out](std::string_view state, const Json& n) {
    out += fmt::format("{}{} {}", out.empty() ? "" : ", ", state, textOf(&n));
  };
  for (const char* state : kOrder) {
    if (const auto it = counts.find(state); it != counts.end()) {
      add(state, *it);
    }
  }
  for (const auto& [state, n] : counts.items()) {
    if (std::ranges::find(kOrder, state) == kOrder.end()) {
      add(state, n);
    }
  }
  return out;
}

// The mailbox's IMAP pool (docs/api.md, "imap"): one line for the state and sessions, then only
// what is there to say. A server without the object shows "imap: -"; a pool that is off, one line.
void addImap(KeyValueBlock& b, const Json& m) {
  const Json* imap = at(m, {"imap"});
  if (!present(imap) || !imap->is_object()) {
    b.add("imap", "-");
    return;
  }
  const std::string state = text(*imap, {"state"});
  if (state == "off") {
    b.add("imap", "off");
    return;
  }
  b.add("imap",
        fmt::format("{}: {} of {} sessions open ({} idle, {} busy), {} connecting, "
                    "{} jobs waiting",
                    state, text(*imap, {"sessions", "open"}), text(*imap, {"max_sessions"}),
                    text(*imap, {"sessions", "idle"}), text(*imap, {"sessions", "busy"}),
                    text(*imap, {"sessions", "connecting"}), text(*imap, {"jobs_waiting"})));
  b.add("imap sent folder", text(*imap, {"sent_folder"}));
  if (present(at(*imap, {"connected_since"}))) {
    b.add("imap connected", "since " + text(*imap, {"connected_since"}));
  }
  if (present(at(*imap, {"last_error"}))) {
    const std::string code = text(*imap, {"last_error", "code"});
    const std::string message = text(*imap, {"last_error", "message"});
    b.add("imap last error", code == "-" || code.empty() ? message : code + ": " + message);
    b.add("imap error hint", text(*imap, {"last_error", "hint"}));
    b.add("imap error time", text(*imap, {"last_error", "at"}));
  }
  if (present(at(*imap, {"next_retry_at"}))) {
    b.add("imap next retry", text(*imap, {"next_retry_at"}));
  }
  b.add("imap logins",
        fmt::format("{} ok, {} failed", text(*imap, {"logins"}), text(*imap, {"failures"})));
}

} // namespace

std::string textOf(const Json* v) {
  if (!present(v)) {
    return "-";
  }
  if (v->is_string()) {
    return v->get<std::string>();
  }
  if (v->is_boolean()) {
    return v->get<bool>() ? "yes" : "no";
  }
  if (v->is_array()) {
    if (v->empty()) {
      return "-";
    }
    std::string out;
    for (const auto& item : *v) {
      if (!out.empty()) {
        out += ", ";
      }
      out += textOf(&item);
    }
    return out;
  }
  return v->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string formatUptime(int64_t seconds) {
  if (seconds <= 0) {
    return "0s";
  }
  const int64_t d = seconds / 86400;
  const int64_t h = seconds / 3600 % 24;
  const int64_t m = seconds / 60 % 60;
  const int64_t s = seconds % 60;
  std::string out;
  const auto part = [&](int64_t v, char unit) {
    if (v > 0 || !out.empty()) {
      out += fmt::format("{}{}{}", out.empty() ? "" : " ", v, unit);
    }
  };
  part(d, 'd');
  part(h, 'h');
  part(m, 'm');
  part(s, 's');
  return out;
}

Result<std::string> renderStatus(const Json& st) {
  if (!st.is_object()) {
    return notUnderstood("a status object");
  }
  KeyValueBlock b;
  b.add("node", text(st, {"node"}));
  b.add("version", text(st, {"version"}));
  const Json* ready = at(st, {"ready"});
  b.add("ready", ready != nullptr && ready->is_boolean()
                     ? (ready->get<bool>() ? "yes" : "no (draining)")
                     : textOf(ready));
  b.add("started", text(st, {"started"}));
  const Json* up = at(st, {"uptime_seconds"});
  b.add("uptime",
        up != nullptr && up->is_number_integer() ? formatUptime(up->get<int64_t>()) : textOf(up));
  b.add("tenants", text(st, {"tenants"}));
  b.add("mailboxes", text(st, {"mailboxes"}));
  b.add("connections", fmt::format("smtp {}, api {}", text(st, {"connections", "smtp"}),
                                   text(st, {"connections", "api"})));
  const Json* queue = at(st, {"queue"});
  if (present(queue) && queue->is_object()) {
    b.add("queue", countsLine(*queue));
  } else {
    b.add("queue", "-");
  }
  return b.render();
}

Result<std::string> renderMailboxTable(const Json& mailboxes, const RenderOptions& o) {
  if (!mailboxes.is_array()) {
    return notUnderstood("a list of mailboxes");
  }
  if (mailboxes.empty()) {
    return std::string("no mailboxes\n");
  }
  TextTable t(
      {"ADDRESS", "TENANT", "ROUTE", "IMAP", "USED/LIMIT", "REMAINING", "FREES_AT", "LAST_ERROR"});
  for (const auto& m : mailboxes) {
    t.addRow({text(m, {"address"}), text(m, {"tenant"}), text(m, {"route", "state"}),
              text(m, {"imap", "state"}), usedOverLimit(m),
              text(m, {"ledger", "recipients", "remaining"}),
              text(m, {"ledger", "recipients", "frees_at"}), text(m, {"last_error", "message"})});
  }
  return t.render(o.line_width);
}

Result<std::string> renderMailbox(const Json& m) {
  if (!m.is_object()) {
    return notUnderstood("a mailbox object");
  }
  KeyValueBlock b;
  b.add("address", text(m, {"address"}));
  b.add("tenant", text(m, {"tenant"}));
  b.add("aliases", text(m, {"aliases"}));
  b.add("access", text(m, {"access"}));
  b.add("auth", text(m, {"auth"}));
  b.add("sync", text(m, {"sync"}));

  std::string route = text(m, {"route", "state"});
  const Json* failed_over = at(m, {"route", "failed_over"});
  if (failed_over != nullptr && failed_over->is_boolean() && failed_over->get<bool>()) {
    route += " (failed over to the fallback relays)";
  }
  b.add("route", route);
  for (const auto& [key, label] :
       {std::pair{"until", "route until"}, std::pair{"reason", "route reason"},
        std::pair{"hint", "route hint"}}) {
    if (present(at(m, {"route", key}))) {
      b.add(label, text(m, {"route", key}));
    }
  }
  if (present(at(m, {"route", "manual"}))) {
    b.add("manual failover", fmt::format("by {} since {}", text(m, {"route", "manual", "actor"}),
                                         text(m, {"route", "manual", "since"})));
  }

  if (const Json* r = at(m, {"ledger", "recipients"}); present(r)) {
    b.add("recipients",
          fmt::format("{} used of {}, {} remaining, window {}s", text(*r, {"used"}),
                      text(*r, {"limit"}), text(*r, {"remaining"}), text(*r, {"window_seconds"})));
    b.add("frees at", text(*r, {"frees_at"}));
  }
  if (present(at(m, {"ledger"}))) {
    const Json* reserve = at(m, {"ledger", "reserve_percent"});
    b.add("personal reserve", present(reserve) ? textOf(reserve) + "%" : "-");
    b.add("messages/minute", text(m, {"ledger", "messages_per_minute"}));
    b.add("recipients/message", text(m, {"ledger", "recipients_per_message"}));
    b.add("exhausted until", text(m, {"ledger", "exhausted_until"}));
  }
  if (present(at(m, {"smtp"}))) {
    b.add("smtp", fmt::format("{} connections ({} busy, max {}), {} waiting, {} in flight",
                              text(m, {"smtp", "connections"}), text(m, {"smtp", "busy"}),
                              text(m, {"smtp", "max_connections"}), text(m, {"smtp", "waiting"}),
                              text(m, {"smtp", "in_flight"})));
  }
  addImap(b, m);
  if (present(at(m, {"last_error"}))) {
    b.add("last error", text(m, {"last_error", "message"}));
    b.add("last error hint", text(m, {"last_error", "hint"}));
    b.add("last error time", text(m, {"last_error", "time"}));
  } else {
    b.add("last error", "none");
  }
  return b.render();
}

Result<std::string> renderQueueTable(const Json& messages, const RenderOptions& o) {
  if (!messages.is_array()) {
    return notUnderstood("a list of messages");
  }
  if (messages.empty()) {
    return std::string("no messages\n");
  }
  TextTable t({"ID", "STATE", "TENANT", "MAILBOX", "ROUTE", "ATTEMPTS", "CREATED", "LAST_REPLY"});
  for (const auto& m : messages) {
    t.addRow({text(m, {"id"}), text(m, {"state"}), text(m, {"tenant"}), text(m, {"mailbox"}),
              text(m, {"route"}), text(m, {"attempts"}), text(m, {"created"}),
              text(m, {"last_reply"})});
  }
  return t.render(o.line_width);
}

Result<std::string> renderQueueCounts(const Json& counts) {
  if (!counts.is_object()) {
    return notUnderstood("queue counts");
  }
  return sanitizeCell("counts in scope: " + countsLine(counts)) + "\n";
}

Result<std::string> renderMessage(const Json& m, const RenderOptions& o) {
  if (!m.is_object()) {
    return notUnderstood("a message object");
  }
  KeyValueBlock b;
  b.add("id", text(m, {"id"}));
  b.add("message-id", text(m, {"message_id"}));
  b.add("state", text(m, {"state"}));
  b.add("tenant", text(m, {"tenant"}));
  b.add("mailbox", text(m, {"mailbox"}));
  b.add("from", text(m, {"from"}));
  b.add("priority", text(m, {"priority"}));
  std::string route = text(m, {"route"});
  const Json* pinned = at(m, {"route_pinned"});
  if (pinned != nullptr && pinned->is_boolean() && pinned->get<bool>()) {
    route += " (pinned)";
  }
  b.add("route", route);
  b.add("attempts", text(m, {"attempts"}));
  const Json* size = at(m, {"size"});
  b.add("size", present(size) ? textOf(size) + " bytes" : "-");
  b.add("created", text(m, {"created"}));
  b.add("next attempt", text(m, {"next_attempt"}));
  b.add("expires", text(m, {"expires"}));
  b.add("last reply", text(m, {"last_reply"}));
  b.add("writeback", text(m, {"writeback"}));
  std::string out = b.render();

  const Json* rcpts = at(m, {"recipients"});
  if (present(rcpts) && rcpts->is_array() && !rcpts->empty()) {
    TextTable t({"RECIPIENT", "STATUS", "LAST_REPLY"});
    for (const auto& r : *rcpts) {
      t.addRow({text(r, {"address"}), text(r, {"status"}), text(r, {"last_reply"})});
    }
    out += "\n" + t.render(o.line_width);
  }
  const Json* events = at(m, {"events"});
  if (present(events) && events->is_array() && !events->empty()) {
    TextTable t({"SEQ", "TIME", "EVENT", "DATA"});
    for (const auto& e : *events) {
      t.addRow({text(e, {"seq"}), text(e, {"time"}), text(e, {"type"}), text(e, {"data"})});
    }
    out += "\n" + t.render(o.line_width);
  }
  return out;
}

Result<std::string> renderReload(const Json& r) {
  if (!r.is_object()) {
    return notUnderstood("a reload report");
  }
  KeyValueBlock b;
  b.add("status", text(r, {"status"}));
  b.add("file", text(r, {"file"}));
  const auto list = [&](const char* key) {
    const Json* v = at(r, {key});
    return present(v) && v->is_array() && v->empty() ? std::string("nothing") : textOf(v);
  };
  b.add("applied", list("applied"));
  b.add("restart required", list("restart_required"));
  return b.render();
}

} // namespace mailgate::ctl

// GET /v1/events: the event stream (gateway/api/event_feed.h).
#include "config/values.h"
#include "gateway/api/control_state.h"

#include <charconv>

namespace mailgate::api {

void ControlApi::State::getEvents(const CallPtr& call) {
  EventFilter filter;
  filter.scope = call->token->tenants;
  if (const auto* types = call->q("types"); types != nullptr) {
    std::string_view rest = *types;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      const std::string_view t = rest.substr(0, comma);
      if (!t.empty()) {
        filter.types.emplace_back(t);
      }
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
  }
  if (const auto* tenant = call->q("tenant"); tenant != nullptr) {
    if (!canSee(*call, *tenant)) {
      // As for mailboxes: a tenant outside the scope does not exist for this token.
      replyError(call, 404, "tenant.not_found", "no such tenant",
                 "GET /v1/tenants lists the tenants this token may see");
      return;
    }
    filter.tenant = *tenant;
  }
  if (const auto* mailbox = call->q("mailbox"); mailbox != nullptr) {
    filter.mailbox = config::lowerAscii(*mailbox);
  }
  // Where to start: ?after=SEQ, else the Last-Event-ID a reconnecting EventSource sends, else
  // now (only new events).
  int64_t after = -1;
  const std::string* from = call->q("after");
  if (from == nullptr) {
    from = call->req().header("last-event-id");
  }
  if (from != nullptr && !from->empty()) {
    const auto [end, ec] = std::from_chars(from->data(), from->data() + from->size(), after);
    if (ec != std::errc() || end != from->data() + from->size() || after < 0) {
      replyError(call, 400, "request.bad_parameter", "after must be an event seq (0 or more)",
                 "send after=0 to replay every stored event, or leave it out for new ones");
      return;
    }
  }
  bool follow = true;
  if (const auto* f = call->q("follow"); f != nullptr) {
    if (*f != "true" && *f != "false") {
      replyError(call, 400, "request.bad_parameter", "follow must be true or false",
                 "follow=false ends the stream once it has caught up");
      return;
    }
    follow = *f == "true";
  }
  countStatus(200);
  feed->subscribe(call->ex, std::move(filter), after, follow);
}

} // namespace mailgate::api

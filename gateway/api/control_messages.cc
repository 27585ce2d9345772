// /v1/messages and /v1/queue: one message and its history, the queue listing, retry and cancel.
#include "config/values.h"
#include "gateway/api/control_state.h"
#include "gateway/store/message_queries.h"
#include "relay/delivery_engine.h"

#include <fmt/format.h>

namespace mailgate::api {

namespace {

// The most events GET /v1/messages/{id} shows (the oldest; a message rarely has more than a few
// dozen: queued, one sending/deferred pair per attempt, the end).
constexpr std::size_t kMessageEvents = 100;

std::optional<relay::MessageState> parseState(std::string_view s) {
  using relay::MessageState;
  for (const auto st : {MessageState::kQueued, MessageState::kSending, MessageState::kDeferred,
                        MessageState::kSent, MessageState::kFailed}) {
    if (relay::toString(st) == s) {
      return st;
    }
  }
  return std::nullopt;
}

} // namespace

void ControlApi::State::replyNoMessage(const CallPtr& call, const std::string& id) {
  replyError(call, 404, "message.not_found", fmt::format("no message with id {}", id),
             "ids are returned by POST /v1/messages and listed by GET /v1/queue");
}

void ControlApi::State::withMessage(const CallPtr& call,
                                    std::function<void(State&, relay::QueuedMessage)> then) {
  std::weak_ptr<State> weak = weak_from_this();
  const std::string id = call->param("id");
  deps.store->get(id, [weak, call, id, then = std::move(then)](Result<relay::QueuedMessage> m) {
    auto self = weak.lock();
    if (!self) {
      return;
    }
    // A message of a tenant the token may not see is answered as if it did not exist.
    if (!m || !self->canSee(*call, m->tenant)) {
      if (!m && m.error().code != "store.not_found") {
        self->replyFailure(call, m.error());
        return;
      }
      self->replyNoMessage(call, id);
      return;
    }
    then(*self, std::move(*m));
  });
}

void ControlApi::State::getMessage(const CallPtr& call) {
  withMessage(call, [call](State& self, relay::QueuedMessage m) {
    nlohmann::json body = messageJson(m);
    self.deps.store->listMessageEvents(
        m.id, kMessageEvents,
        self.then<std::vector<store::StoredEvent>>(
            call, [call, body = std::move(body)](State& self,
                                                 std::vector<store::StoredEvent> evs) mutable {
              nlohmann::json list = nlohmann::json::array();
              for (const auto& e : evs) {
                list.push_back(eventJson(e));
              }
              body["events"] = std::move(list);
              self.replyJson(call, 200, body);
            }));
  });
}

void ControlApi::State::getQueue(const CallPtr& call) {
  store::MessageQuery query;
  query.tenants = call->token->tenants;
  if (const auto* s = call->q("state"); s != nullptr && !s->empty()) {
    query.state = parseState(*s);
    if (!query.state) {
      replyError(call, 400, "request.bad_parameter",
                 fmt::format("state must be queued, sending, deferred, sent or failed, not {}", *s),
                 "leave state out to list every state");
      return;
    }
  }
  if (const auto* t = call->q("tenant"); t != nullptr && !t->empty()) {
    if (!canSee(*call, *t)) {
      replyError(call, 404, "tenant.not_found", fmt::format("no tenant {}", *t),
                 "GET /v1/tenants lists the tenants this token may see");
      return;
    }
    query.tenant = *t;
  }
  if (const auto* m = call->q("mailbox"); m != nullptr) {
    query.mailbox = *m;
  }
  if (const auto* r = call->q("route"); r != nullptr) {
    query.route = *r;
  }
  if (const auto* a = call->q("after"); a != nullptr) {
    query.after = *a;
  }
  if (const auto* o = call->q("order"); o != nullptr && !o->empty()) {
    if (*o != "newest" && *o != "oldest") {
      replyError(call, 400, "request.bad_parameter", "order must be newest or oldest",
                 "newest (the default) lists the latest messages first");
      return;
    }
    query.newest_first = *o == "newest";
  }
  const auto limit = intParam(call, "limit", 50, 1, static_cast<int64_t>(store::kMaxPageLimit));
  if (!limit) {
    return;
  }
  query.limit = static_cast<std::size_t>(*limit);
  std::weak_ptr<State> weak = weak_from_this();
  std::vector<std::string> scope = call->token->tenants;
  deps.store->listMessages(std::move(query), [weak, call, scope = std::move(scope)](
                                                 Result<store::MessagePage> page) mutable {
    auto self = weak.lock();
    if (!self) {
      return;
    }
    if (!page) {
      if (page.error().code == "store.invalid") {
        self->replyError(call, 400, "request.too_broad", page.error().message, page.error().hint);
      } else {
        self->replyFailure(call, page.error());
      }
      return;
    }
    nlohmann::json list = nlohmann::json::array();
    for (const auto& m : page->messages) {
      list.push_back(messageJson(m));
    }
    nlohmann::json body{
        {"messages", std::move(list)},
        {"next", page->next.empty() ? nlohmann::json(nullptr) : nlohmann::json(page->next)}};
    self->replyWithCounts(call, std::move(body), "counts");
  });
}

// Retry and cancel: the message must exist and be visible before the engine acts on it.
void ControlApi::State::actOnMessage(const CallPtr& call, bool cancel) {
  withMessage(call, [call, cancel](State& self, relay::QueuedMessage m) {
    auto done =
        self.then<relay::QueuedMessage>(call, [call, cancel](State& self, relay::QueuedMessage r) {
          self.log->info("{} {} message {}", call->actor(), cancel ? "cancelled" : "retried", r.id);
          self.replyJson(call, 200, messageJson(r));
        });
    if (cancel) {
      self.deps.delivery->cancel(m.id, call->actor(), std::move(done));
    } else {
      self.deps.delivery->retryNow(m.id, call->actor(), std::move(done));
    }
  });
}

void ControlApi::State::postRetry(const CallPtr& call) {
  actOnMessage(call, false);
}

void ControlApi::State::deleteMessage(const CallPtr& call) {
  actOnMessage(call, true);
}

} // namespace mailgate::api

// /v1/messages: one message, its history.
#include "gateway/api/control_state.h"

#include <fmt/format.h>

namespace mailgate::api {

void ControlApi::State::getMessage(const CallPtr& call) {
  std::weak_ptr<State> weak = weak_from_this();
  const std::string id = call->param("id");
  deps.store->get(id, [weak, call, id](Result<relay::QueuedMessage> m) {
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
      self->replyError(call, 404, "message.not_found", fmt::format("no message with id {}", id),
                       "ids are returned by POST /v1/messages and listed by GET /v1/queue");
      return;
    }
    self->replyJson(call, 200, messageJson(*m));
  });
}

} // namespace mailgate::api

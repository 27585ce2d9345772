// What one webhook request is, as pure functions over an outbox event: the HTTP request (body,
// signature and headers), whether an answer counts as delivered, and how a URL shows in logs.
#pragma once

#include "config/config.h"
#include "gateway/store/stored_event.h"
#include "net/http_client.h"

#include <chrono>
#include <string>
#include <string_view>

namespace mailgate::webhooks {

inline constexpr std::string_view kEventHeader = "X-Mailgate-Event";
inline constexpr std::string_view kEventIdHeader = "X-Mailgate-Event-Id";

// POST hook.url with the event's JSON envelope (StoredEvent::toJson(), byte for byte what
// GET /v1/events sends as data), Content-Type application/json, X-Mailgate-Signature over that
// body, X-Mailgate-Event (type), X-Mailgate-Event-Id (the stable id), User-Agent
// mailgate/<version>. `timeout` bounds the whole request.
[[nodiscard]] net::HttpClientRequest buildRequest(const config::Webhook& hook,
                                                  const store::StoredEvent& event,
                                                  std::string_view version,
                                                  std::chrono::milliseconds timeout);

// Any 2xx acknowledges an event; everything else is retried.
[[nodiscard]] constexpr bool acknowledges(long status) {
  return status >= 200 && status <= 299;
}

// `url` fit for logs: scheme, host, port and path only (no user:password@, no ?query, no
// #fragment), since either may carry a token.
[[nodiscard]] std::string redactUrl(std::string_view url);

} // namespace mailgate::webhooks

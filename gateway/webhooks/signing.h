// What a webhook request carries beyond its JSON body: the signature header receivers check, and
// which configured endpoints an event goes to. Pure functions; the delivery (libcurl on the loop,
// retries, the outbox cursor) builds on them.
#pragma once

#include "base/secret.h"
#include "config/config.h"

#include <string>
#include <string_view>

namespace mailgate::webhooks {

// The header every webhook request carries.
inline constexpr std::string_view kSignatureHeader = "X-Mailgate-Signature";

// "sha256=" + the lower-case hex HMAC-SHA256 of `body` under `key` (the webhook's secret), the
// value of kSignatureHeader. A receiver recomputes it over the raw body it received and compares
// in constant time (signatureMatches).
[[nodiscard]] std::string signature(const Secret& key, std::string_view body);

// Whether `header` (as received, "sha256=<hex>", hex in any case) is the signature of `body`.
// Constant time in the length of the expected value.
[[nodiscard]] bool signatureMatches(const Secret& key, std::string_view body,
                                    std::string_view header);

// Whether `hook` takes an event of `type` ("message.sent") for `tenant` ("" for events of no
// tenant): its events[] and tenants[] each hold "*" alone or names compared exactly. An event
// without a tenant goes only to hooks of every tenant ("*").
[[nodiscard]] bool wants(const config::Webhook& hook, std::string_view type,
                         std::string_view tenant);

} // namespace mailgate::webhooks

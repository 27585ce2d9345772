#include "gateway/webhooks/webhook_request.h"

#include "gateway/webhooks/signing.h"

#include <algorithm>

namespace mailgate::webhooks {

net::HttpClientRequest buildRequest(const config::Webhook& hook, const store::StoredEvent& event,
                                    std::string_view version, std::chrono::milliseconds timeout) {
  net::HttpClientRequest r;
  r.method = "POST";
  r.url = hook.url;
  r.body = event.toJson();
  r.timeout = timeout;
  r.connect_timeout = std::min(timeout, std::chrono::milliseconds(5000));
  r.headers = {
      {"Content-Type", "application/json"},
      {std::string(kSignatureHeader), signature(hook.secret, r.body)},
      {std::string(kEventHeader), event.type},
      {std::string(kEventIdHeader), event.id},
      {"User-Agent", "mailgate/" + std::string(version)},
  };
  return r;
}

std::string redactUrl(std::string_view url) {
  std::string_view scheme;
  if (auto p = url.find("://"); p != std::string_view::npos) {
    scheme = url.substr(0, p + 3);
    url.remove_prefix(p + 3);
  }
  if (auto p = url.find_first_of("?#"); p != std::string_view::npos) {
    url = url.substr(0, p);
  }
  const auto path_at = url.find('/');
  std::string_view authority = url.substr(0, path_at);
  const std::string_view path =
      path_at == std::string_view::npos ? std::string_view() : url.substr(path_at);
  if (auto at = authority.rfind('@'); at != std::string_view::npos) {
    authority.remove_prefix(at + 1);
  }
  return std::string(scheme) + std::string(authority) + std::string(path);
}

} // namespace mailgate::webhooks

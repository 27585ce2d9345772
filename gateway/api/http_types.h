// Plain request/response values shared by the HTTP/1.1 and HTTP/2 server code and the handlers.
// No I/O here: a handler is a function of a request, testable without sockets.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mailgate::api {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;  // "GET", "POST", ... as sent (HTTP methods are case-sensitive)
  std::string path;    // request target without the query, e.g. "/v1/queue"
  std::string query;   // raw query after '?', not decoded; empty when absent
  HttpHeaders headers; // names lower-case, in arrival order; repeated names stay repeated
  std::string body;

  // First value of header `name` (give it lower-case), or nullptr.
  [[nodiscard]] const std::string* header(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  // Written first, when set: the program's own constant values (text with static storage, such
  // as "application/json"), so that the common answers need no header allocation at all.
  std::string_view content_type;
  std::string_view cache_control;
  // Names in any case (HTTP/2 lower-cases them). The session sets content-length, connection
  // and transfer-encoding itself and drops fields holding CR, LF or NUL.
  HttpHeaders headers;
  std::string body;
  // When set, the body instead of `body`: shared with whoever made it (an answer kept for reuse)
  // and sent from there, never copied.
  std::shared_ptr<const std::string> shared_body;

  [[nodiscard]] std::string_view bodyText() const {
    return shared_body ? std::string_view(*shared_body) : std::string_view(body);
  }
};

// A handler that answers at once: called on the session's thread from inside receive(); must
// not throw (an exception becomes a 500). fromSync() (http_exchange.h) makes it asynchronous.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// The project's error shape: {"error":{"code":...,"message":...,"hint":...}} as
// application/json. Invalid UTF-8 in the texts is replaced, never thrown on.
HttpResponse jsonError(int status, std::string_view code, std::string_view message,
                       std::string_view hint = {});

// "OK", "Not Found", ...; "Unknown" for codes without a registered phrase.
std::string_view reasonPhrase(int status);

// True when a header name or value can be written out without smuggling a new line or field.
bool isSafeHeaderText(std::string_view text);

} // namespace mailgate::api

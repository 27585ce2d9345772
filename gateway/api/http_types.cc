#include "gateway/api/http_types.h"

#include <nlohmann/json.hpp>

namespace mailgate::api {

const std::string* HttpRequest::header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) {
      return &v;
    }
  }
  return nullptr;
}

HttpResponse jsonError(int status, std::string_view code, std::string_view message,
                       std::string_view hint) {
  nlohmann::json j;
  j["error"]["code"] = code;
  j["error"]["message"] = message;
  j["error"]["hint"] = hint;
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

std::string_view reasonPhrase(int status) {
  switch (status) {
  case 100:
    return "Continue";
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 202:
    return "Accepted";
  case 204:
    return "No Content";
  case 301:
    return "Moved Permanently";
  case 304:
    return "Not Modified";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 409:
    return "Conflict";
  case 413:
    return "Content Too Large";
  case 415:
    return "Unsupported Media Type";
  case 422:
    return "Unprocessable Content";
  case 429:
    return "Too Many Requests";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 501:
    return "Not Implemented";
  case 503:
    return "Service Unavailable";
  default:
    return "Unknown";
  }
}

bool isSafeHeaderText(std::string_view text) {
  // A plain loop: find_first_of over a three-byte set costs a memchr per byte of text.
  for (const char c : text) {
    if (c == '\r' || c == '\n' || c == '\0') {
      return false;
    }
  }
  return true;
}

} // namespace mailgate::api

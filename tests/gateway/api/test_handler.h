// Shared by the HTTP tests: a handler that echoes what it was given, so that tests can check how
// the session assembled each request.
#pragma once

#include "gateway/api/http_types.h"

#include <string>

namespace mailgate::api::testing {

// Body: "METHOD path?query|body-bytes|x-test header|host header", then the request body.
// Status 200 with content-type text/plain and "x-echo: yes"; a request to /json answers with a
// jsonError(418...), /inject tries to smuggle a header.
inline HttpResponse echoHandler(const HttpRequest& r) {
  if (r.path == "/inject") {
    HttpResponse out;
    out.headers.emplace_back("x-evil", "a\r\nset-cookie: b");
    out.headers.emplace_back("Connection", "upgrade");
    out.headers.emplace_back("x-fine", "ok");
    out.body = "injected";
    return out;
  }
  const std::string* x = r.header("x-test");
  const std::string* host = r.header("host");
  HttpResponse out;
  out.headers.emplace_back("Content-Type", "text/plain");
  out.headers.emplace_back("X-Echo", "yes");
  out.body = r.method + " " + r.path + "?" + r.query + "|" + std::to_string(r.body.size()) + "|" +
             (x != nullptr ? *x : "-") + "|" + (host != nullptr ? *host : "-") + "\n" + r.body;
  return out;
}

} // namespace mailgate::api::testing

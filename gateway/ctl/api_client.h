// The HTTP transport under mailgatectl's commands, as a small interface: the commands, their
// rendering and exit codes are tested against a fake; curl_api_client.h is the real one.
#pragma once

#include "base/error.h"
#include "base/secret.h"

#include <memory>
#include <string>

namespace mailgate::ctl {

struct ApiRequest {
  std::string method; // "GET", "POST", "DELETE"
  std::string url;    // absolute, already percent-encoded (api_url.h)
  std::string body;   // sent when non-empty, with content_type
  std::string content_type;
  Secret bearer; // sent as "Authorization: Bearer ..."; never logged or printed
};

struct ApiAnswer {
  int status = 0;
  std::string content_type; // as the server sent it, possibly with parameters; may be empty
  std::string body;
};

class ApiClient {
public:
  virtual ~ApiClient() = default;

  // Sends one request and waits for the whole answer. Any HTTP status is a value; an error means
  // no answer: "net.connect", "net.tls", "net.timeout", "net.io" (the connection broke),
  // "ctl.url" (the URL cannot be used), "ctl.answer_too_large", "ctl.http" (anything else).
  // Error texts never hold the bearer token.
  virtual Result<ApiAnswer> send(const ApiRequest& request) = 0;
};

using ApiClientPtr = std::unique_ptr<ApiClient>;

} // namespace mailgate::ctl

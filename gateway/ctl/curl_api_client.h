// ApiClient over libcurl: HTTP/2 via ALPN for https URLs, HTTP/1.1 for http ones (or h2c with
// prior knowledge when asked). One easy handle, so the pages of a listing share a connection.
#pragma once

#include "gateway/ctl/api_client.h"

#include <chrono>
#include <string>

namespace mailgate::ctl {

struct CurlOptions {
  std::chrono::milliseconds timeout{10000}; // per request, connecting included
  std::string cacert;                       // PEM CA bundle for https; empty: the system's
  bool http2_prior_knowledge = false;       // http URLs: h2c without negotiation
  std::string user_agent = "mailgatectl";
};

// Errors: "ctl.http" when libcurl cannot be initialised.
Result<ApiClientPtr> makeCurlApiClient(CurlOptions options);

} // namespace mailgate::ctl

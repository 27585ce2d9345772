#include "gateway/ctl/curl_api_client.h"

#include "gateway/ctl/api_url.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <memory>

namespace mailgate::ctl {

namespace {

constexpr std::size_t kMaxAnswerBytes = 64 * 1024 * 1024;

using EasyPtr = std::unique_ptr<CURL, decltype(&curl_easy_cleanup)>;
using SlistPtr = std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)>;

struct Sink {
  std::string body;
  bool too_large = false;
};

size_t writeBody(char* data, size_t size, size_t n, void* user) {
  auto* sink = static_cast<Sink*>(user);
  const size_t bytes = size * n;
  if (sink->body.size() + bytes > kMaxAnswerBytes) {
    sink->too_large = true;
    return 0; // libcurl stops with CURLE_WRITE_ERROR
  }
  sink->body.append(data, bytes);
  return bytes;
}

// libcurl's result as one of the error codes ApiClient promises, with a hint for the operator.
Error classify(CURLcode rc, const char* detail, const CurlOptions& options, const Sink& sink) {
  std::string message = detail[0] != '\0' ? std::string(detail) : curl_easy_strerror(rc);
  switch (rc) {
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
  case CURLE_COULDNT_CONNECT:
    return {"net.connect", message,
            "is mailgated running, and is --url (or MAILGATE_URL) its listeners.api.address?"};
  case CURLE_OPERATION_TIMEDOUT:
    return {"net.timeout", message,
            fmt::format("no answer within {} s; raise --timeout if the gateway is busy",
                        static_cast<double>(options.timeout.count()) / 1000)};
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_USE_SSL_FAILED:
    return {"net.tls", message,
            "for a private CA pass --cacert FILE; the certificate must name the host in --url"};
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
  case CURLE_WEIRD_SERVER_REPLY:
  case CURLE_UNSUPPORTED_PROTOCOL: // the URL's scheme was checked before: the peer is not HTTP
    return {"net.io", message,
            "the connection broke; is --url the control API (not the SMTP port)? "
            "without TLS, try --http2 or leave it out"};
  case CURLE_URL_MALFORMAT:
    return {"ctl.url", message, "give --url as http://HOST:PORT or https://HOST:PORT"};
  case CURLE_WRITE_ERROR:
    if (sink.too_large) {
      return {"ctl.answer_too_large", "the answer is larger than 64 MiB",
              "narrow the query (--state, --tenant, --mailbox, --limit)"};
    }
    break;
  default:
    break;
  }
  return {"ctl.http", message, "run again; if it persists, report it with the command used"};
}

class CurlApiClient final : public ApiClient {
public:
  CurlApiClient(EasyPtr easy, CurlOptions options)
      : easy_(std::move(easy)), options_(std::move(options)) {}

  Result<ApiAnswer> send(const ApiRequest& request) override {
    CURL* h = easy_.get();
    // Resetting keeps the connection cache, so the pages of a listing reuse one connection.
    curl_easy_reset(h);
    Sink sink;
    char detail[CURL_ERROR_SIZE] = {};
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, detail);
    curl_easy_setopt(h, CURLOPT_URL, request.url.c_str());
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    // The token goes to the API and nowhere else: no proxy from the environment, no redirects.
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout.count()));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.timeout.count()));
    curl_easy_setopt(h, CURLOPT_USERAGENT, options_.user_agent.c_str());
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &writeBody);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    if (isHttps(request.url)) {
      curl_easy_setopt(h, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
      curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
      curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
      if (!options_.cacert.empty()) {
        curl_easy_setopt(h, CURLOPT_CAINFO, options_.cacert.c_str());
      }
    } else {
      curl_easy_setopt(h, CURLOPT_HTTP_VERSION,
                       static_cast<long>(options_.http2_prior_knowledge
                                             ? CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
                                             : CURL_HTTP_VERSION_1_1));
    }

    SlistPtr headers(nullptr, &curl_slist_free_all);
    const auto add = [&headers](const std::string& line) {
      curl_slist* next = curl_slist_append(headers.get(), line.c_str());
      if (next != nullptr) {
        (void)headers.release();
        headers.reset(next);
      }
      return next != nullptr;
    };
    bool ok = add("Accept: application/json") && add("Expect:");
    if (!request.bearer.empty()) {
      ok = ok && add("Authorization: Bearer " + request.bearer.reveal());
    }
    if (request.method == "GET") {
      curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
      // POST with the body (possibly empty); DELETE the same way with the method renamed.
      curl_easy_setopt(h, CURLOPT_POST, 1L);
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, request.body.data());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(request.body.size()));
      ok = ok && add(request.content_type.empty() ? std::string("Content-Type:")
                                                  : "Content-Type: " + request.content_type);
      if (request.method != "POST") {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, request.method.c_str());
      }
    }
    if (!ok) {
      return fail("ctl.http", "out of memory building the request headers");
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());

    const CURLcode rc = curl_easy_perform(h);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);
    if (rc != CURLE_OK) {
      return std::unexpected(classify(rc, detail, options_, sink));
    }
    ApiAnswer answer;
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    answer.status = static_cast<int>(status);
    const char* type = nullptr;
    if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &type) == CURLE_OK && type != nullptr) {
      answer.content_type = type;
    }
    answer.body = std::move(sink.body);
    return answer;
  }

private:
  EasyPtr easy_;
  CurlOptions options_;
};

} // namespace

Result<ApiClientPtr> makeCurlApiClient(CurlOptions options) {
  // Idempotent after the first call; libcurl wants it before any other use, from one thread.
  static const CURLcode kInit = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (kInit != CURLE_OK) {
    return fail("ctl.http", std::string("cannot initialise libcurl: ") + curl_easy_strerror(kInit));
  }
  EasyPtr easy(curl_easy_init(), &curl_easy_cleanup);
  if (!easy) {
    return fail("ctl.http", "cannot initialise libcurl");
  }
  return std::make_unique<CurlApiClient>(std::move(easy), std::move(options));
}

} // namespace mailgate::ctl

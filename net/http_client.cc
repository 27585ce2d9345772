#include "net/http_client.h"

#include "net/internal/loop_impl.h"

#include <algorithm>
#include <cctype>
#include <curl/curl.h>
#include <fmt/format.h>
#include <mutex>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <string_view>
#include <unordered_map>

namespace mailgate::net {

namespace {

struct CurlEasyDeleter {
  void operator()(CURL* easy) const { curl_easy_cleanup(easy); }
};
using CurlEasyPtr = std::unique_ptr<CURL, CurlEasyDeleter>;

struct CurlSlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
using CurlSlistPtr = std::unique_ptr<curl_slist, CurlSlistDeleter>;

bool globalInit() {
  static std::once_flag once;
  static CURLcode code = CURLE_OK;
  std::call_once(once, [] { code = curl_global_init(CURL_GLOBAL_DEFAULT); });
  return code == CURLE_OK;
}

bool isTokenChar(unsigned char c) {
  if (std::isalnum(c) != 0) {
    return true;
  }
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool isToken(std::string_view s) {
  return !s.empty() &&
         std::ranges::all_of(s, [](char c) { return isTokenChar(static_cast<unsigned char>(c)); });
}

bool hasLineBreakOrNul(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

bool isUnspecified(const std::string& address) {
  return address.empty() || address == "0.0.0.0" || address == "::";
}

// The part of a URL before its path, for error messages: never the path or query, which may
// carry tokens.
std::string origin(const std::string& url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) {
    return "(unparsable URL)";
  }
  auto end = url.find_first_of("/?#", scheme_end + 3);
  std::string out = url.substr(0, end);
  // Drop any user:password@.
  const auto at = out.find('@', scheme_end + 3);
  if (at != std::string::npos) {
    out = out.substr(0, scheme_end + 3) + out.substr(at + 1);
  }
  return out;
}

Error requestError(std::string message) {
  return Error("http.request", std::move(message),
               "fix the configured URL, method or headers of this HTTP call");
}

} // namespace

// One request: the easy handle, what it sends (kept alive while curl points into it) and what
// came back. Shared by the PendingHttp (user side), the client core while curl runs it, and the
// deferred delivery of its result.
class HttpOp final : public std::enable_shared_from_this<HttpOp> {
public:
  HttpOp(Loop& loop, std::weak_ptr<HttpClientCore> core, HttpClientRequest request,
         std::function<void(Result<HttpClientResponse>)> done)
      : loop_(loop), core_(std::move(core)), request_(std::move(request)), done_(std::move(done)) {}

  // Builds the easy handle. An error here is delivered in a later turn by the caller.
  Result<void> prepare();

  CURL* easy() const { return easy_.get(); }

  // curl finished the transfer (the core already removed it from the multi handle).
  void finish(CURLcode code);
  // Delivers `result` in a later turn unless cancelled first.
  void finishLater(Result<HttpClientResponse> result);
  // The user dropped the PendingHttp.
  void cancel();
  // The client is going away: drop everything without calling done.
  void detach() {
    done_ = nullptr;
    easy_.reset();
  }

private:
  static size_t onBody(char* data, size_t size, size_t count, void* user);
  static size_t onHeader(char* data, size_t size, size_t count, void* user);
  static CURLcode onSslContext(CURL* easy, void* ssl_ctx, void* user);

  Error errorFor(CURLcode code) const;

  Loop& loop_;
  std::weak_ptr<HttpClientCore> core_;
  HttpClientRequest request_;
  std::function<void(Result<HttpClientResponse>)> done_;
  CurlEasyPtr easy_;
  CurlSlistPtr headers_;
  HttpClientResponse response_;
  bool too_large_ = false;
  bool ca_failed_ = false;
  std::string bind_interface_;
  char error_buffer_[CURL_ERROR_SIZE] = {};
};

// A socket curl asked us to watch. Heap-allocated, owned by its uv_poll_t from init until the
// close callback frees it.
struct SocketPoll {
  uv_poll_t poll{};
  HttpClientCore* core = nullptr;
  curl_socket_t fd = CURL_SOCKET_BAD;
};

// Owns the CURLM, one uv_timer_t for curl's timeouts and a uv_poll_t per socket. Registered with
// the loop while the timer is open; kept alive by self_ until the timer's close callback.
class HttpClientCore final : public LoopResource,
                             public std::enable_shared_from_this<HttpClientCore> {
public:
  explicit HttpClientCore(Loop& loop) : loop_(loop) {}
  ~HttpClientCore() override {
    if (multi_ != nullptr) {
      curl_multi_cleanup(multi_);
    }
  }
  HttpClientCore(const HttpClientCore&) = delete;
  HttpClientCore& operator=(const HttpClientCore&) = delete;

  Result<void> init() {
    Loop::Impl& impl = loop_.impl();
    if (impl.finished) {
      return fail("net.loop_stopped", "the loop has stopped: no HTTP client can run on it");
    }
    if (!globalInit()) {
      return fail("http.init", "curl_global_init failed", "libcurl could not initialise");
    }
    multi_ = curl_multi_init();
    if (multi_ == nullptr) {
      return fail("http.init", "curl_multi_init failed", "out of memory?");
    }
    curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, onSocket);
    curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, onCurlTimer);
    curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    uv_timer_init(&impl.uv, &timer_);
    timer_.data = this;
    self_ = shared_from_this();
    impl.add(this);
    open_ = true;
    return {};
  }

  [[nodiscard]] bool isOpen() const { return open_; }
  [[nodiscard]] Loop& loop() const { return loop_; }
  [[nodiscard]] size_t inFlight() const { return ops_.size(); }

  // Hands the op's easy handle to curl. False if curl refused it.
  bool add(const std::shared_ptr<HttpOp>& op) {
    if (curl_multi_add_handle(multi_, op->easy()) != CURLM_OK) {
      return false;
    }
    ops_.emplace(op->easy(), op);
    return true;
  }

  // Takes the op's easy handle back from curl (cancel). Harmless if curl no longer has it.
  void remove(HttpOp& op) {
    if (!open_ || op.easy() == nullptr) {
      return;
    }
    auto it = ops_.find(op.easy());
    if (it == ops_.end()) {
      return;
    }
    std::shared_ptr<HttpOp> keep = std::move(it->second);
    ops_.erase(it);
    curl_multi_remove_handle(multi_, op.easy());
  }

  // The user's HttpClient is gone.
  void release() { close(); }

  void shutdown() override { close(); }

private:
  void close() {
    if (!open_) {
      return;
    }
    open_ = false;
    closing_ = true;
    auto ops = std::move(ops_);
    ops_.clear();
    for (auto& [easy, op] : ops) {
      curl_multi_remove_handle(multi_, easy);
      op->detach();
    }
    // May report sockets of cached connections as removed: closing_ only lets onSocket close polls.
    curl_multi_cleanup(multi_);
    multi_ = nullptr;
    for (auto& [fd, poll] : polls_) {
      closePoll(poll);
    }
    polls_.clear();
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), onTimerClosed);
  }

  static void closePoll(SocketPoll* poll) {
    uv_poll_stop(&poll->poll);
    uv_close(reinterpret_cast<uv_handle_t*>(&poll->poll), [](uv_handle_t* handle) {
      std::unique_ptr<SocketPoll> owned(static_cast<SocketPoll*>(handle->data));
    });
  }

  static int onSocket(CURL* /*easy*/, curl_socket_t fd, int what, void* user, void* /*socketp*/) {
    auto* core = static_cast<HttpClientCore*>(user);
    auto it = core->polls_.find(fd);
    if (what == CURL_POLL_REMOVE) {
      if (it != core->polls_.end()) {
        closePoll(it->second);
        core->polls_.erase(it);
      }
      return 0;
    }
    if (core->closing_) {
      return 0;
    }
    SocketPoll* poll = nullptr;
    if (it == core->polls_.end()) {
      auto fresh = std::make_unique<SocketPoll>();
      if (uv_poll_init_socket(&core->loop_.impl().uv, &fresh->poll, fd) != 0) {
        return -1; // curl fails the transfer
      }
      fresh->core = core;
      fresh->fd = fd;
      fresh->poll.data = fresh.get();
      poll = fresh.release(); // owned by the handle until its close callback
      core->polls_.emplace(fd, poll);
    } else {
      poll = it->second;
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) {
      events |= UV_READABLE;
    }
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) {
      events |= UV_WRITABLE;
    }
    uv_poll_start(&poll->poll, events, onPoll);
    return 0;
  }

  static int onCurlTimer(CURLM* /*multi*/, long timeout_ms, void* user) {
    auto* core = static_cast<HttpClientCore*>(user);
    if (core->closing_) {
      return 0;
    }
    if (timeout_ms < 0) {
      uv_timer_stop(&core->timer_);
    } else {
      // Even a 0 ms timeout fires from the loop, never inside the curl call that set it.
      uv_timer_start(&core->timer_, onTimer, static_cast<uint64_t>(timeout_ms), 0);
    }
    return 0;
  }

  static void onPoll(uv_poll_t* handle, int status, int events) {
    auto* poll = static_cast<SocketPoll*>(handle->data);
    int flags = 0;
    if (status < 0) {
      flags = CURL_CSELECT_ERR;
    } else {
      if ((events & UV_READABLE) != 0) {
        flags |= CURL_CSELECT_IN;
      }
      if ((events & UV_WRITABLE) != 0) {
        flags |= CURL_CSELECT_OUT;
      }
    }
    // The poll may be closed by onSocket during the action: only copies are used afterwards.
    HttpClientCore* core = poll->core;
    const curl_socket_t fd = poll->fd;
    core->action(fd, flags);
  }

  static void onTimer(uv_timer_t* handle) {
    static_cast<HttpClientCore*>(handle->data)->action(CURL_SOCKET_TIMEOUT, 0);
  }

  void action(curl_socket_t fd, int flags) {
    if (!open_) {
      return;
    }
    auto keep = shared_from_this();
    int running = 0;
    curl_multi_socket_action(multi_, fd, flags, &running);
    collectDone();
  }

  void collectDone() {
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi_, &queued)) {
      if (msg->msg != CURLMSG_DONE) {
        continue;
      }
      CURL* easy = msg->easy_handle;
      const CURLcode code = msg->data.result;
      auto it = ops_.find(easy);
      if (it == ops_.end()) {
        curl_multi_remove_handle(multi_, easy);
        continue;
      }
      std::shared_ptr<HttpOp> op = std::move(it->second);
      ops_.erase(it);
      curl_multi_remove_handle(multi_, easy); // invalidates msg
      op->finish(code);
    }
  }

  static void onTimerClosed(uv_handle_t* handle) {
    auto* core = static_cast<HttpClientCore*>(handle->data);
    std::shared_ptr<HttpClientCore> keep = std::move(core->self_);
    core->loop_.impl().remove(core);
  }

  Loop& loop_;
  CURLM* multi_ = nullptr;
  uv_timer_t timer_{};
  std::shared_ptr<HttpClientCore> self_; // set while the timer is open
  std::unordered_map<CURL*, std::shared_ptr<HttpOp>> ops_;
  std::unordered_map<curl_socket_t, SocketPoll*> polls_; // each owned by its uv handle
  bool open_ = false;
  bool closing_ = false;
};

Result<void> HttpOp::prepare() {
  const std::string scheme = lower(request_.url.substr(0, request_.url.find("://")));
  if (request_.url.find("://") == std::string::npos || (scheme != "http" && scheme != "https")) {
    return std::unexpected(requestError("the URL must start with http:// or https://"));
  }
  if (hasLineBreakOrNul(request_.url) || request_.url.find(' ') != std::string::npos) {
    return std::unexpected(requestError("the URL contains spaces or line breaks"));
  }
  if (!isToken(request_.method)) {
    return std::unexpected(requestError("the method is not an HTTP token"));
  }
  bool has_expect = false;
  curl_slist* list = nullptr;
  for (const auto& [name, value] : request_.headers) {
    if (!isToken(name)) {
      return std::unexpected(requestError("a header name is not an HTTP token"));
    }
    if (hasLineBreakOrNul(value)) {
      // Names only: values may be bearer tokens.
      return std::unexpected(
          requestError(fmt::format("the value of header '{}' contains CR, LF or NUL", name)));
    }
    has_expect = has_expect || lower(name) == "expect";
    // "Name;" is curl's way of sending a header with an empty value.
    const std::string line = trim(value).empty() ? name + ";" : name + ": " + value;
    curl_slist* grown = curl_slist_append(list, line.c_str());
    if (grown == nullptr) {
      curl_slist_free_all(list);
      return std::unexpected(requestError("out of memory building headers"));
    }
    list = grown;
  }
  if (!has_expect) {
    // No "Expect: 100-continue" round trip for large bodies.
    list = curl_slist_append(list, "Expect:");
  }
  headers_.reset(list);

  easy_.reset(curl_easy_init());
  if (!easy_) {
    return fail("http.transfer", "curl_easy_init failed", "out of memory?");
  }
  CURL* e = easy_.get();
  curl_easy_setopt(e, CURLOPT_PRIVATE, this);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, error_buffer_);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_URL, request_.url.c_str());
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                   request_.http2 ? static_cast<long>(CURL_HTTP_VERSION_2TLS)
                                  : static_cast<long>(CURL_HTTP_VERSION_1_1));
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(request_.timeout.count()));
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(request_.connect_timeout.count()));
  curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
                   static_cast<curl_off_t>(request_.max_response_bytes));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers_.get());
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, onBody);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, this);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, onHeader);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, this);
  if (!request_.ca_file.empty()) {
    // Added to the system store in this request's own SSL_CTX; the shared CA cache is off so the
    // extra trust never leaks into other requests.
    curl_easy_setopt(e, CURLOPT_CA_CACHE_TIMEOUT, 0L);
    // curl's connection reuse does not know about trust added this way: keep such a connection
    // to this request alone, so a request without the extra trust never rides on it.
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, onSslContext);
    curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, this);
  }
  if (!isUnspecified(request_.bind_address)) {
    bind_interface_ = "host!" + request_.bind_address;
    curl_easy_setopt(e, CURLOPT_INTERFACE, bind_interface_.c_str());
  }
  const std::string method = request_.method;
  if (method == "GET" && request_.body.empty()) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else if (method == "HEAD") {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else {
    if (method != "POST" || !request_.body.empty()) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(request_.body.size()));
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, request_.body.data());
    }
    if (method == "POST" && request_.body.empty()) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(0));
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
    }
    if (method != "POST") {
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method.c_str());
    }
  }
  return {};
}

size_t HttpOp::onBody(char* data, size_t size, size_t count, void* user) {
  auto* op = static_cast<HttpOp*>(user);
  const size_t n = size * count;
  if (op->response_.body.size() + n > op->request_.max_response_bytes) {
    op->too_large_ = true;
    return 0; // curl stops with CURLE_WRITE_ERROR
  }
  op->response_.body.append(data, n);
  return n;
}

size_t HttpOp::onHeader(char* data, size_t size, size_t count, void* user) {
  auto* op = static_cast<HttpOp*>(user);
  const size_t n = size * count;
  const std::string_view line(data, n);
  if (line.starts_with("HTTP/")) {
    op->response_.headers.clear(); // a new response (after a 1xx): only the last one counts
    return n;
  }
  const auto colon = line.find(':');
  if (colon == std::string_view::npos) {
    return n; // the blank line ending the headers
  }
  op->response_.headers.emplace_back(lower(trim(line.substr(0, colon))),
                                     std::string(trim(line.substr(colon + 1))));
  return n;
}

CURLcode HttpOp::onSslContext(CURL* /*easy*/, void* ssl_ctx, void* user) {
  auto* op = static_cast<HttpOp*>(user);
  X509_STORE* store = SSL_CTX_get_cert_store(static_cast<SSL_CTX*>(ssl_ctx));
  if (store == nullptr || X509_STORE_load_file(store, op->request_.ca_file.c_str()) != 1) {
    op->ca_failed_ = true;
    return CURLE_SSL_CACERT_BADFILE;
  }
  return CURLE_OK;
}

Error HttpOp::errorFor(CURLcode code) const {
  const std::string where = origin(request_.url);
  std::string detail =
      error_buffer_[0] != '\0' ? std::string(error_buffer_) : std::string(curl_easy_strerror(code));
  switch (code) {
  case CURLE_UNSUPPORTED_PROTOCOL:
  case CURLE_URL_MALFORMAT:
    return requestError(fmt::format("{}: {}", where, detail));
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
    return Error("http.resolve", fmt::format("{}: {}", where, detail),
                 "check the host name in the URL and this machine's DNS");
  case CURLE_COULDNT_CONNECT:
  case CURLE_INTERFACE_FAILED:
    return Error("http.connect", fmt::format("{}: {}", where, detail),
                 "the server refused or is unreachable: check the URL's host and port, "
                 "firewalls and egress.bind_address");
  case CURLE_OPERATION_TIMEDOUT:
    return Error("http.timeout", fmt::format("{}: {}", where, detail),
                 "the server did not answer in time: check that it is up, or raise the timeout");
  case CURLE_FILESIZE_EXCEEDED:
    return Error(
        "http.too_large",
        fmt::format("{}: the response is larger than {} bytes", where, request_.max_response_bytes),
        "the server sent more than expected: check the URL");
  case CURLE_WRITE_ERROR:
    if (too_large_) {
      return Error("http.too_large",
                   fmt::format("{}: the response is larger than {} bytes", where,
                               request_.max_response_bytes),
                   "the server sent more than expected: check the URL");
    }
    break;
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_SHUTDOWN_FAILED:
  case CURLE_USE_SSL_FAILED:
    if (ca_failed_) {
      detail = fmt::format("cannot load CA file {}", request_.ca_file);
    }
    return Error("http.tls", fmt::format("{}: {}", where, detail),
                 "the TLS handshake or certificate check failed: check the server's certificate "
                 "chain and name, and ca_file if it uses a private CA");
  default:
    break;
  }
  return Error("http.transfer", fmt::format("{}: {}", where, detail),
               "the HTTP exchange failed: check the server and the network path to it");
}

void HttpOp::finish(CURLcode code) {
  if (!done_) {
    easy_.reset();
    return;
  }
  if (code != CURLE_OK) {
    Error error = errorFor(code);
    easy_.reset();
    finishLater(std::unexpected(std::move(error)));
    return;
  }
  long status = 0;
  curl_easy_getinfo(easy_.get(), CURLINFO_RESPONSE_CODE, &status);
  long version = 0;
  curl_easy_getinfo(easy_.get(), CURLINFO_HTTP_VERSION, &version);
  response_.status = status;
  switch (version) {
  case CURL_HTTP_VERSION_1_0:
    response_.http_version = "1.0";
    break;
  case CURL_HTTP_VERSION_1_1:
    response_.http_version = "1.1";
    break;
  case CURL_HTTP_VERSION_2_0:
    response_.http_version = "2";
    break;
  case CURL_HTTP_VERSION_3:
    response_.http_version = "3";
    break;
  default:
    break;
  }
  easy_.reset();
  finishLater(std::move(response_));
}

void HttpOp::finishLater(Result<HttpClientResponse> result) {
  loop_.defer([op = shared_from_this(), result = std::move(result)]() mutable {
    auto done = std::move(op->done_);
    op->done_ = nullptr;
    if (done) {
      done(std::move(result));
    }
  });
}

void HttpOp::cancel() {
  done_ = nullptr;
  if (auto core = core_.lock()) {
    core->remove(*this);
  }
  easy_.reset();
}

PendingHttp::PendingHttp(std::shared_ptr<HttpOp> op) : op_(std::move(op)) {}

PendingHttp::~PendingHttp() {
  op_->cancel();
}

Result<HttpClientPtr> HttpClient::create(Loop& loop) {
  auto core = std::make_shared<HttpClientCore>(loop);
  if (auto ok = core->init(); !ok) {
    return std::unexpected(ok.error());
  }
  return std::make_unique<HttpClient>(std::move(core));
}

HttpClient::HttpClient(std::shared_ptr<HttpClientCore> core) : core_(std::move(core)) {}

HttpClient::~HttpClient() {
  core_->release();
}

PendingHttpPtr HttpClient::send(HttpClientRequest request,
                                std::function<void(Result<HttpClientResponse>)> done) {
  auto op = std::make_shared<HttpOp>(core_->loop(), core_, std::move(request), std::move(done));
  if (core_->isOpen()) { // else the loop has stopped: nothing may complete
    if (auto ok = op->prepare(); !ok) {
      op->finishLater(std::unexpected(ok.error()));
    } else if (!core_->add(op)) {
      op->finishLater(
          std::unexpected(Error("http.transfer", "libcurl refused the request", "out of memory?")));
    }
  }
  return std::make_unique<PendingHttp>(std::move(op));
}

size_t HttpClient::inFlight() const {
  return core_->inFlight();
}

} // namespace mailgate::net

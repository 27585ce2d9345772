#include "gateway/api/http_server_session.h"

#include "gateway/api/http1_server.h"
#include "gateway/api/http2_server.h"

#include <algorithm>
#include <string_view>

namespace mailgate::api {

namespace {
constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
} // namespace

HttpServerSession::HttpServerSession(HttpServerOptions options, AsyncHttpHandler handler)
    : options_(std::move(options)), handler_(std::move(handler)) {
  if (options_.tls_h2) {
    start(Protocol::kHttp2);
  }
}

HttpServerSession::HttpServerSession(HttpServerOptions options, HttpHandler handler)
    : HttpServerSession(std::move(options), fromSync(std::move(handler))) {}

void HttpServerSession::setWakeup(std::function<void()> fn) {
  wakeup_ = std::move(fn);
  if (server_ != nullptr) {
    server_->setWakeup(wakeup_);
  }
}

bool HttpServerSession::wantsInput() const {
  return !closed_ && (server_ == nullptr || server_->wantsInput());
}

HttpServerSession::~HttpServerSession() = default;

void HttpServerSession::start(Protocol protocol) {
  protocol_ = protocol;
  if (protocol == Protocol::kHttp2) {
    server_ = std::make_unique<Http2Server>(options_, handler_);
  } else {
    server_ = std::make_unique<Http1Server>(options_, handler_);
  }
  server_->setWakeup(wakeup_);
}

void HttpServerSession::receive(std::span<const char> bytes) {
  if (wantsClose() || bytes.empty()) {
    return;
  }
  if (server_ != nullptr) {
    server_->receive(bytes);
    return;
  }
  // Undecided: keep at most the 24 preface bytes until they match or stop matching.
  const std::size_t take = std::min(bytes.size(), kPreface.size() - detect_.size());
  detect_.append(bytes.data(), take);
  if (!kPreface.starts_with(detect_)) {
    start(Protocol::kHttp1);
  } else if (detect_.size() == kPreface.size()) {
    start(Protocol::kHttp2);
  } else {
    return;
  }
  const std::string first = std::move(detect_);
  detect_.clear();
  server_->receive(std::span<const char>(first.data(), first.size()));
  if (take < bytes.size()) {
    server_->receive(bytes.subspan(take));
  }
}

std::string HttpServerSession::takeOutput() {
  std::string out;
  if (server_ != nullptr) {
    server_->process();
    server_->drainOutput(out);
  }
  return out;
}

bool HttpServerSession::wantsClose() const {
  return closed_ || (server_ != nullptr && server_->wantsClose());
}

void HttpServerSession::shutdown() {
  if (server_ == nullptr) {
    closed_ = true;
    return;
  }
  server_->shutdown();
}

} // namespace mailgate::api

#include "gateway/api/protocol_server.h"

#include <exception>

namespace mailgate::api {

namespace {
HttpResponse internalError() {
  return jsonError(500, "api.internal", "the request handler failed",
                   "see the gateway log; retrying may help");
}
} // namespace

Exchange::Exchange(ExchangeSink& sink, std::uint64_t token, HttpRequest request)
    : sink_(&sink), token_(token), request_(std::move(request)) {}

Exchange::~Exchange() {
  if (sink_ != nullptr && !answered_) {
    sink_->exchangeDropped(token_);
  } else if (sink_ != nullptr && streaming_) {
    sink_->exchangeEnd(token_); // a stream whose writer went away ends where it stands
  }
}

void Exchange::respond(HttpResponse response) {
  if (sink_ == nullptr || answered_) {
    return;
  }
  answered_ = true;
  complete_ = true;
  sink_->exchangeRespond(token_, std::move(response));
}

void Exchange::startStream(int status, HttpHeaders headers) {
  if (sink_ == nullptr || answered_) {
    return;
  }
  answered_ = true;
  streaming_ = true;
  sink_->exchangeStart(token_, status, std::move(headers));
}

bool Exchange::write(std::string_view data) {
  if (sink_ == nullptr || !streaming_) {
    return false;
  }
  return data.empty() || sink_->exchangeWrite(token_, data);
}

void Exchange::end() {
  if (sink_ == nullptr || !streaming_) {
    return;
  }
  streaming_ = false;
  complete_ = true;
  sink_->exchangeEnd(token_);
}

std::size_t Exchange::pendingBytes() const {
  return sink_ == nullptr ? 0 : sink_->exchangePending(token_);
}

void Exchange::detach() {
  if (sink_ == nullptr) {
    return;
  }
  sink_ = nullptr;
  if (!complete_ && on_abort_) {
    auto fn = std::move(on_abort_);
    on_abort_ = nullptr;
    fn();
  }
  on_abort_ = nullptr;
}

AsyncHttpHandler fromSync(HttpHandler handler) {
  return [handler = std::move(handler)](const HttpExchangePtr& exchange) {
    exchange->respond(handler(exchange->request()));
  };
}

void invokeHandler(const AsyncHttpHandler& handler, const HttpExchangePtr& exchange) {
  try {
    handler(exchange);
    return;
  } catch (const std::exception&) {
  } catch (...) {
  }
  exchange->respond(internalError());
}

bool splitTarget(std::string_view target, std::string& path, std::string& query) {
  if (const auto hash = target.find('#'); hash != std::string_view::npos) {
    target = target.substr(0, hash);
  }
  if (target.starts_with("http://") || target.starts_with("https://")) {
    const auto authority = target.find("//") + 2;
    const auto slash = target.find_first_of("/?", authority);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    if (target.starts_with('?')) {
      path = "/";
      query = target.substr(1);
      return true;
    }
  }
  if (target.empty() || (target.front() != '/' && target != "*")) {
    return false;
  }
  const auto q = target.find('?');
  path = target.substr(0, q);
  query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  return true;
}

} // namespace mailgate::api

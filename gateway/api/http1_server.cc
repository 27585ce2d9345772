#include "gateway/api/http1_server.h"

#include <algorithm>
#include <cctype>
#include <fmt/format.h>
#include <limits>
#include <string_view>

namespace mailgate::api {

namespace {

Http1Server* self(http_parser* p) {
  return static_cast<Http1Server*>(p->data);
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Fields the writer owns: a handler must not be able to change framing or connection handling.
bool ownedByWriter(std::string_view lower_name) {
  return lower_name == "content-length" || lower_name == "transfer-encoding" ||
         lower_name == "connection" || lower_name == "keep-alive" || lower_name == "upgrade";
}

// Answers produced but not taken by the driver, past which pipelined requests wait unparsed.
constexpr std::size_t kOutputPause = 256 * 1024;

bool bodyForbidden(int status) {
  return (status >= 100 && status < 200) || status == 204 || status == 304;
}

int validStatus(int status) {
  return status >= 100 && status <= 999 ? status : 500;
}

HttpResponse tooLarge(std::size_t limit) {
  return jsonError(413, "http.body_too_large", "the request body is too large",
                   fmt::format("send at most {} bytes of body", limit));
}

} // namespace

Http1Server::Http1Server(const HttpServerOptions& options, AsyncHttpHandler handler)
    : options_(options), handler_(std::move(handler)) {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
  http_parser_settings_init(&settings_);
  settings_.on_message_begin = &Http1Server::onMessageBegin;
  settings_.on_url = &Http1Server::onUrl;
  settings_.on_header_field = &Http1Server::onHeaderField;
  settings_.on_header_value = &Http1Server::onHeaderValue;
  settings_.on_headers_complete = &Http1Server::onHeadersComplete;
  settings_.on_body = &Http1Server::onBody;
  settings_.on_message_complete = &Http1Server::onMessageComplete;
}

Http1Server::~Http1Server() {
  if (auto ex = current_.lock()) {
    ex->detach();
  }
}

void Http1Server::receive(std::span<const char> bytes) {
  const Busy busy(*this);
  if (closing_ || bytes.empty()) {
    return;
  }
  process(); // input held back from before comes first
  if (waiting_ || !held_input_.empty()) {
    held_input_.append(bytes.data(), bytes.size());
    return;
  }
  parse(bytes);
}

void Http1Server::process() {
  const Busy busy(*this);
  if (!resume_ || waiting_) {
    return;
  }
  resume_ = false;
  if (closing_) {
    held_input_.clear();
    return;
  }
  http_parser_pause(&parser_, 0);
  const std::string input = std::move(held_input_);
  held_input_.clear();
  if (!input.empty()) {
    parse(std::span<const char>(input.data(), input.size()));
  }
}

void Http1Server::parse(std::span<const char> bytes) {
  std::size_t offset = 0;
  // http_parser_execute with zero bytes means end of input: never call it with nothing.
  while (!closing_ && offset < bytes.size()) {
    const std::size_t n =
        http_parser_execute(&parser_, &settings_, bytes.data() + offset, bytes.size() - offset);
    offset += n;
    const auto err = static_cast<http_errno>(parser_.http_errno);
    if (err == HPE_PAUSED) {
      // onMessageComplete pauses so that each request is answered before the next is parsed.
      dispatch();
      if (waiting_) {
        // Answered later: keep the rest until then, unparsed.
        held_input_.append(bytes.data() + offset, bytes.size() - offset);
        return;
      }
      if (output_.size() >= kOutputPause && offset < bytes.size()) {
        // Pipelined requests whose answers nobody has taken yet: the rest waits until the
        // driver takes the output (a client that never reads stops costing us here).
        held_input_.append(bytes.data() + offset, bytes.size() - offset);
        resume_ = true;
        return;
      }
      http_parser_pause(&parser_, 0);
      continue;
    }
    if (err != HPE_OK) {
      if (!rejected_) {
        if (err == HPE_HEADER_OVERFLOW) {
          reject(jsonError(431, "http.headers_too_large", "the request header section is too large",
                           fmt::format("keep the request line and headers under {} bytes",
                                       options_.max_header_bytes)));
        } else {
          reject(
              jsonError(400, "http.malformed",
                        fmt::format("malformed HTTP/1.1 request: {}", http_errno_description(err)),
                        "send a well-formed HTTP/1.1 request"));
        }
      }
      closing_ = true;
      return;
    }
    if (parser_.upgrade != 0) {
      // Upgrade or CONNECT: answered as a plain request (Upgrade is ignored), then closed because
      // http-parser stops at the upgrade point.
      closing_ = true;
      return;
    }
    if (n == 0) {
      break; // defensive: no progress without an error
    }
  }
}

void Http1Server::drainOutput(std::string& out) {
  out += output_;
  output_.clear();
}

void Http1Server::shutdown() {
  shutdown_ = true;
  if (!in_message_) {
    closing_ = true;
  }
}

bool Http1Server::countHeaderBytes(std::size_t len) {
  header_bytes_ += len;
  if (header_bytes_ <= options_.max_header_bytes) {
    return true;
  }
  reject(jsonError(
      431, "http.headers_too_large", "the request header section is too large",
      fmt::format("keep the request line and headers under {} bytes", options_.max_header_bytes)));
  return false;
}

void Http1Server::reject(const HttpResponse& response) {
  rejected_ = true;
  request_ = HttpRequest{};
  writeResponse(response, false, true);
  closing_ = true;
}

int Http1Server::onMessageBegin(http_parser* p) {
  auto* s = self(p);
  s->request_ = HttpRequest{};
  s->target_.clear();
  s->header_bytes_ = 0;
  s->body_limit_ = s->options_.max_body_bytes;
  s->last_was_value_ = false;
  s->in_message_ = true;
  return 0;
}

int Http1Server::onUrl(http_parser* p, const char* at, std::size_t len) {
  auto* s = self(p);
  if (!s->countHeaderBytes(len)) {
    return -1;
  }
  s->target_.append(at, len);
  return 0;
}

int Http1Server::onHeaderField(http_parser* p, const char* at, std::size_t len) {
  auto* s = self(p);
  // Each field costs its bytes plus ": " and CRLF, as on the wire.
  if (!s->countHeaderBytes(len + (s->last_was_value_ || s->request_.headers.empty() ? 4 : 0))) {
    return -1;
  }
  if (s->last_was_value_ || s->request_.headers.empty()) {
    s->request_.headers.emplace_back();
  }
  s->request_.headers.back().first += lower(std::string_view(at, len));
  s->last_was_value_ = false;
  return 0;
}

int Http1Server::onHeaderValue(http_parser* p, const char* at, std::size_t len) {
  auto* s = self(p);
  if (!s->countHeaderBytes(len)) {
    return -1;
  }
  s->request_.headers.back().second.append(at, len);
  s->last_was_value_ = true;
  return 0;
}

int Http1Server::onHeadersComplete(http_parser* p) {
  auto* s = self(p);
  if (!splitTarget(s->target_, s->request_.path, s->request_.query)) {
    s->reject(jsonError(400, "http.bad_target", "the request target is not a path",
                        "send an origin-form target such as /v1/queue"));
    return -1;
  }
  s->request_.method = http_method_str(static_cast<http_method>(p->method));
  if (s->options_.body_limit) {
    s->body_limit_ = s->options_.body_limit(s->request_);
  }
  // content_length holds the declared length here; ULLONG_MAX means none was declared.
  if ((p->flags & F_CONTENTLENGTH) != 0 &&
      p->content_length != std::numeric_limits<uint64_t>::max() &&
      p->content_length > s->body_limit_) {
    s->reject(tooLarge(s->body_limit_));
    return -1;
  }
  return 0;
}

int Http1Server::onBody(http_parser* p, const char* at, std::size_t len) {
  auto* s = self(p);
  if (s->request_.body.size() + len > s->body_limit_) {
    s->reject(tooLarge(s->body_limit_));
    return -1;
  }
  s->request_.body.append(at, len);
  return 0;
}

int Http1Server::onMessageComplete(http_parser* p) {
  auto* s = self(p);
  s->keep_alive_ = http_should_keep_alive(p) != 0 && p->upgrade == 0;
  http_parser_pause(p, 1);
  return 0;
}

void Http1Server::dispatch() {
  current_head_ = request_.method == "HEAD";
  current_close_ = !keep_alive_;
  stream_chunked_ = parser_.http_major > 1 || (parser_.http_major == 1 && parser_.http_minor >= 1);
  current_token_ = ++next_token_;
  waiting_ = true;
  streaming_ = false;
  auto exchange = std::make_shared<Exchange>(static_cast<ExchangeSink&>(*this), current_token_,
                                             std::move(request_));
  request_ = HttpRequest{};
  current_ = exchange;
  invokeHandler(handler_, exchange);
}

void Http1Server::finishCurrent() {
  waiting_ = false;
  streaming_ = false;
  in_message_ = false;
  current_.reset();
  if (current_close_ || shutdown_) {
    closing_ = true;
  }
  resume_ = true;
  wake();
}

void Http1Server::writeHead(int status, const HttpHeaders& headers, bool close, bool chunked,
                            std::size_t content_length, bool has_length,
                            std::string_view content_type, std::string_view cache_control) {
  output_ += fmt::format("HTTP/1.1 {} {}\r\n", status, reasonPhrase(status));
  const auto fixed = [this](std::string_view name, std::string_view value) {
    if (!value.empty() && isSafeHeaderText(value)) {
      output_ += name;
      output_ += value;
      output_ += "\r\n";
    }
  };
  fixed("content-type: ", content_type);
  fixed("cache-control: ", cache_control);
  for (const auto& [name, value] : headers) {
    if (name.empty() || !isSafeHeaderText(name) || !isSafeHeaderText(value) ||
        name.find_first_of(": \t") != std::string::npos || ownedByWriter(lower(name))) {
      continue;
    }
    output_ += name;
    output_ += ": ";
    output_ += value;
    output_ += "\r\n";
  }
  if (chunked) {
    output_ += "transfer-encoding: chunked\r\n";
  } else if (has_length) {
    output_ += fmt::format("content-length: {}\r\n", content_length);
  }
  if (close) {
    output_ += "connection: close\r\n";
  }
  output_ += "\r\n";
}

void Http1Server::writeResponse(const HttpResponse& response, bool head, bool close) {
  const int status = validStatus(response.status);
  const bool no_body = bodyForbidden(status);
  const std::string_view body = response.bodyText();
  writeHead(status, response.headers, close, false, body.size(), !no_body, response.content_type,
            response.cache_control);
  if (!head && !no_body) {
    output_ += body;
  }
}

void Http1Server::exchangeRespond(std::uint64_t token, HttpResponse response) {
  if (token != current_token_ || !waiting_ || streaming_) {
    return;
  }
  writeResponse(response, current_head_, current_close_ || shutdown_);
  finishCurrent();
}

void Http1Server::exchangeStart(std::uint64_t token, int status, HttpHeaders headers) {
  if (token != current_token_ || !waiting_ || streaming_) {
    return;
  }
  streaming_ = true;
  status = validStatus(status);
  if (!stream_chunked_) {
    current_close_ = true; // HTTP/1.0: the body ends when the connection does
  }
  writeHead(status, headers, current_close_ || shutdown_, stream_chunked_, 0, false, {}, {});
  wake();
}

bool Http1Server::exchangeWrite(std::uint64_t token, std::string_view data) {
  if (token != current_token_ || !streaming_) {
    return false;
  }
  if (current_head_) {
    return true;
  }
  if (stream_chunked_) {
    output_ += fmt::format("{:x}\r\n", data.size());
    output_ += data;
    output_ += "\r\n";
  } else {
    output_ += data;
  }
  wake();
  return true;
}

void Http1Server::exchangeEnd(std::uint64_t token) {
  if (token != current_token_ || !streaming_) {
    return;
  }
  if (stream_chunked_ && !current_head_) {
    output_ += "0\r\n\r\n";
  }
  finishCurrent();
}

std::size_t Http1Server::exchangePending(std::uint64_t token) const {
  return token == current_token_ ? output_.size() : 0;
}

void Http1Server::exchangeDropped(std::uint64_t token) {
  if (token != current_token_ || !waiting_) {
    return;
  }
  if (streaming_) {
    exchangeEnd(token);
    return;
  }
  writeResponse(jsonError(500, "api.no_answer", "the request was dropped without an answer",
                          "see the gateway log; retrying may help"),
                current_head_, true);
  current_close_ = true;
  finishCurrent();
}

} // namespace mailgate::api

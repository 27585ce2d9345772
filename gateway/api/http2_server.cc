#include "gateway/api/http2_server.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <fmt/format.h>
#include <string_view>

namespace mailgate::api {

namespace {

Http2Server* self(void* user) {
  return static_cast<Http2Server*>(user);
}

struct CallbacksDeleter {
  void operator()(nghttp2_session_callbacks* c) const { nghttp2_session_callbacks_del(c); }
};
struct OptionDeleter {
  void operator()(nghttp2_option* o) const { nghttp2_option_del(o); }
};

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Connection-specific fields are forbidden in HTTP/2 (RFC 9113 8.2.2); content-length is ours.
bool droppedInH2(std::string_view lower_name) {
  return lower_name == "connection" || lower_name == "keep-alive" ||
         lower_name == "proxy-connection" || lower_name == "transfer-encoding" ||
         lower_name == "upgrade" || lower_name == "content-length" || lower_name.empty() ||
         lower_name.front() == ':';
}

nghttp2_nv makeNv(std::string_view name, std::string_view value) {
  // nghttp2_submit_response copies the name/value pairs, so pointers into locals are fine.
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

} // namespace

Http2Server::Http2Server(const HttpServerOptions& options, AsyncHttpHandler handler)
    : options_(options), handler_(std::move(handler)) {
  nghttp2_session_callbacks* raw_callbacks = nullptr;
  nghttp2_option* raw_option = nullptr;
  if (nghttp2_session_callbacks_new(&raw_callbacks) != 0 || nghttp2_option_new(&raw_option) != 0) {
    dead_ = true;
    return;
  }
  const std::unique_ptr<nghttp2_session_callbacks, CallbacksDeleter> callbacks(raw_callbacks);
  const std::unique_ptr<nghttp2_option, OptionDeleter> option(raw_option);
  nghttp2_session_callbacks_set_on_begin_headers_callback(raw_callbacks, &onBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(raw_callbacks, &onHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(raw_callbacks, &onDataChunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(raw_callbacks, &onFrameRecv);
  nghttp2_session_callbacks_set_on_frame_send_callback(raw_callbacks, &onFrameSend);
  nghttp2_session_callbacks_set_on_stream_close_callback(raw_callbacks, &onStreamClose);
  // Closed streams kept for priority bookkeeping would be memory a client can make us hold.
  nghttp2_option_set_no_closed_streams(raw_option, 1);

  nghttp2_session* raw_session = nullptr;
  if (nghttp2_session_server_new2(&raw_session, raw_callbacks, this, raw_option) != 0) {
    dead_ = true;
    return;
  }
  session_.reset(raw_session);
  const std::array<nghttp2_settings_entry, 2> settings{{
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, options_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
       static_cast<uint32_t>(std::min<std::size_t>(options_.max_header_bytes, UINT32_MAX))},
  }};
  if (nghttp2_submit_settings(session_.get(), NGHTTP2_FLAG_NONE, settings.data(),
                              settings.size()) != 0) {
    dead_ = true;
  }
}

Http2Server::~Http2Server() {
  // Delete the session before the streams its data providers point at.
  session_.reset();
  for (auto& [id, stream] : streams_) {
    if (auto ex = stream->exchange.lock()) {
      ex->detach();
    }
  }
}

void Http2Server::receive(std::span<const char> bytes) {
  const Busy busy(*this);
  if (dead_ || input_closed_ || bytes.empty()) {
    return;
  }
  const ssize_t n = nghttp2_session_mem_recv(
      session_.get(), reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (n < 0) {
    fatal();
  }
}

void Http2Server::fatal() {
  // Bad client magic, flooding or a callback failure: say goodbye once if nghttp2 still can, then
  // produce nothing more.
  input_closed_ = true;
  if (nghttp2_session_terminate_session(session_.get(), NGHTTP2_PROTOCOL_ERROR) != 0) {
    dead_ = true;
  }
}

void Http2Server::drainOutput(std::string& out) {
  const Busy busy(*this);
  if (dead_) {
    return;
  }
  while (true) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_.get(), &data);
    if (n < 0) {
      dead_ = true;
      return;
    }
    if (n == 0) {
      return;
    }
    out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
  }
}

bool Http2Server::wantsClose() const {
  return dead_ || (input_closed_ && nghttp2_session_want_write(session_.get()) == 0) ||
         (nghttp2_session_want_read(session_.get()) == 0 &&
          nghttp2_session_want_write(session_.get()) == 0);
}

void Http2Server::shutdown() {
  if (dead_) {
    return;
  }
  // Streams up to the last one processed are still answered; the client retries later ones.
  nghttp2_submit_goaway(session_.get(), NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_.get()), NGHTTP2_NO_ERROR,
                        nullptr, 0);
}

Http2Server::Stream* Http2Server::find(int32_t stream_id) {
  const auto it = streams_.find(stream_id);
  return it == streams_.end() ? nullptr : it->second.get();
}

const Http2Server::Stream* Http2Server::find(int32_t stream_id) const {
  const auto it = streams_.find(stream_id);
  return it == streams_.end() ? nullptr : it->second.get();
}

int Http2Server::onBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    auto stream = std::make_unique<Stream>();
    stream->request.headers.reserve(8); // a typical request's fields, in one allocation
    self(user)->streams_.emplace(frame->hd.stream_id, std::move(stream));
  }
  return 0;
}

int Http2Server::onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                          size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                          void* user) {
  auto* s = self(user);
  Stream* stream = s->find(frame->hd.stream_id);
  if (stream == nullptr || frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST || stream->rejected_status != 0) {
    return 0; // trailers and fields after a limit was hit are dropped
  }
  // Counted as SETTINGS_MAX_HEADER_LIST_SIZE counts: name + value + 32 per field.
  stream->header_bytes += namelen + valuelen + 32;
  if (stream->header_bytes > s->options_.max_header_bytes) {
    stream->rejected_status = 431;
    stream->request = HttpRequest{};
    return 0;
  }
  const std::string_view n(reinterpret_cast<const char*>(name), namelen);
  std::string v(reinterpret_cast<const char*>(value), valuelen);
  if (n == ":method") {
    stream->head = v == "HEAD";
    stream->request.method = std::move(v);
  } else if (n == ":path") {
    stream->target = std::move(v);
  } else if (n == ":authority") {
    stream->authority = std::move(v);
  } else if (!n.starts_with(':')) {
    stream->request.headers.emplace_back(std::string(n), std::move(v));
  }
  return 0;
}

int Http2Server::onDataChunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data,
                             size_t len, void* user) {
  auto* s = self(user);
  Stream* stream = s->find(stream_id);
  if (stream == nullptr || stream->rejected_status != 0 || stream->responded) {
    return 0;
  }
  if (stream->body_limit == 0) {
    stream->body_limit = s->options_.max_body_bytes;
    if (s->options_.body_limit) {
      HttpRequest head = stream->request; // no body yet: only the head is copied
      (void)splitTarget(stream->target, head.path, head.query);
      stream->body_limit = s->options_.body_limit(head);
    }
  }
  if (stream->request.body.size() + len > stream->body_limit) {
    s->rejectStream(stream_id, *stream, 413);
    return 0;
  }
  if (s->buffered_body_bytes_ + len > s->options_.max_connection_body_bytes) {
    s->rejectStream(stream_id, *stream, 429);
    return 0;
  }
  s->buffered_body_bytes_ += len;
  stream->request.body.append(reinterpret_cast<const char*>(data), len);
  return 0;
}

int Http2Server::onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* s = self(user);
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) {
    return 0;
  }
  Stream* stream = s->find(frame->hd.stream_id);
  if (stream == nullptr || stream->responded) {
    return 0;
  }
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS && stream->rejected_status == 431) {
    // Answer as soon as the oversized header block is complete, body or not.
    s->rejectStream(frame->hd.stream_id, *stream, 431);
    return 0;
  }
  if (!end_stream) {
    return 0;
  }
  if (stream->authority.empty() == false && stream->request.header("host") == nullptr) {
    stream->request.headers.emplace_back("host", stream->authority);
  }
  if (!splitTarget(stream->target, stream->request.path, stream->request.query)) {
    s->respond(frame->hd.stream_id, *stream,
               jsonError(400, "http.bad_target", "the :path is not a path",
                         "send an origin-form :path such as /v1/queue"));
    return 0;
  }
  // The body moves to the exchange: it no longer counts against the connection's budget.
  s->buffered_body_bytes_ -= std::min(s->buffered_body_bytes_, stream->request.body.size());
  auto exchange = std::make_shared<Exchange>(static_cast<ExchangeSink&>(*s),
                                             static_cast<std::uint64_t>(frame->hd.stream_id),
                                             std::move(stream->request));
  stream->request = HttpRequest{};
  stream->exchange = exchange;
  invokeHandler(s->handler_, exchange);
  return 0;
}

void Http2Server::rejectStream(int32_t stream_id, Stream& stream, int status) {
  stream.rejected_status = status;
  buffered_body_bytes_ -= std::min(buffered_body_bytes_, stream.request.body.size());
  stream.request = HttpRequest{};
  // If the client is still sending, ask it to stop once our answer is out (RFC 9113 8.1).
  stream.reset_after_response =
      nghttp2_session_get_stream_remote_close(session_.get(), stream_id) == 0;
  if (status == 429) {
    respond(stream_id, stream,
            jsonError(429, "http.too_many_bodies",
                      "this connection holds too many request bodies at once",
                      fmt::format("keep request bodies in flight on one connection under {} "
                                  "bytes, or use another connection",
                                  options_.max_connection_body_bytes)));
  } else if (status == 413) {
    respond(stream_id, stream,
            jsonError(413, "http.body_too_large", "the request body is too large",
                      fmt::format("send at most {} bytes of body", stream.body_limit)));
  } else {
    respond(
        stream_id, stream,
        jsonError(431, "http.headers_too_large", "the request header section is too large",
                  fmt::format("keep the header block under {} bytes", options_.max_header_bytes)));
  }
}

void Http2Server::respond(int32_t stream_id, Stream& stream, HttpResponse response) {
  stream.responded = true;
  const int status = response.status >= 200 && response.status <= 999 ? response.status : 500;
  const bool no_body = status == 204 || status == 304;
  std::optional<std::size_t> length;
  if (!no_body) {
    length = response.bodyText().size();
  }
  stream.response_body.clear();
  stream.shared_body.reset();
  if (!stream.head && !no_body) {
    if (response.shared_body) {
      stream.shared_body = std::move(response.shared_body);
    } else {
      stream.response_body = std::move(response.body);
    }
  }
  stream.sent = 0;
  stream.ended = true;
  const bool body =
      stream.shared_body ? !stream.shared_body->empty() : !stream.response_body.empty();
  submitHead(stream_id, stream, status, response.headers, length, body, response.content_type,
             response.cache_control);
}

void Http2Server::submitHead(int32_t stream_id, Stream& stream, int status,
                             const HttpHeaders& headers, std::optional<std::size_t> content_length,
                             bool body, std::string_view content_type,
                             std::string_view cache_control) {
  // nghttp2_submit_response copies every name and value, so the pointers may refer to locals
  // and to the caller's headers. Names that are not lower case already get a lower-case copy.
  const std::string status_text = std::to_string(status);
  const std::string length_text = content_length ? std::to_string(*content_length) : std::string();
  const auto isLower = [](const std::string& name) {
    return std::none_of(name.begin(), name.end(),
                        [](unsigned char c) { return c >= 'A' && c <= 'Z'; });
  };
  // Reserved up front: nva points into these strings, so the vector must never reallocate.
  std::vector<std::string> lowered;
  const auto upper = static_cast<std::size_t>(std::count_if(
      headers.begin(), headers.end(), [&](const auto& h) { return !isLower(h.first); }));
  if (upper > 0) {
    lowered.reserve(upper);
  }
  // The usual answer has a handful of fields: they fit on the stack.
  constexpr std::size_t kInline = 16;
  std::array<nghttp2_nv, kInline> inline_nva{};
  std::vector<nghttp2_nv> heap_nva;
  const std::size_t most = headers.size() + 4;
  nghttp2_nv* nva = inline_nva.data();
  if (most > kInline) {
    heap_nva.resize(most);
    nva = heap_nva.data();
  }
  std::size_t count = 0;
  static const std::string kStatus = ":status";
  static const std::string kLength = "content-length";
  static const std::string kContentType = "content-type";
  static const std::string kCacheControl = "cache-control";
  nva[count++] = makeNv(kStatus, status_text);
  if (!content_type.empty() && isSafeHeaderText(content_type)) {
    nva[count++] = makeNv(kContentType, content_type);
  }
  if (!cache_control.empty() && isSafeHeaderText(cache_control)) {
    nva[count++] = makeNv(kCacheControl, cache_control);
  }
  for (const auto& [name, value] : headers) {
    const std::string& n = isLower(name) ? name : lowered.emplace_back(lower(name));
    if (droppedInH2(n) || !isSafeHeaderText(n) || !isSafeHeaderText(value)) {
      continue;
    }
    nva[count++] = makeNv(n, value);
  }
  if (content_length) {
    nva[count++] = makeNv(kLength, length_text);
  }
  nghttp2_data_provider provider{};
  provider.source.ptr = &stream;
  provider.read_callback = &Http2Server::readBody;
  const int rv =
      nghttp2_submit_response(session_.get(), stream_id, nva, count, body ? &provider : nullptr);
  if (rv != 0) {
    nghttp2_submit_rst_stream(session_.get(), NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_INTERNAL_ERROR);
  }
}

void Http2Server::resume(int32_t stream_id, Stream& stream) {
  if (stream.deferred) {
    stream.deferred = false;
    (void)nghttp2_session_resume_data(session_.get(), stream_id);
  }
  wake();
}

void Http2Server::exchangeRespond(std::uint64_t token, HttpResponse response) {
  const auto id = static_cast<int32_t>(token);
  Stream* stream = find(id);
  if (stream == nullptr || stream->responded || dead_) {
    return;
  }
  respond(id, *stream, std::move(response));
  wake();
}

void Http2Server::exchangeStart(std::uint64_t token, int status, HttpHeaders headers) {
  const auto id = static_cast<int32_t>(token);
  Stream* stream = find(id);
  if (stream == nullptr || stream->responded || dead_) {
    return;
  }
  stream->responded = true;
  stream->streaming = true;
  stream->response_body.clear();
  stream->sent = 0;
  submitHead(id, *stream, status >= 200 && status <= 999 ? status : 500, headers, std::nullopt,
             !stream->head, {}, {});
  if (stream->head) {
    stream->ended = true;
  }
  wake();
}

bool Http2Server::exchangeWrite(std::uint64_t token, std::string_view data) {
  const auto id = static_cast<int32_t>(token);
  Stream* stream = find(id);
  if (stream == nullptr || !stream->streaming || stream->ended || dead_) {
    return false;
  }
  if (stream->head) {
    return true;
  }
  // Keep the unsent part only, so a long stream does not grow its buffer forever.
  if (stream->sent > 0 && stream->sent * 2 >= stream->response_body.size()) {
    stream->response_body.erase(0, stream->sent);
    stream->sent = 0;
  }
  stream->response_body.append(data);
  resume(id, *stream);
  return true;
}

void Http2Server::exchangeEnd(std::uint64_t token) {
  const auto id = static_cast<int32_t>(token);
  Stream* stream = find(id);
  if (stream == nullptr || !stream->streaming || stream->ended || dead_) {
    return;
  }
  stream->ended = true;
  resume(id, *stream);
}

std::size_t Http2Server::exchangePending(std::uint64_t token) const {
  const Stream* stream = find(static_cast<int32_t>(token));
  return stream == nullptr ? 0 : stream->response_body.size() - stream->sent;
}

void Http2Server::exchangeDropped(std::uint64_t token) {
  const auto id = static_cast<int32_t>(token);
  Stream* stream = find(id);
  if (stream == nullptr || dead_) {
    return;
  }
  if (stream->streaming) {
    exchangeEnd(token);
    return;
  }
  if (!stream->responded) {
    respond(id, *stream,
            jsonError(500, "api.no_answer", "the request was dropped without an answer",
                      "see the gateway log; retrying may help"));
    wake();
  }
}

ssize_t Http2Server::readBody(nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                              uint32_t* data_flags, nghttp2_data_source* source, void*) {
  auto* stream = static_cast<Stream*>(source->ptr);
  const std::string& body = stream->shared_body ? *stream->shared_body : stream->response_body;
  const std::size_t n = std::min(length, body.size() - stream->sent);
  if (n == 0 && !stream->ended) {
    stream->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  std::memcpy(buf, body.data() + stream->sent, n);
  stream->sent += n;
  if (stream->ended && stream->sent == body.size()) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  }
  return static_cast<ssize_t>(n);
}

int Http2Server::onFrameSend(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
  if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
    return 0;
  }
  Stream* stream = self(user)->find(frame->hd.stream_id);
  if (stream != nullptr && stream->reset_after_response &&
      nghttp2_session_get_stream_remote_close(session, frame->hd.stream_id) == 0) {
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
  }
  return 0;
}

int Http2Server::onStreamClose(nghttp2_session*, int32_t stream_id, uint32_t, void* user) {
  auto* s = self(user);
  const auto it = s->streams_.find(stream_id);
  if (it == s->streams_.end()) {
    return 0;
  }
  // Erased first: the abort callback may let go of the exchange, whose destructor looks the
  // stream up again and must find nothing.
  const std::weak_ptr<Exchange> exchange = it->second->exchange;
  s->buffered_body_bytes_ -= std::min(s->buffered_body_bytes_, it->second->request.body.size());
  s->streams_.erase(it);
  if (auto ex = exchange.lock()) {
    ex->detach();
  }
  return 0;
}

} // namespace mailgate::api

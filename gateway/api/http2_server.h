// Internal to gateway/api: HTTP/2 server side over an nghttp2 server session driven with
// nghttp2_session_mem_recv / mem_send (nghttp2 does no I/O and owns flow control; this class
// only assembles requests per stream and supplies response bytes from memory).
//
// Limits: SETTINGS_MAX_CONCURRENT_STREAMS = max_concurrent_streams. nghttp2 refuses streams
// beyond it with RST_STREAM(REFUSED_STREAM) while the setting is unacknowledged, and treats a
// client that exceeds the acknowledged value as a connection error (GOAWAY PROTOCOL_ERROR).
// A stream whose header block exceeds max_header_bytes gets 431, one whose body exceeds its
// body limit gets 413; both then RST_STREAM(NO_ERROR) if the client is still sending.
// At most max_header_bytes + the body limit are held per stream, plus its response.
//
// Answers may come later (Exchange) and may be streamed: the response's DATA source then
// defers until the writer adds bytes (nghttp2_session_resume_data). Flow control is nghttp2's.
#pragma once

#include "gateway/api/protocol_server.h"

#include <cstdint>
#include <memory>
#include <nghttp2/nghttp2.h>
#include <optional>
#include <unordered_map>

namespace mailgate::api {

class Http2Server final : public ProtocolServer, private ExchangeSink {
public:
  Http2Server(const HttpServerOptions& options, AsyncHttpHandler handler);
  ~Http2Server() override;

  void receive(std::span<const char> bytes) override;
  void process() override {}
  void drainOutput(std::string& out) override;
  [[nodiscard]] bool wantsClose() const override;
  [[nodiscard]] bool wantsInput() const override { return !dead_ && !input_closed_; }
  void shutdown() override;

  struct Stream {
    HttpRequest request;
    std::string authority;
    std::string target;
    std::size_t header_bytes = 0;
    std::size_t body_limit = 0;
    int rejected_status = 0; // 431 or 413 once a limit was hit
    bool responded = false;
    bool reset_after_response = false;
    bool head = false;      // a HEAD request: the response carries no body
    bool streaming = false; // the body comes in pieces; `ended` once the writer is done
    bool ended = false;
    bool deferred = false; // the DATA source said NGHTTP2_ERR_DEFERRED and waits for a resume
    std::string response_body;
    std::shared_ptr<const std::string> shared_body; // set: the body, instead of response_body
    std::size_t sent = 0;
    std::weak_ptr<Exchange> exchange;
  };

private:
  static int onBeginHeaders(nghttp2_session* session, const nghttp2_frame* frame, void* user);
  static int onHeader(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                      void* user);
  static int onDataChunk(nghttp2_session* session, uint8_t flags, int32_t stream_id,
                         const uint8_t* data, size_t len, void* user);
  static int onFrameRecv(nghttp2_session* session, const nghttp2_frame* frame, void* user);
  static int onFrameSend(nghttp2_session* session, const nghttp2_frame* frame, void* user);
  static int onStreamClose(nghttp2_session* session, int32_t stream_id, uint32_t error_code,
                           void* user);
  static ssize_t readBody(nghttp2_session* session, int32_t stream_id, uint8_t* buf, size_t length,
                          uint32_t* data_flags, nghttp2_data_source* source, void* user);

  Stream* find(int32_t stream_id);
  [[nodiscard]] const Stream* find(int32_t stream_id) const;
  void respond(int32_t stream_id, Stream& stream, HttpResponse response);
  // Submits the response head; `body`: a DATA source follows (from response_body).
  void submitHead(int32_t stream_id, Stream& stream, int status, const HttpHeaders& headers,
                  std::optional<std::size_t> content_length, bool body,
                  std::string_view content_type, std::string_view cache_control);
  void resume(int32_t stream_id, Stream& stream);

  void exchangeRespond(std::uint64_t token, HttpResponse response) override;
  void exchangeStart(std::uint64_t token, int status, HttpHeaders headers) override;
  bool exchangeWrite(std::uint64_t token, std::string_view data) override;
  void exchangeEnd(std::uint64_t token) override;
  [[nodiscard]] std::size_t exchangePending(std::uint64_t token) const override;
  void exchangeDropped(std::uint64_t token) override;
  void rejectStream(int32_t stream_id, Stream& stream, int status);
  void fatal();

  struct SessionDeleter {
    void operator()(nghttp2_session* s) const { nghttp2_session_del(s); }
  };

  HttpServerOptions options_;
  AsyncHttpHandler handler_;
  std::unique_ptr<nghttp2_session, SessionDeleter> session_;
  std::unordered_map<int32_t, std::unique_ptr<Stream>> streams_;
  std::size_t buffered_body_bytes_ = 0; // request bodies held by streams not yet dispatched
  bool dead_ = false;                   // nothing more is read or produced
  bool input_closed_ = false; // nghttp2 reported a fatal error: only the GOAWAY is left to send
};

} // namespace mailgate::api

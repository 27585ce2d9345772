// Internal to gateway/api: HTTP/1.1 (and 1.0) server side over http-parser, sans I/O.
//
// Requests are parsed one at a time and answered in arrival order, so pipelined requests get
// their responses in order and at most one request (bounded by max_header_bytes + the body
// limit) is held. While a request waits for an asynchronous answer (or streams one), later
// input is held back unparsed and wantsInput() is false. A protocol error, an oversized request,
// "Connection: close", HTTP/1.0 without keep-alive, or an Upgrade request ends the connection
// after its response: later bytes are ignored and wantsClose() turns true.
//
// Streamed responses use the chunked transfer coding; to an HTTP/1.0 client the body is
// delimited by closing the connection.
#pragma once

#include "gateway/api/protocol_server.h"

#include <http_parser.h>
#include <memory>

namespace mailgate::api {

class Http1Server final : public ProtocolServer, private ExchangeSink {
public:
  Http1Server(const HttpServerOptions& options, AsyncHttpHandler handler);
  ~Http1Server() override;

  void receive(std::span<const char> bytes) override;
  void process() override;
  void drainOutput(std::string& out) override;
  [[nodiscard]] bool wantsClose() const override { return closing_ && !waiting_; }
  [[nodiscard]] bool wantsInput() const override {
    return !waiting_ && !closing_ && held_input_.empty();
  }
  void shutdown() override;

private:
  static int onMessageBegin(http_parser* p);
  static int onUrl(http_parser* p, const char* at, std::size_t len);
  static int onHeaderField(http_parser* p, const char* at, std::size_t len);
  static int onHeaderValue(http_parser* p, const char* at, std::size_t len);
  static int onHeadersComplete(http_parser* p);
  static int onBody(http_parser* p, const char* at, std::size_t len);
  static int onMessageComplete(http_parser* p);

  void parse(std::span<const char> bytes);
  // False (and a 431 queued) when the request head grew past max_header_bytes.
  bool countHeaderBytes(std::size_t len);
  void reject(const HttpResponse& response);
  void dispatch();
  void finishCurrent();
  void writeHead(int status, const HttpHeaders& headers, bool close, bool chunked,
                 std::size_t content_length, bool has_length, std::string_view content_type,
                 std::string_view cache_control);
  void writeResponse(const HttpResponse& response, bool head, bool close);

  void exchangeRespond(std::uint64_t token, HttpResponse response) override;
  void exchangeStart(std::uint64_t token, int status, HttpHeaders headers) override;
  bool exchangeWrite(std::uint64_t token, std::string_view data) override;
  void exchangeEnd(std::uint64_t token) override;
  [[nodiscard]] std::size_t exchangePending(std::uint64_t token) const override;
  void exchangeDropped(std::uint64_t token) override;

  HttpServerOptions options_;
  AsyncHttpHandler handler_;
  http_parser parser_{};
  http_parser_settings settings_{};

  HttpRequest request_;
  std::string target_;
  std::size_t header_bytes_ = 0;
  std::size_t body_limit_ = 0;
  bool last_was_value_ = false;
  bool in_message_ = false;
  bool keep_alive_ = true;
  bool rejected_ = false; // a callback already queued an error response

  // The request being answered (asynchronously or as a stream).
  std::weak_ptr<Exchange> current_;
  std::uint64_t current_token_ = 0;
  bool waiting_ = false;   // dispatched, answer not complete
  bool streaming_ = false; // the answer is a stream in progress
  bool stream_chunked_ = true;
  bool current_head_ = false;
  bool current_close_ = false;
  bool resume_ = false;    // input was held back and can be parsed now
  std::string held_input_; // bytes that arrived while waiting
  std::uint64_t next_token_ = 0;

  std::string output_;
  bool closing_ = false;
  bool shutdown_ = false;
};

} // namespace mailgate::api

// Internal to gateway/api: HTTP/1.1 (and 1.0) server side over http-parser, sans I/O.
//
// Requests are parsed one at a time and answered in arrival order, so pipelined requests get
// their responses in order and at most one request (bounded by max_header_bytes +
// max_body_bytes) is held. A protocol error, an oversized request, "Connection: close", HTTP/1.0
// without keep-alive, or an Upgrade request ends the connection after its response: later bytes
// are ignored and wantsClose() turns true.
#pragma once

#include "gateway/api/protocol_server.h"

#include <http_parser.h>

namespace mailgate::api {

class Http1Server final : public ProtocolServer {
public:
  Http1Server(const HttpServerOptions& options, HttpHandler handler);

  void receive(std::span<const char> bytes) override;
  void drainOutput(std::string& out) override;
  [[nodiscard]] bool wantsClose() const override { return closing_; }
  void shutdown() override;

private:
  static int onMessageBegin(http_parser* p);
  static int onUrl(http_parser* p, const char* at, std::size_t len);
  static int onHeaderField(http_parser* p, const char* at, std::size_t len);
  static int onHeaderValue(http_parser* p, const char* at, std::size_t len);
  static int onHeadersComplete(http_parser* p);
  static int onBody(http_parser* p, const char* at, std::size_t len);
  static int onMessageComplete(http_parser* p);

  // False (and a 431 queued) when the request head grew past max_header_bytes.
  bool countHeaderBytes(std::size_t len);
  void reject(const HttpResponse& response);
  void answer();
  void writeResponse(const HttpResponse& response, bool head, bool close);

  HttpServerOptions options_;
  HttpHandler handler_;
  http_parser parser_{};
  http_parser_settings settings_{};

  HttpRequest request_;
  std::string target_;
  std::size_t header_bytes_ = 0;
  bool last_was_value_ = false;
  bool in_message_ = false;
  bool keep_alive_ = true;
  bool rejected_ = false; // a callback already queued an error response

  std::string output_;
  bool closing_ = false;
  bool shutdown_ = false;
};

} // namespace mailgate::api

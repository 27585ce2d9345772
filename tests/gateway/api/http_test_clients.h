// Test clients for the HTTP server code, independent of the code under test: HTTP/1.1 responses
// are read back with http-parser in response mode, HTTP/2 is a real nghttp2 client session in
// memory (its bytes go into receive(), takeOutput() goes into it).
#pragma once

#include "gateway/api/http_server_session.h"

#include <algorithm>
#include <cstring>
#include <gtest/gtest.h>
#include <http_parser.h>
#include <map>
#include <memory>
#include <nghttp2/nghttp2.h>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::api::testing {

struct Parsed {
  int status = 0;
  HttpHeaders headers;
  std::string body;
  [[nodiscard]] std::string header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (n == name) {
        return v;
      }
    }
    return "<none>";
  }
};

// Parses a sequence of responses; fails the test on malformed output. `head` marks responses to
// HEAD requests (no body despite content-length).
inline std::vector<Parsed> parseResponses(const std::string& bytes, bool head = false) {
  struct State {
    std::vector<Parsed> out;
    bool last_value = false;
    bool head = false;
  } state;
  state.head = head;
  http_parser p;
  http_parser_init(&p, HTTP_RESPONSE);
  p.data = &state;
  http_parser_settings s;
  http_parser_settings_init(&s);
  s.on_message_begin = [](http_parser* hp) {
    auto* st = static_cast<State*>(hp->data);
    st->out.emplace_back();
    st->last_value = true;
    return 0;
  };
  s.on_header_field = [](http_parser* hp, const char* at, size_t len) {
    auto* st = static_cast<State*>(hp->data);
    if (st->last_value) {
      st->out.back().headers.emplace_back();
    }
    st->out.back().headers.back().first.append(at, len);
    st->last_value = false;
    return 0;
  };
  s.on_header_value = [](http_parser* hp, const char* at, size_t len) {
    auto* st = static_cast<State*>(hp->data);
    st->out.back().headers.back().second.append(at, len);
    st->last_value = true;
    return 0;
  };
  s.on_headers_complete = [](http_parser* hp) {
    auto* st = static_cast<State*>(hp->data);
    st->out.back().status = static_cast<int>(hp->status_code);
    return st->head ? 1 : 0; // 1: no body follows
  };
  s.on_body = [](http_parser* hp, const char* at, size_t len) {
    static_cast<State*>(hp->data)->out.back().body.append(at, len);
    return 0;
  };
  const size_t n = http_parser_execute(&p, &s, bytes.data(), bytes.size());
  EXPECT_EQ(HTTP_PARSER_ERRNO(&p), HPE_OK) << http_errno_description(HTTP_PARSER_ERRNO(&p));
  EXPECT_EQ(n, bytes.size());
  return state.out;
}

inline constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

class H2Client {
public:
  struct Response {
    std::string status;
    HttpHeaders headers;
    std::string body;
    bool closed = false;
    uint32_t error_code = 0;
    std::string header(std::string_view name) const {
      for (const auto& [n, v] : headers) {
        if (n == name) {
          return v;
        }
      }
      return "<none>";
    }
  };
  struct Goaway {
    int32_t last_stream_id;
    uint32_t error_code;
  };

  H2Client() {
    nghttp2_session_callbacks* raw_callbacks = nullptr;
    EXPECT_EQ(nghttp2_session_callbacks_new(&raw_callbacks), 0);
    const std::unique_ptr<nghttp2_session_callbacks, CallbacksDeleter> callbacks(raw_callbacks);
    nghttp2_session_callbacks* cb = callbacks.get();
    nghttp2_session_callbacks_set_on_header_callback(
        cb, [](nghttp2_session*, const nghttp2_frame* f, const uint8_t* n, size_t nl,
               const uint8_t* v, size_t vl, uint8_t, void* u) {
          auto& r = static_cast<H2Client*>(u)->responses_[f->hd.stream_id];
          const std::string name(reinterpret_cast<const char*>(n), nl);
          const std::string value(reinterpret_cast<const char*>(v), vl);
          if (name == ":status") {
            r.status = value;
          } else {
            r.headers.emplace_back(name, value);
          }
          return 0;
        });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cb, [](nghttp2_session*, uint8_t, int32_t id, const uint8_t* d, size_t len, void* u) {
          static_cast<H2Client*>(u)->responses_[id].body.append(reinterpret_cast<const char*>(d),
                                                                len);
          return 0;
        });
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cb, [](nghttp2_session*, int32_t id, uint32_t code, void* u) {
          auto& r = static_cast<H2Client*>(u)->responses_[id];
          r.closed = true;
          r.error_code = code;
          return 0;
        });
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, [](nghttp2_session*,
                                                                const nghttp2_frame* f, void* u) {
      if (f->hd.type == NGHTTP2_GOAWAY) {
        static_cast<H2Client*>(u)->goaway_ = Goaway{f->goaway.last_stream_id, f->goaway.error_code};
      }
      return 0;
    });
    nghttp2_session* s = nullptr;
    EXPECT_EQ(nghttp2_session_client_new(&s, cb, this), 0);
    session_.reset(s);
    nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, nullptr, 0);
  }

  // Body is handed out at most `chunk` bytes per DATA frame.
  int32_t submit(const std::string& method, const std::string& path, std::string body = {},
                 HttpHeaders extra = {}, std::size_t chunk = 16384) {
    HttpHeaders fields{
        {":method", method}, {":scheme", "http"}, {":authority", "gw.test"}, {":path", path}};
    fields.insert(fields.end(), extra.begin(), extra.end());
    std::vector<nghttp2_nv> nva;
    for (auto& [n, v] : fields) {
      nva.push_back({reinterpret_cast<uint8_t*>(n.data()), reinterpret_cast<uint8_t*>(v.data()),
                     n.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
    }
    auto upload = std::make_unique<Upload>(Upload{std::move(body), 0, chunk});
    nghttp2_data_provider provider{};
    provider.source.ptr = upload.get();
    provider.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                                uint32_t* flags, nghttp2_data_source* src, void*) -> ssize_t {
      auto* up = static_cast<Upload*>(src->ptr);
      const size_t n = std::min({length, up->chunk, up->data.size() - up->sent});
      std::memcpy(buf, up->data.data() + up->sent, n);
      up->sent += n;
      if (up->sent == up->data.size()) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
      }
      return static_cast<ssize_t>(n);
    };
    const bool has_body = !upload->data.empty();
    const int32_t id = nghttp2_submit_request(session_.get(), nullptr, nva.data(), nva.size(),
                                              has_body ? &provider : nullptr, nullptr);
    uploads_.push_back(std::move(upload));
    return id;
  }

  // Bytes the client wants to send now.
  std::string send() {
    std::string out;
    while (true) {
      const uint8_t* data = nullptr;
      const ssize_t n = nghttp2_session_mem_send(session_.get(), &data);
      EXPECT_GE(n, 0);
      if (n <= 0) {
        return out;
      }
      out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
  }

  void recv(const std::string& bytes) {
    if (!bytes.empty()) {
      const ssize_t n = nghttp2_session_mem_recv(
          session_.get(), reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
      EXPECT_EQ(n, static_cast<ssize_t>(bytes.size())) << nghttp2_strerror(static_cast<int>(n));
    }
  }

  // Exchanges bytes until neither side has anything to say.
  void pump(HttpServerSession& server) {
    for (int round = 0; round < 1000; ++round) {
      const std::string c = send();
      server.receive(std::span<const char>(c.data(), c.size()));
      const std::string s = server.takeOutput();
      recv(s);
      if (c.empty() && s.empty()) {
        return;
      }
    }
    ADD_FAILURE() << "pump did not settle";
  }

  // Cancels a stream (RST_STREAM CANCEL), as a client that loses interest does.
  void reset(int32_t id) {
    nghttp2_submit_rst_stream(session_.get(), NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  }

  const Response& response(int32_t id) { return responses_[id]; }
  const std::optional<Goaway>& goaway() const { return goaway_; }

private:
  struct Upload {
    std::string data;
    size_t sent;
    size_t chunk;
  };
  struct Deleter {
    void operator()(nghttp2_session* s) const { nghttp2_session_del(s); }
  };
  struct CallbacksDeleter {
    void operator()(nghttp2_session_callbacks* c) const { nghttp2_session_callbacks_del(c); }
  };
  std::unique_ptr<nghttp2_session, Deleter> session_;
  std::vector<std::unique_ptr<Upload>> uploads_;
  std::map<int32_t, Response> responses_;
  std::optional<Goaway> goaway_;
};

} // namespace mailgate::api::testing

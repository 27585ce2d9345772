// HTTP/2 side of HttpServerSession, driven by a real nghttp2 client session in memory: the
// client's bytes go into receive(), takeOutput() goes into the client, until both are quiet.
#include "gateway/api/http_server_session.h"
#include "tests/gateway/api/test_handler.h"

#include <algorithm>
#include <cstring>
#include <gtest/gtest.h>
#include <map>
#include <memory>
#include <nghttp2/nghttp2.h>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::api {
namespace {

using testing::echoHandler;

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

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

std::string errorCode(const H2Client::Response& r) {
  return nlohmann::json::parse(r.body)["error"]["code"].get<std::string>();
}

TEST(Http2Session, ConcurrentRequestsWithPriorKnowledge) {
  HttpServerSession server({}, echoHandler);
  H2Client client;
  std::vector<int32_t> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(client.submit("GET", "/v1/item/" + std::to_string(i) + "?n=" + std::to_string(i),
                                {}, {{"x-test", "v" + std::to_string(i)}}));
  }
  client.pump(server);
  EXPECT_EQ(server.protocol(), HttpServerSession::Protocol::kHttp2);
  for (int i = 0; i < 5; ++i) {
    const auto& r = client.response(ids[i]);
    EXPECT_TRUE(r.closed);
    EXPECT_EQ(r.error_code, NGHTTP2_NO_ERROR);
    EXPECT_EQ(r.status, "200");
    EXPECT_EQ(r.header("content-type"), "text/plain");
    EXPECT_EQ(r.header("x-echo"), "yes");
    const std::string si = std::to_string(i);
    EXPECT_EQ(r.body, "GET /v1/item/" + si + "?n=" + si + "|0|v" + si + "|gw.test\n");
    EXPECT_EQ(r.header("content-length"), std::to_string(r.body.size()));
  }
  EXPECT_FALSE(server.wantsClose());
}

TEST(Http2Session, PostBodySpreadOverSeveralDataFrames) {
  HttpServerSession server({}, echoHandler);
  H2Client client;
  std::string body;
  for (int i = 0; i < 3000; ++i) {
    body += static_cast<char>('a' + i % 26);
  }
  const int32_t id = client.submit("POST", "/v1/messages", body, {}, 500);
  client.pump(server);
  const auto& r = client.response(id);
  EXPECT_EQ(r.status, "200");
  EXPECT_EQ(r.body, "POST /v1/messages?|3000|-|gw.test\n" + body);
}

TEST(Http2Session, LargeResponseRespectsFlowControl) {
  // 200 KiB is over the client's default 64 KiB windows: only WINDOW_UPDATEs get it all through.
  const std::string big(200 * 1024, 'z');
  HttpServerSession server({}, [&](const HttpRequest&) {
    HttpResponse r;
    r.body = big;
    return r;
  });
  H2Client client;
  const int32_t a = client.submit("GET", "/big");
  const int32_t b = client.submit("GET", "/big");
  client.pump(server);
  EXPECT_EQ(client.response(a).body.size(), big.size());
  EXPECT_EQ(client.response(b).body, big);
}

TEST(Http2Session, StreamsBeyondTheUnacknowledgedLimitAreRefused) {
  HttpServerOptions o;
  o.max_concurrent_streams = 2;
  HttpServerSession server(o, echoHandler);
  H2Client client;
  std::vector<int32_t> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(client.submit("GET", "/s"));
  }
  // All five HEADERS leave before the client has seen the server's SETTINGS.
  client.pump(server);
  int ok = 0;
  int refused = 0;
  for (const int32_t id : ids) {
    const auto& r = client.response(id);
    EXPECT_TRUE(r.closed);
    if (r.status == "200") {
      ++ok;
    } else if (r.error_code == NGHTTP2_REFUSED_STREAM) {
      ++refused;
    }
  }
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(refused, 3);
  EXPECT_FALSE(server.wantsClose());
}

TEST(Http2Session, ClientThatHonoursTheLimitGetsEveryAnswer) {
  HttpServerOptions o;
  o.max_concurrent_streams = 2;
  HttpServerSession server(o, echoHandler);
  H2Client client;
  client.pump(server); // SETTINGS exchanged and acknowledged first
  std::vector<int32_t> ids;
  for (int i = 0; i < 7; ++i) {
    ids.push_back(client.submit("GET", "/s"));
  }
  client.pump(server);
  for (const int32_t id : ids) {
    EXPECT_EQ(client.response(id).status, "200");
  }
}

TEST(Http2Session, OversizedBodyGets413) {
  HttpServerOptions o;
  o.max_body_bytes = 1000;
  HttpServerSession server(o, echoHandler);
  H2Client client;
  const int32_t big = client.submit("POST", "/m", std::string(5000, 'b'), {}, 400);
  const int32_t small = client.submit("POST", "/m", std::string(1000, 's'));
  client.pump(server);
  const auto& r = client.response(big);
  EXPECT_TRUE(r.closed);
  EXPECT_EQ(r.status, "413");
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(errorCode(r), "http.body_too_large");
  EXPECT_EQ(client.response(small).status, "200");
  EXPECT_FALSE(server.wantsClose()); // a stream error, not a connection error
}

TEST(Http2Session, OversizedHeadersGet431) {
  HttpServerOptions o;
  o.max_header_bytes = 300;
  HttpServerSession server(o, echoHandler);
  H2Client client;
  const int32_t id = client.submit("GET", "/h", {}, {{"x-big", std::string(400, 'x')}});
  client.pump(server);
  EXPECT_EQ(client.response(id).status, "431");
  EXPECT_EQ(errorCode(client.response(id)), "http.headers_too_large");
  EXPECT_FALSE(server.wantsClose());
}

TEST(Http2Session, HandlerCannotSendConnectionHeadersOrSmuggle) {
  HttpServerSession server({}, echoHandler);
  H2Client client;
  const int32_t id = client.submit("GET", "/inject");
  client.pump(server);
  const auto& r = client.response(id);
  EXPECT_EQ(r.status, "200"); // nghttp2 would reset the stream on a connection header
  EXPECT_EQ(r.header("x-evil"), "<none>");
  EXPECT_EQ(r.header("connection"), "<none>");
  EXPECT_EQ(r.header("x-fine"), "ok");
}

TEST(Http2Session, GracefulShutdownSendsGoawayWithTheLastStream) {
  HttpServerSession server({}, echoHandler);
  H2Client client;
  const int32_t id = client.submit("GET", "/a");
  client.pump(server);
  ASSERT_EQ(client.response(id).status, "200");
  EXPECT_FALSE(server.wantsClose());
  server.shutdown();
  client.pump(server);
  ASSERT_TRUE(client.goaway().has_value());
  EXPECT_EQ(client.goaway()->error_code, NGHTTP2_NO_ERROR);
  EXPECT_EQ(client.goaway()->last_stream_id, id);
  EXPECT_TRUE(server.wantsClose());
}

TEST(Http2Session, GarbageAfterThePrefaceIsGoawayAndClose) {
  HttpServerSession server({}, echoHandler);
  const std::string in = std::string(kPreface) + "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
  server.receive(std::span<const char>(in.data(), in.size()));
  H2Client observer; // reads the server's bytes as a client would
  observer.recv(server.takeOutput());
  ASSERT_TRUE(observer.goaway().has_value());
  EXPECT_NE(observer.goaway()->error_code, NGHTTP2_NO_ERROR);
  EXPECT_TRUE(server.wantsClose());
}

TEST(Http2Session, AlpnH2WithoutThePrefaceIsGoawayAndClose) {
  HttpServerOptions o;
  o.tls_h2 = true;
  HttpServerSession server(o, echoHandler);
  EXPECT_EQ(server.protocol(), HttpServerSession::Protocol::kHttp2);
  const std::string in = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
  server.receive(std::span<const char>(in.data(), in.size()));
  (void)server.takeOutput();
  EXPECT_TRUE(server.wantsClose());
}

TEST(Http2Session, PrefaceFedByteByByte) {
  HttpServerSession server({}, echoHandler);
  H2Client client;
  const int32_t id = client.submit("GET", "/slow");
  const std::string bytes = client.send();
  for (const char c : bytes) {
    server.receive(std::span<const char>(&c, 1));
    if (server.protocol() == HttpServerSession::Protocol::kUnknown) {
      EXPECT_EQ(server.takeOutput(), "");
    }
  }
  client.recv(server.takeOutput());
  client.pump(server);
  EXPECT_EQ(client.response(id).status, "200");
  EXPECT_EQ(client.response(id).body, "GET /slow?|0|-|gw.test\n");
}

} // namespace
} // namespace mailgate::api

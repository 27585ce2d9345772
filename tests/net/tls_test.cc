// TLS over loopback with certificates made at run time by the openssl command line.
#include "net/connection.h"
#include "net/connector.h"
#include "net/listener.h"
#include "net/tls_context.h"
#include "test_util.h"

#include <algorithm>
#include <gtest/gtest.h>
#include <thread>

namespace mailgate::net {
namespace {

using std::chrono::milliseconds;
using test::EchoServer;
using test::RecordingHandler;
using test::TestLoop;

#define REQUIRE_PKI()                                                                              \
  const test::Pki* pki = test::pki();                                                              \
  if (pki == nullptr) {                                                                            \
    GTEST_SKIP() << "the openssl command line is not available";                                   \
  }

TlsContextPtr serverContext(const std::string& cert, const std::string& key,
                            std::vector<std::string> alpn = {}) {
  auto ctx = TlsContext::server({.cert_file = cert, .key_file = key, .alpn = std::move(alpn)});
  EXPECT_TRUE(ctx) << ctx.error().describe();
  return ctx ? *ctx : nullptr;
}

TlsContextPtr clientContext(TlsClientOptions options) {
  auto ctx = TlsContext::client(options);
  EXPECT_TRUE(ctx) << ctx.error().describe();
  return ctx ? *ctx : nullptr;
}

// The server certificate issued by the test CA, for implicit TLS or startTls().
TlsContextPtr caIssuedServer(const test::Pki& pki) {
  return serverContext(pki.server_cert, pki.server_key);
}

// Implicit TLS to "localhost", verified against the test CA.
ConnectOptions verifiedTls(const test::Pki& pki) {
  ConnectOptions options;
  options.tls = clientContext({.ca_file = pki.ca_cert});
  options.sni = "localhost";
  return options;
}

// Implicit-TLS connect to `endpoint`; returns the error, or echoes `message` and returns nullopt.
struct TlsOutcome {
  std::optional<Error> error;
  std::string version;
  std::string alpn;
  std::string echoed;
};

TlsOutcome tlsEcho(TestLoop& loop, const Endpoint& endpoint, TlsContextPtr client,
                   const std::string& sni, const std::string& message = "hello over TLS") {
  TlsOutcome out;
  ConnectOptions options;
  options.tls = std::move(client);
  options.sni = sni;
  auto result = test::echo(loop, endpoint, std::move(options), message, [&](Connection& conn) {
    EXPECT_TRUE(conn.tlsActive());
    out.version = conn.tlsVersion();
    out.alpn = conn.alpnSelected();
  });
  out.error = std::move(result.connect_error);
  out.echoed = std::move(result.echoed);
  if (!out.error) {
    EXPECT_FALSE(result.close_error) << result.close_error->describe();
  }
  return out;
}

TEST(Tls, ImplicitTlsEchoVerifiedAgainstACaFile) {
  REQUIRE_PKI();
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1", caIssuedServer(*pki));
  auto out =
      tlsEcho(loop, server.endpoint(), clientContext({.ca_file = pki->ca_cert}), "localhost");
  ASSERT_FALSE(out.error) << out.error->describe();
  EXPECT_EQ(out.echoed, "hello over TLS");
  EXPECT_TRUE(out.version == "TLSv1.3" || out.version == "TLSv1.2") << out.version;
  EXPECT_TRUE(server.errors.empty());
}

TEST(Tls, IpAddressIsCheckedAgainstTheCertificateWithoutSni) {
  REQUIRE_PKI();
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1", caIssuedServer(*pki));
  // No SNI given: the endpoint's host (an IP literal) is verified against the IP SANs.
  auto out = tlsEcho(loop, server.endpoint(), clientContext({.ca_file = pki->ca_cert}), "");
  ASSERT_FALSE(out.error) << out.error->describe();
}

TEST(Tls, SystemCasRejectAPrivateCaWithAClearError) {
  REQUIRE_PKI();
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1", caIssuedServer(*pki));
  auto out = tlsEcho(loop, server.endpoint(), clientContext({}), "localhost");
  ASSERT_TRUE(out.error);
  EXPECT_EQ(out.error->code, "tls.verify") << out.error->describe();
  EXPECT_NE(out.error->message.find("certificate verify failed"), std::string::npos);
  EXPECT_NE(out.error->hint.find("ca_file"), std::string::npos) << out.error->describe();
}

TEST(Tls, SelfSignedIsRejectedByDefaultWithAHint) {
  REQUIRE_PKI();
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1", serverContext(pki->self_cert, pki->self_key));
  auto out = tlsEcho(loop, server.endpoint(), clientContext({}), "localhost");
  ASSERT_TRUE(out.error);
  EXPECT_EQ(out.error->code, "tls.verify") << out.error->describe();
  EXPECT_NE(out.error->message.find("self-signed"), std::string::npos) << out.error->describe();
  EXPECT_NE(out.error->hint.find("allow_self_signed: true"), std::string::npos);
}

TEST(Tls, AllowSelfSignedAcceptsASelfSignedLeaf) {
  REQUIRE_PKI();
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1", serverContext(pki->self_cert, pki->self_key));
  auto out =
      tlsEcho(loop, server.endpoint(), clientContext({.allow_self_signed = true}), "localhost");
  ASSERT_FALSE(out.error) << out.error->describe();
  EXPECT_EQ(out.echoed, "hello over TLS");
}

TEST(Tls, AllowSelfSignedStillChecksTheHostName) {
  REQUIRE_PKI();
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1", serverContext(pki->self_cert, pki->self_key));
  auto out = tlsEcho(loop, server.endpoint(), clientContext({.allow_self_signed = true}),
                     "mail.example.org");
  ASSERT_TRUE(out.error);
  EXPECT_EQ(out.error->code, "tls.verify") << out.error->describe();
  EXPECT_NE(out.error->hint.find("mail.example.org"), std::string::npos) << out.error->describe();
}

TEST(Tls, AllowSelfSignedDoesNotAcceptAnUnknownCa) {
  REQUIRE_PKI();
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1", caIssuedServer(*pki));
  auto out =
      tlsEcho(loop, server.endpoint(), clientContext({.allow_self_signed = true}), "localhost");
  ASSERT_TRUE(out.error);
  EXPECT_EQ(out.error->code, "tls.verify") << out.error->describe();
}

TEST(Tls, VerifyPeerFalseAcceptsAnyCertificateAndName) {
  REQUIRE_PKI();
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1", serverContext(pki->self_cert, pki->self_key));
  auto out =
      tlsEcho(loop, server.endpoint(), clientContext({.verify_peer = false}), "mail.example.org");
  ASSERT_FALSE(out.error) << out.error->describe();
}

TEST(Tls, PinningAcceptsTheRightFingerprint) {
  REQUIRE_PKI();
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1", caIssuedServer(*pki));
  auto out = tlsEcho(loop, server.endpoint(),
                     clientContext({.ca_file = pki->ca_cert, .pins = {pki->server_fingerprint}}),
                     "localhost");
  ASSERT_FALSE(out.error) << out.error->describe();
}

TEST(Tls, PinningRejectsAWrongFingerprint) {
  REQUIRE_PKI();
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1", caIssuedServer(*pki));
  auto out = tlsEcho(loop, server.endpoint(),
                     clientContext({.ca_file = pki->ca_cert, .pins = {std::string(64, 'a')}}),
                     "localhost");
  ASSERT_TRUE(out.error);
  EXPECT_EQ(out.error->code, "tls.pin_mismatch") << out.error->describe();
  // The message names the fingerprint actually seen, so an operator can update the pin.
  std::string seen = pki->server_fingerprint;
  seen.erase(std::remove(seen.begin(), seen.end(), ':'), seen.end());
  std::transform(seen.begin(), seen.end(), seen.begin(), ::tolower);
  EXPECT_NE(out.error->message.find(seen), std::string::npos) << out.error->describe();
}

TEST(Tls, FingerprintHelperMatchesOpenssl) {
  REQUIRE_PKI();
  auto fp = certificateFingerprint(pki->server_cert);
  ASSERT_TRUE(fp) << fp.error().describe();
  std::string expected = pki->server_fingerprint;
  expected.erase(std::remove(expected.begin(), expected.end(), ':'), expected.end());
  std::transform(expected.begin(), expected.end(), expected.begin(), ::tolower);
  EXPECT_EQ(*fp, expected);
}

TEST(Tls, AlpnNegotiatesH2) {
  REQUIRE_PKI();
  TestLoop loop;
  ConnectionPtr server_conn;
  std::string server_alpn;
  auto listener = Listener::listen(*loop, Endpoint{"127.0.0.1", 0}, [&](ConnectionPtr c) {
    server_alpn = c->alpnSelected();
    server_conn = std::move(c);
  });
  ASSERT_TRUE(listener);
  (*listener)->setTls(serverContext(pki->server_cert, pki->server_key, {"h2", "http/1.1"}));
  std::string client_alpn;
  ConnectOptions options;
  options.tls = clientContext({.ca_file = pki->ca_cert, .alpn = {"h2"}});
  options.sni = "localhost";
  ConnectionPtr client;
  auto pending = connect(*loop, (*listener)->endpoint(), options, [&](Result<ConnectionPtr> r) {
    ASSERT_TRUE(r) << r.error().describe();
    client = std::move(*r);
    client_alpn = client->alpnSelected();
    loop->stop();
  });
  loop.run();
  EXPECT_EQ(client_alpn, "h2");
  // The server's side may be delivered in the same turn or not at all before stop(); when it is,
  // it agrees.
  if (server_conn) {
    EXPECT_EQ(server_alpn, "h2");
  }
}

TEST(Tls, NoCommonAlpnStillConnectsWithoutAlpn) {
  REQUIRE_PKI();
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1",
                    serverContext(pki->server_cert, pki->server_key, {"http/1.1"}));
  auto out = tlsEcho(loop, server.endpoint(),
                     clientContext({.ca_file = pki->ca_cert, .alpn = {"h2"}}), "localhost");
  ASSERT_FALSE(out.error) << out.error->describe();
  EXPECT_EQ(out.alpn, "");
}

TEST(Tls, LargeTransferOverTls) {
  REQUIRE_PKI();
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1", caIssuedServer(*pki));
  const std::string data = test::pattern(4 * 1024 * 1024, 9);
  auto out =
      tlsEcho(loop, server.endpoint(), clientContext({.ca_file = pki->ca_cert}), "localhost", data);
  ASSERT_FALSE(out.error) << out.error->describe();
  EXPECT_TRUE(out.echoed == data);
}

// STARTTLS on a live plaintext connection, both sides driven by this test the way SMTP does it.
TEST(Tls, StartTlsUpgradesALivePlaintextConnection) {
  REQUIRE_PKI();
  TestLoop loop;
  auto server_tls = caIssuedServer(*pki);
  auto client_tls = clientContext({.ca_file = pki->ca_cert});

  struct Server : Connection::Handler {
    ConnectionPtr conn;
    TlsContextPtr tls;
    std::string plain;
    std::string secure;
    bool upgraded = false;
    std::optional<Error> tls_error;
    void onRead(std::span<const char> data) override {
      if (!upgraded) {
        plain.append(data.data(), data.size());
        if (plain.ends_with("STARTTLS\r\n")) {
          upgraded = true;
          conn->write("220 2.0.0 Ready to start TLS\r\n"); // goes out in cleartext
          conn->startTls(tls, {}, [this](Result<void> r) {
            if (!r) {
              tls_error = r.error();
            }
          });
        }
        return;
      }
      secure.append(data.data(), data.size());
      conn->write("250 got it over TLS\r\n");
    }
    void onClose(const Error*) override {}
  } server;
  server.tls = server_tls;

  auto listener = Listener::listen(*loop, Endpoint{"127.0.0.1", 0}, [&](ConnectionPtr c) {
    server.conn = std::move(c);
    server.conn->setHandler(&server);
  });
  ASSERT_TRUE(listener);

  RecordingHandler client;
  ConnectionPtr conn;
  bool upgraded = false;
  std::string tls_reply;
  std::optional<Error> client_tls_error;
  client.on_read = [&](std::span<const char> data) {
    if (!upgraded) {
      if (client.received.ends_with("220 2.0.0 Ready to start TLS\r\n")) {
        upgraded = true;
        EXPECT_FALSE(conn->tlsActive());
        conn->startTls(client_tls, "localhost", [&](Result<void> r) {
          if (!r) {
            client_tls_error = r.error();
            loop->stop();
            return;
          }
          EXPECT_TRUE(conn->tlsActive());
          conn->write("MAIL FROM:<a@example.org>\r\n");
        });
      }
      return;
    }
    tls_reply.append(data.data(), data.size());
    if (tls_reply.ends_with("\r\n")) {
      loop->stop();
    }
  };
  auto pending = connect(*loop, (*listener)->endpoint(), {}, [&](Result<ConnectionPtr> r) {
    ASSERT_TRUE(r) << r.error().describe();
    conn = std::move(*r);
    conn->setHandler(&client);
    conn->write("EHLO client\r\nSTARTTLS\r\n");
  });
  loop.run();
  ASSERT_FALSE(client_tls_error) << client_tls_error->describe();
  ASSERT_FALSE(server.tls_error) << server.tls_error->describe();
  EXPECT_EQ(server.plain, "EHLO client\r\nSTARTTLS\r\n");
  EXPECT_EQ(server.secure, "MAIL FROM:<a@example.org>\r\n");
  EXPECT_EQ(tls_reply, "250 got it over TLS\r\n");
  EXPECT_TRUE(server.conn->tlsActive());
  EXPECT_FALSE(server.conn->tlsVersion().empty());
}

TEST(Tls, StartTlsTwiceIsRejectedWithoutCallingBackInline) {
  REQUIRE_PKI();
  TestLoop loop;
  EchoServer server(*loop, "127.0.0.1", caIssuedServer(*pki));
  const ConnectOptions options = verifiedTls(*pki);
  ConnectionPtr conn;
  std::optional<Error> error;
  bool inside = false;
  auto pending = connect(*loop, server.endpoint(), options, [&](Result<ConnectionPtr> r) {
    ASSERT_TRUE(r) << r.error().describe();
    conn = std::move(*r);
    inside = true;
    conn->startTls(options.tls, "localhost", [&](Result<void> again) {
      EXPECT_FALSE(inside);
      if (!again) {
        error = again.error();
      }
      EXPECT_TRUE(conn->isOpen()); // the refused upgrade changed nothing
      EXPECT_TRUE(conn->tlsActive());
      loop->stop();
    });
    inside = false;
  });
  loop.run();
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, "tls.state");
}

TEST(Tls, ImplicitTlsAgainstAPlaintextServerSaysSo) {
  REQUIRE_PKI();
  TestLoop loop;
  ConnectionPtr server_conn;
  auto listener = Listener::listen(*loop, Endpoint{"127.0.0.1", 0}, [&](ConnectionPtr c) {
    server_conn = std::move(c);
    server_conn->write("220 mail.example.org ESMTP ready\r\n");
  });
  ASSERT_TRUE(listener);
  auto out =
      tlsEcho(loop, (*listener)->endpoint(), clientContext({.ca_file = pki->ca_cert}), "localhost");
  ASSERT_TRUE(out.error);
  EXPECT_EQ(out.error->code, "tls.handshake") << out.error->describe();
  EXPECT_NE(out.error->hint.find("starttls"), std::string::npos) << out.error->describe();
}

TEST(Tls, ServerHandshakeTimesOutWhenThePeerStopsMidHandshake) {
  REQUIRE_PKI();
  TestLoop loop;
  std::vector<Error> errors;
  bool accepted = false;
  auto listener =
      Listener::listen(*loop, Endpoint{"127.0.0.1", 0}, [&](ConnectionPtr) { accepted = true; });
  ASSERT_TRUE(listener);
  (*listener)->setTls(caIssuedServer(*pki), milliseconds(100));
  (*listener)->onError([&](const Error& e) {
    errors.push_back(e);
    loop->stop();
  });
  // A client that connects, sends the first bytes of a TLS record, and then nothing.
  ConnectionPtr client;
  RecordingHandler client_handler;
  auto pending = connect(*loop, (*listener)->endpoint(), {}, [&](Result<ConnectionPtr> r) {
    ASSERT_TRUE(r) << r.error().describe();
    client = std::move(*r);
    client->setHandler(&client_handler);
    client->write(std::string("\x16\x03\x01\x02\x00\x01", 6));
  });
  loop.run();
  EXPECT_FALSE(accepted);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].code, "tls.handshake_timeout") << errors[0].describe();
  EXPECT_NE(errors[0].message.find("127.0.0.1"), std::string::npos) << errors[0].describe();
}

TEST(Tls, ClientHandshakeTimesOutWhenTheServerNeverAnswers) {
  REQUIRE_PKI();
  TestLoop loop;
  test::SilentServer silent(*loop);
  ConnectOptions options = verifiedTls(*pki);
  options.handshake_timeout = milliseconds(100);
  const auto error = test::connectError(loop, silent.endpoint(), options);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, "tls.handshake_timeout") << error->describe();
}

TEST(Tls, Tls11IsRefused) {
  REQUIRE_PKI();
  if (test::shell("openssl s_client -help 2>&1 | grep -q -- -tls1_1") != 0) {
    GTEST_SKIP() << "this openssl cannot offer TLS 1.1";
  }
  TestLoop loop;
  std::vector<Error> errors;
  bool accepted = false;
  auto listener =
      Listener::listen(*loop, Endpoint{"127.0.0.1", 0}, [&](ConnectionPtr) { accepted = true; });
  ASSERT_TRUE(listener);
  (*listener)->setTls(caIssuedServer(*pki));
  (*listener)->onError([&](const Error& e) {
    errors.push_back(e);
    loop->stop();
  });
  const uint16_t port = (*listener)->port();
  const std::string transcript = test::pki()->dir + "/s_client.txt";
  std::thread client([&] {
    test::shell("openssl s_client -connect 127.0.0.1:" + std::to_string(port) +
                " -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' < /dev/null > " + transcript + " 2>&1");
    loop->post([&] { loop->stop(); });
  });
  loop.run();
  client.join();
  // The client was told why: our alert reached it before the socket closed.
  EXPECT_EQ(test::shell("grep -q 'alert protocol version' " + transcript), 0);
  EXPECT_FALSE(accepted);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].code, "tls.handshake") << errors[0].describe();
  EXPECT_NE(errors[0].message.find("unsupported protocol"), std::string::npos)
      << errors[0].describe();
}

TEST(Tls, ContextErrorsNameTheProblem) {
  auto missing = TlsContext::server(
      {.cert_file = "/nonexistent/cert.pem", .key_file = "/nonexistent/key.pem"});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, "tls.config");
  EXPECT_NE(missing.error().message.find("/nonexistent/cert.pem"), std::string::npos);

  auto empty = TlsContext::server({});
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, "tls.config");

  auto bad_pin = TlsContext::client({.pins = {"not hex"}});
  ASSERT_FALSE(bad_pin);
  EXPECT_EQ(bad_pin.error().code, "tls.config");

  auto short_pin = TlsContext::client({.pins = {"ab:cd"}});
  ASSERT_FALSE(short_pin);
  EXPECT_NE(short_pin.error().message.find("64"), std::string::npos);

  auto bad_ca = TlsContext::client({.ca_file = "/nonexistent/ca.pem"});
  ASSERT_FALSE(bad_ca);
  EXPECT_NE(bad_ca.error().message.find("/nonexistent/ca.pem"), std::string::npos);
}

TEST(Tls, KeyThatDoesNotMatchTheCertificateIsRefused) {
  REQUIRE_PKI();
  auto mismatched = TlsContext::server({.cert_file = pki->server_cert, .key_file = pki->self_key});
  ASSERT_FALSE(mismatched);
  EXPECT_EQ(mismatched.error().code, "tls.config");
  EXPECT_NE(mismatched.error().message.find("does not belong"), std::string::npos)
      << mismatched.error().describe();
}

} // namespace
} // namespace mailgate::net

namespace mailgate::net {
namespace {

TEST(Tls, BytesThatArriveBeforeTheHandlerIsSetAreKept) {
  REQUIRE_PKI();
  TestLoop loop;
  RecordingHandler server_handler;
  ConnectionPtr server_conn;
  auto later = Timer::create(*loop);
  auto listener = Listener::listen(*loop, Endpoint{"127.0.0.1", 0}, [&](ConnectionPtr c) {
    server_conn = std::move(c);
    later->start(milliseconds(30), [&] { server_conn->setHandler(&server_handler); });
  });
  ASSERT_TRUE(listener);
  (*listener)->setTls(caIssuedServer(*pki));
  const std::string message = test::pattern(100000, 3);
  server_handler.on_read = [&](std::span<const char>) {
    if (server_handler.received.size() == message.size()) {
      loop->stop();
    }
  };
  ConnectionPtr client;
  auto pending =
      connect(*loop, (*listener)->endpoint(), verifiedTls(*pki), [&](Result<ConnectionPtr> r) {
        ASSERT_TRUE(r) << r.error().describe();
        client = std::move(*r);
        client->write(message);
      });
  loop.run();
  EXPECT_TRUE(server_handler.received == message);
}

TEST(Tls, PausedReadingHoldsDecryptedDataUntilResumed) {
  REQUIRE_PKI();
  TestLoop loop;
  auto resume = Timer::create(*loop);
  int pauses = 0;
  const std::string message = test::pattern(1024 * 1024, 4);
  test::RecordingServer server(*loop, caIssuedServer(*pki));
  // Pause after every piece and resume a little later: every byte still arrives, in order.
  server.handler.on_read = [&](std::span<const char>) {
    if (server.handler.received.size() == message.size()) {
      loop->stop();
      return;
    }
    ++pauses;
    server.conn->pauseRead();
    resume->start(milliseconds(0), [&] { server.conn->resumeRead(); });
  };
  ConnectionPtr client;
  auto pending = connect(*loop, server.endpoint(), verifiedTls(*pki), [&](Result<ConnectionPtr> r) {
    ASSERT_TRUE(r) << r.error().describe();
    client = std::move(*r);
    client->write(message);
  });
  loop.run(std::chrono::seconds(60));
  EXPECT_TRUE(server.handler.received == message);
  EXPECT_GT(pauses, 1);
}

TEST(Tls, GracefulCloseSendsCloseNotify) {
  REQUIRE_PKI();
  TestLoop loop;
  test::RecordingServer server(*loop, caIssuedServer(*pki));
  RecordingHandler client_handler;
  const auto both_closed = test::stopAfter(loop, 2);
  server.handler.on_close = both_closed;
  client_handler.on_close = both_closed;
  ConnectionPtr client;
  auto pending = connect(*loop, server.endpoint(), verifiedTls(*pki), [&](Result<ConnectionPtr> r) {
    ASSERT_TRUE(r) << r.error().describe();
    client = std::move(*r);
    client->setHandler(&client_handler);
    client->write("* BYE\r\n");
    client->close();
  });
  loop.run();
  EXPECT_EQ(server.handler.received, "* BYE\r\n");
  EXPECT_FALSE(server.handler.close_error);
  EXPECT_FALSE(client_handler.close_error);
}

} // namespace
} // namespace mailgate::net

// net/'s public headers must not bring libuv or OpenSSL into other folders.
#include "net/backoff.h"
#include "net/connection.h"
#include "net/connector.h"
#include "net/digest.h"
#include "net/endpoint.h"
#include "net/http_client.h"
#include "net/listener.h"
#include "net/loop.h"
#include "net/timer.h"
#include "net/tls_context.h"

#include <gtest/gtest.h>

#ifdef UV_VERSION_MAJOR
#error "a public net/ header includes <uv.h>"
#endif
#ifdef OPENSSL_VERSION_NUMBER
#error "a public net/ header includes OpenSSL"
#endif
#ifdef CURLINC_CURL_H
#error "a public net/ header includes <curl/curl.h>"
#endif
#ifdef HEADER_SSL_H
#error "a public net/ header includes <openssl/ssl.h>"
#endif

TEST(NetPublicHeaders, DoNotExposeLibuvOrOpenssl) {
  SUCCEED();
}

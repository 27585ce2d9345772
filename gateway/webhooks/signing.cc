#include "gateway/webhooks/signing.h"

#include <algorithm>
#include <array>
#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace mailgate::webhooks {

namespace {

std::string hex(const unsigned char* bytes, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    out += kDigits[bytes[i] >> 4];
    out += kDigits[bytes[i] & 0x0f];
  }
  return out;
}

bool listTakes(const std::vector<std::string>& list, std::string_view name) {
  return std::ranges::any_of(list, [&](const std::string& entry) {
    return entry == "*" || (!name.empty() && entry == name);
  });
}

} // namespace

std::string signature(const Secret& key, std::string_view body) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int len = 0;
  const std::string& k = key.reveal();
  // HMAC() with a SHA-256 digest cannot fail for in-memory input; a null result would mean the
  // library is broken, and an empty signature then fails every receiver's check (never a pass).
  if (HMAC(EVP_sha256(), k.data(), static_cast<int>(k.size()),
           reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac.data(),
           &len) == nullptr) {
    return {};
  }
  return "sha256=" + hex(mac.data(), len);
}

bool signatureMatches(const Secret& key, std::string_view body, std::string_view header) {
  std::string expected = signature(key, body);
  if (expected.empty()) {
    return false;
  }
  std::string got(header);
  std::ranges::transform(got, got.begin(), [](char c) {
    return c >= 'A' && c <= 'F' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  return constantTimeEquals(expected, got);
}

bool wants(const config::Webhook& hook, std::string_view type, std::string_view tenant) {
  if (!listTakes(hook.events, type)) {
    return false;
  }
  if (tenant.empty()) {
    return std::ranges::find(hook.tenants, std::string("*")) != hook.tenants.end();
  }
  return listTakes(hook.tenants, tenant);
}

} // namespace mailgate::webhooks

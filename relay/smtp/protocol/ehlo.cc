#include "relay/smtp/protocol/ehlo.h"

#include <algorithm>

namespace mailgate::relay::smtp {
namespace {

std::string toUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') {
      c = static_cast<char>(c - 32);
    }
  }
  return out;
}

std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  while (pos < s.size()) {
    while (pos < s.size() && (s[pos] == ' ' || s[pos] == '\t')) {
      ++pos;
    }
    std::size_t end = pos;
    while (end < s.size() && s[end] != ' ' && s[end] != '\t') {
      ++end;
    }
    if (end > pos) {
      out.push_back(s.substr(pos, end - pos));
    }
    pos = end;
  }
  return out;
}

void addMechanisms(EhloCapabilities& caps, const std::vector<std::string_view>& list,
                   std::size_t from) {
  caps.auth = true;
  for (std::size_t i = from; i < list.size(); ++i) {
    std::string mech = toUpper(list[i]);
    if (mech.size() <= 20 && !caps.hasAuthMechanism(mech)) {
      caps.auth_mechanisms.push_back(std::move(mech));
    }
  }
}

} // namespace

bool EhloCapabilities::hasAuthMechanism(std::string_view mechanism) const {
  const std::string wanted = toUpper(mechanism);
  return std::find(auth_mechanisms.begin(), auth_mechanisms.end(), wanted) != auth_mechanisms.end();
}

EhloCapabilities parseEhloCapabilities(const Reply& reply) {
  EhloCapabilities caps;
  for (std::size_t i = 1; i < reply.lines.size(); ++i) {
    const std::vector<std::string_view> w = words(reply.lines[i]);
    if (w.empty()) {
      continue;
    }
    const std::string keyword = toUpper(w[0]);
    if (keyword == "PIPELINING") {
      caps.pipelining = true;
    } else if (keyword == "STARTTLS") {
      caps.starttls = true;
    } else if (keyword == "8BITMIME") {
      caps.eight_bit_mime = true;
    } else if (keyword == "SMTPUTF8") {
      caps.smtputf8 = true;
    } else if (keyword == "ENHANCEDSTATUSCODES") {
      caps.enhanced_status_codes = true;
    } else if (keyword == "CHUNKING") {
      caps.chunking = true;
    } else if (keyword == "DSN") {
      caps.dsn = true;
    } else if (keyword == "SIZE") {
      caps.size = true;
      if (w.size() > 1 && w[1].size() <= 19 &&
          std::all_of(w[1].begin(), w[1].end(), [](char c) { return c >= '0' && c <= '9'; })) {
        std::uint64_t n = 0;
        for (const char c : w[1]) {
          n = n * 10 + static_cast<std::uint64_t>(c - '0');
        }
        caps.max_size = n;
      }
    } else if (keyword == "AUTH") {
      addMechanisms(caps, w, 1);
    } else if (keyword.starts_with("AUTH=")) {
      // Pre-RFC 4954 form, still sent by some servers: "AUTH=LOGIN PLAIN".
      std::vector<std::string_view> list = w;
      list[0].remove_prefix(5);
      addMechanisms(caps, list, list[0].empty() ? 1 : 0);
    }
  }
  return caps;
}

} // namespace mailgate::relay::smtp

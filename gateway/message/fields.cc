#include "gateway/message/fields.h"

#include "gateway/message/submission.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <fmt/format.h>
#include <openssl/rand.h>

namespace mailgate::message::detail {

std::unexpected<Error> failWith(std::string_view code, std::string_view field,
                                std::string_view what, std::string hint) {
  std::string message(field);
  message += ": ";
  message += what;
  return std::unexpected<Error>(Error(std::string(code), std::move(message), std::move(hint)));
}

std::string echo(std::string_view text) {
  std::string out = "\"";
  for (const char c : text.substr(0, kMaxEchoBytes)) {
    const bool printable = c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
    out.push_back(printable ? c : '?');
  }
  out += '"';
  if (text.size() > kMaxEchoBytes) {
    out += "...";
  }
  return out;
}

char lowerAscii(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return lowerAscii(x) == lowerAscii(y);
         });
}

bool startsWithIgnoreCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && equalsIgnoreCase(text.substr(0, prefix.size()), prefix);
}

bool isAscii(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

bool isWsp(char c) {
  return c == ' ' || c == '\t';
}

bool isFieldName(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(),
                                      [](char c) { return c > 0x20 && c < 0x7f && c != ':'; });
}

TextProblem headerTextProblem(std::string_view text) {
  TextProblem found = TextProblem::kNone;
  for (const char c : text) {
    if (c == '\r' || c == '\n' || c == '\0') {
      return TextProblem::kInjection;
    }
    if ((c > 0 && c < 0x20 && c != '\t') || c == 0x7f) {
      found = TextProblem::kControl;
    }
  }
  return found;
}

std::optional<Error> checkHeaderText(std::string_view field, std::string_view text) {
  switch (headerTextProblem(text)) {
  case TextProblem::kInjection:
    return failWith(kHeaderInjection, field, "holds a line break (CR or LF) or a NUL byte",
                    "header fields are one logical line: remove CR, LF and NUL; the gateway "
                    "folds long values itself")
        .error();
  case TextProblem::kControl:
    return failWith(kInvalid, field, "holds a control character",
                    "remove control characters (tab is allowed)")
        .error();
  case TextProblem::kNone:
    break;
  }
  return std::nullopt;
}

bool isAtext(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
    return true;
  }
  constexpr std::string_view kSpecials = "!#$%&'*+-/=?^_`{|}~";
  return kSpecials.find(c) != std::string_view::npos;
}

bool isDotAtomText(std::string_view text) {
  if (text.empty() || text.front() == '.' || text.back() == '.' ||
      text.find("..") != std::string_view::npos) {
    return false;
  }
  return std::all_of(text.begin(), text.end(), [](char c) { return c == '.' || isAtext(c); });
}

bool isMessageId(std::string_view id) {
  if (id.size() < 5 || id.size() > kMaxMessageIdBytes || id.front() != '<' || id.back() != '>') {
    return false;
  }
  id = id.substr(1, id.size() - 2);
  const std::size_t at = id.rfind('@');
  if (at == std::string_view::npos) {
    return false;
  }
  const std::string_view left = id.substr(0, at);
  const std::string_view right = id.substr(at + 1);
  if (!isDotAtomText(left)) {
    return false;
  }
  if (right.size() >= 2 && right.front() == '[' && right.back() == ']') {
    const std::string_view dtext = right.substr(1, right.size() - 2);
    return std::all_of(dtext.begin(), dtext.end(), [](char c) {
      return c > 0x20 && c < 0x7f && c != '[' && c != ']' && c != '\\';
    });
  }
  return isDotAtomText(right);
}

bool isMessageIdToken(std::string_view id) {
  return id.size() >= 3 && id.front() == '<' && id.back() == '>' &&
         std::all_of(id.begin() + 1, id.end() - 1,
                     [](char c) { return c > 0x20 && c < 0x7f && c != '<' && c != '>'; });
}

Result<std::string> generateMessageId(std::string_view domain) {
  std::array<unsigned char, 16> random{};
  if (RAND_bytes(random.data(), static_cast<int>(random.size())) != 1) {
    return fail(std::string(kInternal), "Message-ID: the random number generator failed",
                "retry later; the gateway's host has no working source of randomness");
  }
  constexpr std::string_view kAlphabet = "abcdefghijklmnopqrstuvwxyz234567";
  std::string id = "<";
  // 128 bits read five at a time, most significant first: 26 characters, the last one holding
  // the final three bits.
  unsigned buffer = 0;
  int bits = 0;
  for (const unsigned char byte : random) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      id.push_back(kAlphabet[(buffer >> bits) & 0x1f]);
    }
  }
  if (bits > 0) {
    id.push_back(kAlphabet[(buffer << (5 - bits)) & 0x1f]);
  }
  id += '@';
  id +=
      isDotAtomText(domain) && domain.size() <= 200 ? domain : std::string_view("mailgate.invalid");
  id += '>';
  return id;
}

std::string formatDate(int64_t now_ms) {
  using namespace std::chrono;
  constexpr int64_t kMaxMs = 253402300799999; // 9999-12-31T23:59:59.999Z
  const int64_t ms = std::clamp<int64_t>(now_ms, 0, kMaxMs);
  const sys_time<milliseconds> at{milliseconds(ms)};
  const sys_days day = floor<days>(at);
  const year_month_day ymd(day);
  const hh_mm_ss<seconds> time(floor<seconds>(at - day));
  constexpr std::array<std::string_view, 7> kDays = {"Sun", "Mon", "Tue", "Wed",
                                                     "Thu", "Fri", "Sat"};
  constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  return fmt::format("{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000", kDays[weekday(day).c_encoding()],
                     static_cast<unsigned>(ymd.day()),
                     kMonths[static_cast<unsigned>(ymd.month()) - 1], static_cast<int>(ymd.year()),
                     time.hours().count(), time.minutes().count(), time.seconds().count());
}

} // namespace mailgate::message::detail

namespace mailgate::message {

int httpStatus(std::string_view code) {
  if (code == kInvalidJson || code == kHeaderInjection) {
    return 400;
  }
  if (code == kTooLarge) {
    return 413;
  }
  if (code == kInvalid || code == kTooManyRecipients || code == kTooManyAttachments) {
    return 422;
  }
  return 500;
}

} // namespace mailgate::message

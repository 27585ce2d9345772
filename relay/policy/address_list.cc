#include "relay/policy/address_list.h"

#include "relay/policy/message_headers.h"

#include <algorithm>
#include <gmime/gmime.h>
#include <memory>
#include <optional>
#include <utility>

namespace mailgate::relay::policy {

namespace {

constexpr std::string_view kNotAList = "holds text that is not an address list";
constexpr std::string_view kUnclosed = "holds an unclosed quote, comment or domain literal";

struct GObjectUnref {
  void operator()(gpointer object) const { g_object_unref(object); }
};
using AddressListPtr = std::unique_ptr<InternetAddressList, GObjectUnref>;

char lowerAscii(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return lowerAscii(x) == lowerAscii(y);
         });
}

bool isHigh(char c) {
  return static_cast<unsigned char>(c) >= 0x80;
}

// RFC 5322 atext; bytes above 0x7f too (RFC 6532), which the byte check has already limited.
bool isAtext(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || isHigh(c)) {
    return true;
  }
  return std::string_view("!#$%&'*+-/=?^_`{|}~").find(c) != std::string_view::npos;
}

// The byte-level checks, before any parsing; nullopt when the bytes are fine.
std::optional<std::string_view> byteProblem(std::string_view value, HeaderBytes bytes) {
  bool high = false;
  for (const char c : value) {
    if (c == '\0') {
      return "holds a NUL byte";
    }
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) {
      return "holds a control character";
    }
    high = high || u >= 0x80;
  }
  if (!high) {
    return std::nullopt;
  }
  if (bytes == HeaderBytes::kAscii) {
    return "holds bytes above 0x7f (encode names as RFC 2047 words, or send with 8BITMIME or "
           "SMTPUTF8)";
  }
  if (!g_utf8_validate(value.data(), static_cast<gssize>(value.size()), nullptr)) {
    return "holds bytes that are not UTF-8 (encode names as RFC 2047 words)";
  }
  // C1 controls, U+0080..U+009F: C2 80..C2 9F in valid UTF-8 (NEL, U+0085, ends a line for some
  // readers).
  for (std::size_t i = 0; i + 1 < value.size(); ++i) {
    const auto u = static_cast<unsigned char>(value[i]);
    const auto next = static_cast<unsigned char>(value[i + 1]);
    if (u == 0xc2 && next >= 0x80 && next <= 0x9f) {
      return "holds a control character";
    }
  }
  return std::nullopt;
}

// --- Tokens --------------------------------------------------------------------------------------

enum class Kind {
  kAtom,
  kQuoted,  // a quoted string, quotes included
  kLiteral, // a domain literal, brackets included
  kDot,
  kAt,
  kOpen,  // '<'
  kClose, // '>'
  kComma,
  kColon,
  kSemicolon,
  kEnd,
};

struct Token {
  Kind kind = Kind::kEnd;
  std::size_t begin = 0; // [begin, end) in the field
  std::size_t end = 0;
  bool spaced = false; // white space or a comment stands right before it
};

bool isWord(Kind kind) {
  return kind == Kind::kAtom || kind == Kind::kQuoted;
}

// Tokens of the field, ending with kEnd; or the phrase for a field that cannot be split into
// tokens (an unclosed quote, comment or literal; a ')', ']', '[' or '\' where none can stand).
std::expected<std::vector<Token>, std::string_view> tokenize(std::string_view value) {
  std::vector<Token> tokens;
  bool spaced = false;
  std::size_t i = 0;
  const std::size_t n = value.size();
  auto add = [&](Kind kind, std::size_t begin, std::size_t end) {
    tokens.push_back(Token{kind, begin, end, spaced});
    spaced = false;
  };
  while (i < n) {
    const char c = value[i];
    if (c == ' ' || c == '\t') {
      spaced = true;
      ++i;
      continue;
    }
    if (c == '(') {
      std::size_t depth = 1;
      for (++i; i < n && depth > 0; ++i) {
        if (value[i] == '\\') {
          ++i; // the quoted pair's second byte, whatever it is
        } else if (value[i] == '(') {
          ++depth;
        } else if (value[i] == ')') {
          --depth;
        }
      }
      if (depth > 0 || i > n) {
        return std::unexpected(kUnclosed);
      }
      spaced = true;
      continue;
    }
    if (c == '"') {
      std::size_t j = i + 1;
      while (j < n && value[j] != '"') {
        j += value[j] == '\\' ? 2 : 1;
      }
      if (j >= n) {
        return std::unexpected(kUnclosed);
      }
      add(Kind::kQuoted, i, j + 1);
      i = j + 1;
      continue;
    }
    if (c == '[') {
      std::size_t j = i + 1;
      while (j < n && value[j] != ']') {
        if (value[j] == '[' || value[j] == '\\') {
          return std::unexpected(kNotAList);
        }
        ++j;
      }
      if (j >= n) {
        return std::unexpected(kUnclosed);
      }
      add(Kind::kLiteral, i, j + 1);
      i = j + 1;
      continue;
    }
    if (isAtext(c)) {
      std::size_t j = i + 1;
      while (j < n && isAtext(value[j])) {
        ++j;
      }
      add(Kind::kAtom, i, j);
      i = j;
      continue;
    }
    Kind kind = Kind::kEnd;
    switch (c) {
    case '.':
      kind = Kind::kDot;
      break;
    case '@':
      kind = Kind::kAt;
      break;
    case '<':
      kind = Kind::kOpen;
      break;
    case '>':
      kind = Kind::kClose;
      break;
    case ',':
      kind = Kind::kComma;
      break;
    case ':':
      kind = Kind::kColon;
      break;
    case ';':
      kind = Kind::kSemicolon;
      break;
    default:
      return std::unexpected(kNotAList); // ')', ']' or '\' outside what they belong to
    }
    add(kind, i, i + 1);
    ++i;
  }
  add(Kind::kEnd, n, n);
  return tokens;
}

// --- The grammar -------------------------------------------------------------------------------

// A mailbox's addr-spec as the grammar found it: [begin, end) of the field.
struct Span {
  std::size_t begin = 0;
  std::size_t end = 0;
};

// True when tokens [a, b) are a phrase: words and dots, spaced as they like.
bool isPhrase(const std::vector<Token>& t, std::size_t a, std::size_t b) {
  return a < b && std::all_of(t.begin() + static_cast<std::ptrdiff_t>(a),
                              t.begin() + static_cast<std::ptrdiff_t>(b), [](const Token& token) {
                                return isWord(token.kind) || token.kind == Kind::kDot;
                              });
}

// The addr-spec tokens [a, b) make, or nullopt: word *("." word) ["@" domain], written without
// white space or comments between its tokens.
std::optional<Span> addrSpec(const std::vector<Token>& t, std::size_t a, std::size_t b) {
  if (a >= b) {
    return std::nullopt;
  }
  for (std::size_t i = a + 1; i < b; ++i) {
    if (t[i].spaced) {
      return std::nullopt;
    }
  }
  std::size_t i = a;
  // Local part: words separated by single dots.
  while (true) {
    if (i >= b || !isWord(t[i].kind)) {
      return std::nullopt;
    }
    ++i;
    if (i < b && t[i].kind == Kind::kDot) {
      ++i;
      continue;
    }
    break;
  }
  if (i < b) {
    if (t[i].kind != Kind::kAt) {
      return std::nullopt;
    }
    ++i;
    if (i + 1 == b && t[i].kind == Kind::kLiteral) {
      i = b;
    } else {
      // Domain: atoms separated by single dots.
      while (true) {
        if (i >= b || t[i].kind != Kind::kAtom) {
          return std::nullopt;
        }
        ++i;
        if (i < b && t[i].kind == Kind::kDot) {
          ++i;
          continue;
        }
        break;
      }
    }
    if (i != b) {
      return std::nullopt;
    }
  }
  return Span{t[a].begin, t[b - 1].end};
}

bool inAddrSpec(Kind kind) {
  return isWord(kind) || kind == Kind::kDot || kind == Kind::kAt || kind == Kind::kLiteral;
}

struct Grammar {
  std::vector<Span> mailboxes;
  std::size_t groups = 0;
};

// The mailboxes of the field as the grammar above reads it, or nullopt when it does not. No
// recursion: nested groups are a depth count.
std::optional<Grammar> readGrammar(const std::vector<Token>& t) {
  Grammar g;
  std::size_t depth = 0;
  std::size_t k = 0;
  // After a mailbox or a group's ';': only ',', ';' or the end.
  auto separatorFollows = [&] {
    const Kind next = t[k].kind;
    return next == Kind::kComma || next == Kind::kSemicolon || next == Kind::kEnd;
  };
  // '<' addr-spec '>' at k; leaves k after the '>'.
  auto angle = [&]() -> bool {
    ++k;
    std::size_t j = k;
    while (inAddrSpec(t[j].kind)) {
      ++j;
    }
    if (t[j].kind != Kind::kClose) {
      return false; // also "<>" and a source route "<@a:b@c>"
    }
    const auto span = addrSpec(t, k, j);
    if (!span) {
      return false;
    }
    g.mailboxes.push_back(*span);
    k = j + 1;
    return true;
  };
  while (t[k].kind != Kind::kEnd) {
    const Kind kind = t[k].kind;
    if (kind == Kind::kComma) {
      ++k;
      continue;
    }
    if (kind == Kind::kSemicolon) {
      if (depth == 0) {
        return std::nullopt;
      }
      --depth;
      ++k;
      if (!separatorFollows()) {
        return std::nullopt;
      }
      continue;
    }
    if (kind == Kind::kOpen) {
      if (!angle() || !separatorFollows()) {
        return std::nullopt;
      }
      continue;
    }
    std::size_t j = k;
    while (inAddrSpec(t[j].kind)) {
      ++j;
    }
    if (t[j].kind == Kind::kOpen) {
      if (!isPhrase(t, k, j)) {
        return std::nullopt;
      }
      k = j;
      if (!angle() || !separatorFollows()) {
        return std::nullopt;
      }
      continue;
    }
    if (t[j].kind == Kind::kColon) {
      if (!isPhrase(t, k, j)) {
        return std::nullopt;
      }
      ++depth;
      ++g.groups;
      k = j + 1;
      continue;
    }
    const auto span = addrSpec(t, k, j);
    if (!span) {
      return std::nullopt;
    }
    g.mailboxes.push_back(*span);
    k = j;
    if (!separatorFollows()) {
      return std::nullopt;
    }
  }
  return g;
}

} // namespace

std::expected<ParsedAddressList, std::string> parseAddressList(std::string_view value,
                                                               const AddressListRules& rules) {
  if (auto problem = byteProblem(value, rules.bytes)) {
    return std::unexpected(std::string(*problem));
  }
  if (static_cast<std::size_t>(std::count(value.begin(), value.end(), ':')) > rules.max_colons) {
    return std::unexpected("holds more than " + std::to_string(rules.max_colons) + " ':' (groups)");
  }
  const auto tokens = tokenize(value);
  if (!tokens) {
    return std::unexpected(std::string(tokens.error()));
  }
  const auto grammar = readGrammar(*tokens);
  if (!grammar) {
    return std::unexpected(std::string(kNotAList));
  }
  if (grammar->mailboxes.size() > rules.max_mailboxes) {
    return std::unexpected("holds more than " + std::to_string(rules.max_mailboxes) + " addresses");
  }
  ParsedAddressList parsed;
  parsed.groups = grammar->groups;
  initGmime();
  const std::string text(value);
  // NULL options: GMime's defaults (loose parsing). The grammar check above is the strict part;
  // loose parsing of a field that passed it must come out the same, which is checked below.
  const AddressListPtr list(internet_address_list_parse(nullptr, text.c_str()));
  if (!list) {
    if (!grammar->mailboxes.empty()) {
      return std::unexpected("is not an address list");
    }
    return parsed;
  }
  // Groups flattened without recursion; the lists are borrowed from `list`.
  std::vector<std::pair<InternetAddressList*, int>> stack{{list.get(), 0}};
  while (!stack.empty()) {
    auto& [current, index] = stack.back();
    if (index >= internet_address_list_length(current)) {
      stack.pop_back();
      continue;
    }
    InternetAddress* address = internet_address_list_get_address(current, index++);
    if (INTERNET_ADDRESS_IS_GROUP(address)) {
      InternetAddressList* members =
          internet_address_group_get_members(INTERNET_ADDRESS_GROUP(address));
      if (members != nullptr) {
        stack.emplace_back(members, 0);
      }
      continue;
    }
    if (!INTERNET_ADDRESS_IS_MAILBOX(address)) {
      continue;
    }
    if (parsed.mailboxes.size() >= grammar->mailboxes.size()) {
      return std::unexpected(std::string(kNotAList)); // GMime found more than was written
    }
    auto* mailbox = INTERNET_ADDRESS_MAILBOX(address);
    const char* name = internet_address_get_name(address);
    const char* addr = internet_address_mailbox_get_addr(mailbox);
    const char* idn = internet_address_mailbox_get_idn_addr(mailbox);
    ParsedMailbox m;
    m.name = name != nullptr ? name : "";
    m.addr = addr != nullptr ? addr : "";
    m.envelope = idn != nullptr && *idn != '\0' ? idn : m.addr;
    // GMime gives an A-label domain ("xn--...") back decoded, and its IDNA form lower-cased:
    // either form may be the written one, in any ASCII case.
    const Span span = grammar->mailboxes[parsed.mailboxes.size()];
    const std::string_view written = value.substr(span.begin, span.end - span.begin);
    if (written != m.addr && !equalsIgnoreCase(written, m.envelope)) {
      return std::unexpected(std::string(kNotAList));
    }
    parsed.mailboxes.push_back(std::move(m));
  }
  if (parsed.mailboxes.size() != grammar->mailboxes.size()) {
    return std::unexpected(std::string(kNotAList));
  }
  return parsed;
}

} // namespace mailgate::relay::policy

#include "imap/protocol/response_parser.h"

#include "imap/protocol/ascii.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace mailgate::imap::protocol {
namespace {

constexpr std::size_t kQuoteLimit = 64; // bytes of input an error message may show

// Up to kQuoteLimit bytes of `s`, stopping at a line end, with every byte outside printable
// ASCII written as \xNN, so a hostile server cannot put control bytes into our logs.
std::string quoteInput(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < kQuoteLimit; ++i) {
    const auto u = static_cast<unsigned char>(s[i]);
    if (u == '\r' || u == '\n') {
      break;
    }
    if (u >= 0x20 && u < 0x7f && u != '\\') {
      out += static_cast<char>(u);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

// The literal announced at the end of `line` ("{n}", "{n+}", "~{n}"), if any. A count too large
// for uint64 saturates (and is then refused by the literal limit).
std::optional<uint64_t> announcedLiteral(std::string_view line) {
  if (line.size() < 3 || line.back() != '}') {
    return std::nullopt;
  }
  std::size_t i = line.size() - 1;
  if (line[i - 1] == '+') {
    --i;
  }
  const std::size_t digits_end = i;
  while (i > 0 && ascii::isDigit(line[i - 1])) {
    --i;
  }
  if (i == digits_end || i == 0 || line[i - 1] != '{') {
    return std::nullopt;
  }
  uint64_t n = 0;
  for (std::size_t k = i; k < digits_end; ++k) {
    const auto d = static_cast<uint64_t>(line[k] - '0');
    n = n > (UINT64_MAX - d) / 10 ? UINT64_MAX : n * 10 + d;
  }
  return n;
}

enum class AtomMode {
  kPlain,    // astring-ish: stops at SP, CTL, ( ) { "
  kKeyword,  // also stops at [ and ] (keywords, response code names)
  kFetchAtt, // also takes "[...]" (spaces and parentheses inside) and a following "<...>"
};

// Recursive-descent parser over one framed response. Every method returns false after recording
// the first error; the framer guarantees the response ends in LF, that no NUL or bare CR occurs
// outside literals, and that every literal announced at a line end is complete.
class Reader {
public:
  Reader(std::string_view in, const ParserLimits& limits) : in_(in), limits_(limits) {}

  Result<Response> parse() {
    Response r;
    if (!parseResponse(r)) {
      return std::unexpected(std::move(*error_));
    }
    return r;
  }

private:
  bool syntax(std::string_view what) {
    if (!error_) {
      error_ = Error("imap.syntax", std::string(what) + " at byte " + std::to_string(pos_) +
                                        " near \"" + quoteInput(in_.substr(pos_)) + "\"");
    }
    return false;
  }
  bool limit(std::string message) {
    if (!error_) {
      error_ = Error("imap.limit", std::move(message));
    }
    return false;
  }

  [[nodiscard]] bool atEnd() const { return pos_ >= in_.size(); }
  // NUL is never in a line outside a literal (the framer refuses it), so it can mean "no byte".
  [[nodiscard]] char peek() const { return atEnd() ? '\0' : in_[pos_]; }
  [[nodiscard]] bool atLineEnd() const { return atEnd() || in_[pos_] == '\r' || in_[pos_] == '\n'; }
  void skipLineEnd() {
    if (peek() == '\r') {
      ++pos_;
    }
    if (peek() == '\n') {
      ++pos_;
    }
  }
  void skipSpaces() {
    while (peek() == ' ') {
      ++pos_;
    }
  }
  bool needSpace(std::string_view where) {
    if (peek() != ' ') {
      return syntax("expected a space " + std::string(where));
    }
    skipSpaces();
    return true;
  }
  bool expect(char c, std::string_view what) {
    if (peek() != c) {
      return syntax(what);
    }
    ++pos_;
    return true;
  }
  bool countValue() {
    if (++values_ > limits_.max_values) {
      return limit("more than " + std::to_string(limits_.max_values) + " values in one response");
    }
    return true;
  }
  // Structured responses end exactly here: trailing spaces allowed, nothing else.
  bool finish() {
    skipSpaces();
    if (!atLineEnd()) {
      return syntax("unexpected bytes");
    }
    skipLineEnd();
    if (!atEnd()) {
      return syntax("unexpected bytes after the response");
    }
    return true;
  }
  std::string_view restOfLine() {
    const std::size_t start = pos_;
    while (!atLineEnd()) {
      ++pos_;
    }
    return in_.substr(start, pos_ - start);
  }

  std::string_view readAtom(AtomMode mode) {
    const std::size_t start = pos_;
    while (!atEnd()) {
      const char c = in_[pos_];
      const auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u == 0x7f || c == '(' || c == ')' || c == '{' || c == '"') {
        break;
      }
      if (mode == AtomMode::kKeyword && (c == '[' || c == ']')) {
        break;
      }
      if (mode == AtomMode::kFetchAtt && (c == '[' || (c == '<' && pos_ > start))) {
        const char close = c == '[' ? ']' : '>';
        std::size_t k = pos_ + 1;
        while (k < in_.size() && in_[k] != close && in_[k] != '\r' && in_[k] != '\n') {
          ++k;
        }
        if (k >= in_.size() || in_[k] != close) {
          break;
        }
        pos_ = k + 1;
        continue;
      }
      ++pos_;
    }
    return in_.substr(start, pos_ - start);
  }

  bool readNumber(uint64_t& out) {
    const std::size_t start = pos_;
    uint64_t n = 0;
    while (ascii::isDigit(peek())) {
      const auto d = static_cast<uint64_t>(in_[pos_] - '0');
      if (n > (UINT64_MAX - d) / 10) {
        return syntax("number too large");
      }
      n = n * 10 + d;
      ++pos_;
    }
    if (pos_ == start) {
      return syntax("expected a number");
    }
    out = n;
    return true;
  }
  bool readNumber32(uint32_t& out) {
    const std::size_t start = pos_;
    uint64_t n = 0;
    if (!readNumber(n)) {
      return false;
    }
    if (n > UINT32_MAX) {
      pos_ = start;
      return syntax("number larger than 32 bits");
    }
    out = static_cast<uint32_t>(n);
    return true;
  }

  [[nodiscard]] bool atString() const {
    const char c = peek();
    return c == '"' || c == '{' || (c == '~' && pos_ + 1 < in_.size() && in_[pos_ + 1] == '{');
  }

  // A quoted string or a literal (RFC 9051 "string", plus literal8).
  bool readString(std::string& out, bool& literal8) {
    literal8 = false;
    if (peek() == '"') {
      ++pos_;
      while (true) {
        if (atLineEnd()) {
          return syntax("unterminated quoted string");
        }
        const char c = in_[pos_];
        if (c == '"') {
          ++pos_;
          return true;
        }
        if (c == '\\') {
          ++pos_;
          if (atLineEnd()) {
            return syntax("unterminated quoted string");
          }
        }
        out += in_[pos_++];
      }
    }
    if (peek() == '~') {
      literal8 = true;
      ++pos_;
    }
    if (!expect('{', "expected a string")) {
      return false;
    }
    uint64_t n = 0;
    if (!readNumber(n)) {
      return false;
    }
    if (peek() == '+') {
      ++pos_;
    }
    if (!expect('}', "expected '}' closing a literal announcement")) {
      return false;
    }
    if (atEnd() || !atLineEnd()) {
      return syntax("expected a line end after a literal announcement");
    }
    skipLineEnd();
    if (n > limits_.max_literal_bytes) {
      return limit("literal of " + std::to_string(n) + " bytes");
    }
    if (n > in_.size() - pos_) {
      return syntax("literal shorter than announced");
    }
    out.assign(in_.substr(pos_, static_cast<std::size_t>(n)));
    pos_ += static_cast<std::size_t>(n);
    return true;
  }

  // astring: an atom (']' allowed) or a string.
  bool readAstring(std::string& out) {
    if (atString()) {
      bool literal8 = false;
      return readString(out, literal8);
    }
    const std::string_view atom = readAtom(AtomMode::kPlain);
    if (atom.empty()) {
      return syntax("expected an astring");
    }
    out.assign(atom);
    return true;
  }

  bool readValue(Value& v, uint32_t depth) {
    if (!countValue()) {
      return false;
    }
    if (peek() == '(') {
      if (depth + 1 > limits_.max_depth) {
        return limit("parentheses nested deeper than " + std::to_string(limits_.max_depth));
      }
      ++pos_;
      v.kind = Value::Kind::kList;
      while (true) {
        skipSpaces();
        if (peek() == ')') {
          ++pos_;
          return true;
        }
        if (atLineEnd()) {
          return syntax("unterminated list");
        }
        Value item;
        if (!readValue(item, depth + 1)) {
          return false;
        }
        v.items.push_back(std::move(item));
      }
    }
    if (atString()) {
      v.kind = Value::Kind::kString;
      return readString(v.text, v.literal8);
    }
    const std::string_view atom = readAtom(AtomMode::kFetchAtt);
    if (atom.empty()) {
      return syntax("expected a value");
    }
    if (ascii::iequals(atom, "NIL")) {
      v.kind = Value::Kind::kNil;
      return true;
    }
    v.text.assign(atom);
    v.kind = Value::Kind::kAtom;
    if (atom.size() <= 19 && std::all_of(atom.begin(), atom.end(), ascii::isDigit)) {
      v.kind = Value::Kind::kNumber;
      v.number = 0;
      for (const char c : atom) {
        v.number = v.number * 10 + static_cast<uint64_t>(c - '0');
      }
    }
    return true;
  }

  bool readList(Value& v, std::string_view what) {
    if (peek() != '(') {
      return syntax("expected '(' starting " + std::string(what));
    }
    return readValue(v, 0);
  }

  static std::vector<std::string> texts(const Value& list) {
    std::vector<std::string> out;
    out.reserve(list.items.size());
    for (const Value& item : list.items) {
      if (item.kind != Value::Kind::kList) {
        out.push_back(item.text);
      }
    }
    return out;
  }

  // ---- responses ----

  bool parseResponse(Response& r) {
    if (atLineEnd()) {
      return syntax("empty response line");
    }
    if (peek() == '+') {
      // Continuation: the text is the rest of the line ("+", "+ " and "+ text").
      ++pos_;
      if (peek() == ' ') {
        ++pos_;
      }
      r.kind = Response::Kind::kContinuation;
      r.continuation.assign(restOfLine());
      return true;
    }
    if (peek() == '*') {
      ++pos_;
      if (!needSpace("after '*'")) {
        return false;
      }
      r.kind = Response::Kind::kUntagged;
      return parseUntagged(r);
    }
    const std::string_view tag = readAtom(AtomMode::kPlain);
    if (tag.empty()) {
      return syntax("expected a tag, '*' or '+'");
    }
    if (!needSpace("after the tag")) {
      return false;
    }
    const std::size_t keyword_at = pos_;
    const std::string keyword = ascii::upper(readAtom(AtomMode::kKeyword));
    Status status = Status::kOk;
    if (!statusFor(keyword, status) || status == Status::kPreauth || status == Status::kBye) {
      pos_ = keyword_at;
      return syntax("expected OK, NO or BAD after the tag");
    }
    r.kind = Response::Kind::kTagged;
    r.tag.assign(tag);
    r.status.status = status;
    return parseStatusRest(r.status);
  }

  static bool statusFor(std::string_view keyword, Status& status) {
    if (keyword == "OK") {
      status = Status::kOk;
    } else if (keyword == "NO") {
      status = Status::kNo;
    } else if (keyword == "BAD") {
      status = Status::kBad;
    } else if (keyword == "PREAUTH") {
      status = Status::kPreauth;
    } else if (keyword == "BYE") {
      status = Status::kBye;
    } else {
      return false;
    }
    return true;
  }

  // After "OK": [SP] ["[" code "]" [SP]] text. The text is the rest of the first line; a server
  // whose text ends like a literal announcement has its "literal" framed and ignored.
  bool parseStatusRest(StatusResponse& s) {
    skipSpaces();
    if (peek() == '[') {
      const std::size_t open = pos_;
      ++pos_;
      const std::string_view name = readAtom(AtomMode::kKeyword);
      std::size_t close = pos_;
      while (close < in_.size() && in_[close] != ']' && in_[close] != '\r' && in_[close] != '\n') {
        ++close;
      }
      if (name.empty() || close >= in_.size() || in_[close] != ']') {
        pos_ = open; // not a code after all: everything is text
      } else {
        if (peek() == ' ') {
          ++pos_;
        }
        ResponseCode code;
        code.name = ascii::upper(name);
        code.raw.assign(in_.substr(pos_, close - pos_));
        interpretCode(code);
        s.code = std::move(code);
        pos_ = close + 1;
        skipSpaces();
      }
    }
    s.text.assign(restOfLine());
    return true;
  }

  static std::vector<std::string_view> words(std::string_view s) {
    std::vector<std::string_view> out;
    std::size_t pos = 0;
    while (pos < s.size()) {
      while (pos < s.size() && s[pos] == ' ') {
        ++pos;
      }
      const std::size_t start = pos;
      while (pos < s.size() && s[pos] != ' ') {
        ++pos;
      }
      if (pos > start) {
        out.push_back(s.substr(start, pos - start));
      }
    }
    return out;
  }

  static std::optional<uint64_t> plainNumber(std::string_view s) {
    if (s.empty() || s.size() > 19 || !std::all_of(s.begin(), s.end(), ascii::isDigit)) {
      return std::nullopt;
    }
    uint64_t n = 0;
    for (const char c : s) {
      n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    return n;
  }
  static std::optional<uint32_t> plainNumber32(std::string_view s) {
    const auto n = plainNumber(s);
    if (!n || *n > UINT32_MAX) {
      return std::nullopt;
    }
    return static_cast<uint32_t>(*n);
  }

  // Well-known codes into their fields; a malformed argument leaves the field unset (the raw
  // text stays), as a code is advice and never worth failing a connection over.
  static void interpretCode(ResponseCode& c) {
    const std::vector<std::string_view> args = words(c.raw);
    if (c.name == "UIDVALIDITY" || c.name == "UIDNEXT" || c.name == "UNSEEN") {
      if (args.size() == 1) {
        c.number = plainNumber32(args[0]);
      }
    } else if (c.name == "HIGHESTMODSEQ") {
      if (args.size() == 1) {
        c.modseq = plainNumber(args[0]);
      }
    } else if (c.name == "CAPABILITY") {
      for (const auto w : args) {
        c.capabilities.push_back(ascii::upper(w));
      }
    } else if (c.name == "PERMANENTFLAGS") {
      std::string_view inner = c.raw;
      if (!inner.empty() && inner.front() == '(') {
        inner.remove_prefix(1);
      }
      if (!inner.empty() && inner.back() == ')') {
        inner.remove_suffix(1);
      }
      for (const auto w : words(inner)) {
        c.flags.emplace_back(w);
      }
    } else if (c.name == "APPENDUID" && args.size() == 2) {
      auto validity = plainNumber32(args[0]);
      auto uids = SequenceSet::parse(args[1]);
      if (validity && uids) {
        c.uidvalidity = validity;
        c.uids = std::move(*uids);
      }
    } else if (c.name == "COPYUID" && args.size() == 3) {
      auto validity = plainNumber32(args[0]);
      auto source = SequenceSet::parse(args[1]);
      auto target = SequenceSet::parse(args[2]);
      if (validity && source && target) {
        c.uidvalidity = validity;
        c.uids = std::move(*source);
        c.target_uids = std::move(*target);
      }
    }
  }

  bool parseUntagged(Response& r) {
    if (ascii::isDigit(peek())) {
      uint32_t n = 0;
      if (!readNumber32(n) || !needSpace("after the message number")) {
        return false;
      }
      const std::size_t keyword_at = pos_;
      const std::string keyword = ascii::upper(readAtom(AtomMode::kKeyword));
      if (keyword == "EXISTS" || keyword == "RECENT" || keyword == "EXPUNGE") {
        NumberData d;
        d.kind = keyword == "EXISTS"   ? NumberData::Kind::kExists
                 : keyword == "RECENT" ? NumberData::Kind::kRecent
                                       : NumberData::Kind::kExpunge;
        d.number = n;
        r.data = d;
        return finish();
      }
      if (keyword == "FETCH") {
        FetchData f;
        f.seq = n;
        if (!needSpace("after FETCH") || !parseFetch(f)) {
          return false;
        }
        r.data = std::move(f);
        return finish();
      }
      if (keyword.empty()) {
        pos_ = keyword_at;
        return syntax("expected a keyword after the number");
      }
      OtherData o;
      o.name = keyword;
      Value number;
      number.kind = Value::Kind::kNumber;
      number.number = n;
      number.text = std::to_string(n);
      o.values.push_back(std::move(number));
      return parseOther(r, std::move(o));
    }
    const std::size_t keyword_at = pos_;
    const std::string keyword = ascii::upper(readAtom(AtomMode::kKeyword));
    if (keyword.empty()) {
      return syntax("expected a keyword after '*'");
    }
    Status status = Status::kOk;
    if (statusFor(keyword, status)) {
      StatusResponse s;
      s.status = status;
      if (!parseStatusRest(s)) {
        return false;
      }
      r.status = s;
      r.data = std::move(s);
      return true;
    }
    if (keyword == "CAPABILITY" || keyword == "ENABLED") {
      std::vector<std::string> caps;
      while (true) {
        skipSpaces();
        if (atLineEnd()) {
          break;
        }
        const std::string_view atom = readAtom(AtomMode::kPlain);
        if (atom.empty()) {
          return syntax("expected a capability");
        }
        if (!countValue()) {
          return false;
        }
        caps.push_back(ascii::upper(atom));
      }
      if (keyword == "CAPABILITY") {
        r.data = CapabilityData{std::move(caps)};
      } else {
        r.data = EnabledData{std::move(caps)};
      }
      return finish();
    }
    if (keyword == "FLAGS") {
      skipSpaces();
      Value list;
      if (!readList(list, "the flag list")) {
        return false;
      }
      r.data = FlagsData{texts(list)};
      return finish();
    }
    if (keyword == "LIST" || keyword == "LSUB") {
      ListData l;
      if (!needSpace("after LIST") || !parseList(l)) {
        return false;
      }
      r.data = std::move(l);
      return finish();
    }
    if (keyword == "SEARCH") {
      SearchData s;
      if (!parseSearch(s)) {
        return false;
      }
      r.data = std::move(s);
      return finish();
    }
    if (keyword == "ESEARCH") {
      SearchData s;
      if (!parseEsearch(s)) {
        return false;
      }
      r.data = std::move(s);
      return finish();
    }
    if (keyword == "VANISHED") {
      VanishedData v;
      if (!needSpace("after VANISHED") || !parseVanished(v)) {
        return false;
      }
      r.data = std::move(v);
      return finish();
    }
    if (keyword == "STATUS") {
      StatusData s;
      if (!needSpace("after STATUS") || !parseStatusData(s)) {
        return false;
      }
      r.data = std::move(s);
      return finish();
    }
    (void)keyword_at;
    OtherData o;
    o.name = keyword;
    return parseOther(r, std::move(o));
  }

  // The rest as values; when it does not parse as values (an extension's own syntax), the rest of
  // the line is kept as one atom instead. Limits still apply.
  bool parseOther(Response& r, OtherData o) {
    const std::size_t start = pos_;
    const uint64_t values_before = values_;
    const std::size_t kept = o.values.size();
    bool ok = true;
    while (ok) {
      skipSpaces();
      if (atLineEnd()) {
        break;
      }
      Value v;
      ok = readValue(v, 0);
      if (ok) {
        o.values.push_back(std::move(v));
      }
    }
    if (ok) {
      ok = finish();
    }
    if (!ok) {
      if (error_->code != "imap.syntax") {
        return false;
      }
      error_.reset();
      pos_ = start;
      values_ = values_before;
      o.values.resize(kept);
      skipSpaces();
      Value rest;
      rest.kind = Value::Kind::kAtom;
      rest.text.assign(restOfLine());
      o.values.push_back(std::move(rest));
    }
    r.data = std::move(o);
    return true;
  }

  bool parseFetch(FetchData& f) {
    if (!expect('(', "expected '(' after FETCH")) {
      return false;
    }
    while (true) {
      skipSpaces();
      if (peek() == ')') {
        ++pos_;
        return true;
      }
      if (atLineEnd()) {
        return syntax("unterminated FETCH item list");
      }
      const std::string name = ascii::upper(readAtom(AtomMode::kFetchAtt));
      if (name.empty()) {
        return syntax("expected a FETCH item name");
      }
      if (!needSpace("after a FETCH item name")) {
        return false;
      }
      const std::size_t value_at = pos_;
      Value v;
      if (!readValue(v, 1)) {
        return false;
      }
      if (!fetchItem(f, name, std::move(v))) {
        pos_ = value_at;
        return syntax("malformed " + quoteInput(name.substr(0, 32)) + " item");
      }
    }
  }

  static std::string nstr(const Value& v) {
    return v.kind == Value::Kind::kList ? std::string() : v.text;
  }

  static std::vector<Address> addresses(const Value& v) {
    std::vector<Address> out;
    if (v.kind != Value::Kind::kList) {
      return out;
    }
    for (const Value& a : v.items) {
      if (a.kind == Value::Kind::kList && a.items.size() >= 4) {
        out.push_back(
            Address{nstr(a.items[0]), nstr(a.items[1]), nstr(a.items[2]), nstr(a.items[3])});
      }
    }
    return out;
  }

  // False when the value does not have the item's shape.
  static bool fetchItem(FetchData& f, const std::string& name, Value v) {
    using K = Value::Kind;
    if (name == "UID") {
      if (v.kind != K::kNumber || v.number > UINT32_MAX) {
        return false;
      }
      f.uid = static_cast<uint32_t>(v.number);
    } else if (name == "RFC822.SIZE") {
      if (v.kind != K::kNumber) {
        return false;
      }
      f.rfc822_size = v.number;
    } else if (name == "MODSEQ") {
      if (v.kind != K::kList || v.items.size() != 1 || v.items[0].kind != K::kNumber) {
        return false;
      }
      f.modseq = v.items[0].number;
    } else if (name == "FLAGS") {
      if (v.kind != K::kList) {
        return false;
      }
      f.flags = texts(v);
    } else if (name == "INTERNALDATE") {
      if (v.kind != K::kString && v.kind != K::kAtom) {
        return false;
      }
      f.internal_date = std::move(v.text);
    } else if (name == "ENVELOPE") {
      if (v.kind != K::kList || v.items.size() < 10) {
        return false;
      }
      Envelope e;
      e.date = nstr(v.items[0]);
      e.subject = nstr(v.items[1]);
      e.from = addresses(v.items[2]);
      e.sender = addresses(v.items[3]);
      e.reply_to = addresses(v.items[4]);
      e.to = addresses(v.items[5]);
      e.cc = addresses(v.items[6]);
      e.bcc = addresses(v.items[7]);
      e.in_reply_to = nstr(v.items[8]);
      e.message_id = nstr(v.items[9]);
      f.envelope = std::move(e);
    } else if (name == "RFC822" || name == "RFC822.HEADER" || name == "RFC822.TEXT" ||
               name.starts_with("BODY[") || name.starts_with("BINARY[")) {
      if (v.kind == K::kList) {
        return false;
      }
      BodySection s;
      const std::size_t open = name.find('[');
      if (open != std::string::npos) {
        const std::size_t close = name.find(']', open);
        s.section = name.substr(open + 1, close - open - 1);
        if (close + 1 < name.size()) {
          // "<origin>" (readAtom took it only when closed by '>').
          const auto origin =
              plainNumber32(std::string_view(name).substr(close + 2, name.size() - close - 3));
          if (name[close + 1] != '<' || !origin) {
            return false;
          }
          s.origin = origin;
        }
      } else {
        s.section = name;
      }
      if (v.kind != K::kNil) {
        s.data = std::move(v.text);
      }
      f.sections.push_back(std::move(s));
    } else {
      f.other.emplace_back(name, std::move(v));
    }
    return true;
  }

  bool parseList(ListData& l) {
    Value attributes;
    if (!readList(attributes, "the mailbox attributes") || !needSpace("after the attributes")) {
      return false;
    }
    l.attributes = texts(attributes);
    if (peek() == '"') {
      std::string delimiter;
      bool literal8 = false;
      if (!readString(delimiter, literal8)) {
        return false;
      }
      if (delimiter.size() > 1) {
        return syntax("hierarchy delimiter longer than one character");
      }
      if (!delimiter.empty()) {
        l.delimiter = delimiter[0];
      }
    } else {
      const std::string_view atom = readAtom(AtomMode::kPlain);
      if (ascii::iequals(atom, "NIL")) {
        l.delimiter.reset();
      } else if (atom.size() == 1) {
        l.delimiter = atom[0]; // unquoted: lenient
      } else {
        return syntax("expected a quoted hierarchy delimiter or NIL");
      }
    }
    if (!needSpace("after the delimiter") || !readAstring(l.name)) {
      return false;
    }
    // RFC 5258 extended data ("(CHILDINFO (SUBSCRIBED))"): read for its limits, not kept.
    while (true) {
      skipSpaces();
      if (atLineEnd()) {
        return true;
      }
      Value ignored;
      if (!readValue(ignored, 0)) {
        return false;
      }
    }
  }

  bool parseSearch(SearchData& s) {
    while (true) {
      skipSpaces();
      if (atLineEnd()) {
        return true;
      }
      if (peek() == '(') {
        ++pos_;
        skipSpaces();
        if (!ascii::iequals(readAtom(AtomMode::kPlain), "MODSEQ")) {
          return syntax("expected (MODSEQ n)");
        }
        uint64_t modseq = 0;
        if (!needSpace("after MODSEQ") || !readNumber(modseq)) {
          return false;
        }
        skipSpaces();
        if (!expect(')', "expected ')' closing (MODSEQ n)")) {
          return false;
        }
        s.modseq = modseq;
        continue;
      }
      uint32_t n = 0;
      if (!readNumber32(n) || !countValue()) {
        return false;
      }
      s.numbers.push_back(n);
    }
  }

  bool parseEsearch(SearchData& s) {
    s.esearch = true;
    skipSpaces();
    if (peek() == '(') {
      ++pos_;
      skipSpaces();
      if (!ascii::iequals(readAtom(AtomMode::kPlain), "TAG")) {
        return syntax("expected (TAG \"...\")");
      }
      if (!needSpace("after TAG") || !readAstring(s.tag)) {
        return false;
      }
      skipSpaces();
      if (!expect(')', "expected ')' closing the ESEARCH correlator")) {
        return false;
      }
    }
    while (true) {
      skipSpaces();
      if (atLineEnd()) {
        return true;
      }
      const std::size_t name_at = pos_;
      const std::string name = ascii::upper(readAtom(AtomMode::kPlain));
      if (name.empty()) {
        return syntax("expected an ESEARCH result name");
      }
      if (name == "UID") {
        s.uid = true;
        continue;
      }
      if (!needSpace("after an ESEARCH result name")) {
        return false;
      }
      if (name == "MIN" || name == "MAX" || name == "COUNT") {
        uint32_t n = 0;
        if (!readNumber32(n)) {
          return false;
        }
        (name == "MIN" ? s.min : name == "MAX" ? s.max : s.count) = n;
      } else if (name == "MODSEQ") {
        uint64_t n = 0;
        if (!readNumber(n)) {
          return false;
        }
        s.modseq = n;
      } else if (name == "ALL") {
        const std::size_t set_at = pos_;
        auto set = SequenceSet::parse(readAtom(AtomMode::kPlain));
        if (!set) {
          pos_ = set_at;
          return syntax("malformed ESEARCH ALL sequence set");
        }
        const uint64_t room = limits_.max_values > values_ ? limits_.max_values - values_ : 0;
        auto numbers = set->expand(room);
        if (!numbers) {
          return limit("ESEARCH ALL holds more than " + std::to_string(limits_.max_values) +
                       " values");
        }
        values_ += numbers->size();
        s.numbers.insert(s.numbers.end(), numbers->begin(), numbers->end());
      } else {
        (void)name_at;
        Value ignored; // an extension's result (RFC 4466 search-return-data): skipped
        if (!readValue(ignored, 0)) {
          return false;
        }
      }
    }
  }

  bool parseVanished(VanishedData& v) {
    if (peek() == '(') {
      ++pos_;
      skipSpaces();
      if (!ascii::iequals(readAtom(AtomMode::kPlain), "EARLIER")) {
        return syntax("expected (EARLIER)");
      }
      skipSpaces();
      if (!expect(')', "expected ')' after EARLIER") || !needSpace("after (EARLIER)")) {
        return false;
      }
      v.earlier = true;
    }
    const std::size_t set_at = pos_;
    auto set = SequenceSet::parse(readAtom(AtomMode::kPlain));
    if (!set) {
      pos_ = set_at;
      return syntax("malformed VANISHED uid set");
    }
    v.uids = std::move(*set);
    return true;
  }

  bool parseStatusData(StatusData& s) {
    if (!readAstring(s.mailbox)) {
      return false;
    }
    skipSpaces();
    if (!expect('(', "expected '(' starting the STATUS items")) {
      return false;
    }
    while (true) {
      skipSpaces();
      if (peek() == ')') {
        ++pos_;
        return true;
      }
      if (atLineEnd()) {
        return syntax("unterminated STATUS item list");
      }
      const std::string name = ascii::upper(readAtom(AtomMode::kPlain));
      if (name.empty()) {
        return syntax("expected a STATUS item name");
      }
      uint64_t n = 0;
      if (!needSpace("after a STATUS item name") || !readNumber(n) || !countValue()) {
        return false;
      }
      s.items.emplace_back(name, n);
    }
  }

  std::string_view in_;
  const ParserLimits& limits_;
  std::size_t pos_ = 0;
  uint64_t values_ = 0;
  std::optional<Error> error_;
};

} // namespace

ResponseParser::ResponseParser(ParserLimits limits) : limits_(limits) {}

void ResponseParser::feed(std::span<const char> data) {
  if (failed_ || data.empty()) {
    return;
  }
  if (consumed_ > 0 && consumed_ * 2 >= buffer_.size()) {
    buffer_.erase(0, consumed_);
    scan_ -= consumed_;
    line_start_ -= consumed_;
    consumed_ = 0;
  }
  buffer_.append(data.data(), data.size());
}

std::size_t ResponseParser::bufferedBytes() const {
  return buffer_.size() - consumed_;
}

void ResponseParser::discardBuffered() {
  buffer_.clear();
  consumed_ = 0;
  scan_ = 0;
  line_start_ = 0;
  literal_remaining_ = 0;
  in_literal_ = false;
  response_bytes_ = 0;
}

void ResponseParser::failWith(Error error) {
  failed_ = std::move(error);
  discardBuffered();
  buffer_.shrink_to_fit();
}

bool ResponseParser::frame(std::size_t& response_end) {
  while (true) {
    if (in_literal_) {
      const uint64_t available = buffer_.size() - scan_;
      const uint64_t take = std::min(available, literal_remaining_);
      scan_ += static_cast<std::size_t>(take);
      literal_remaining_ -= take;
      if (literal_remaining_ > 0) {
        return false;
      }
      in_literal_ = false;
      line_start_ = scan_;
    }
    const char* base = buffer_.data();
    const void* lf_at = std::memchr(base + scan_, '\n', buffer_.size() - scan_);
    if (lf_at == nullptr) {
      scan_ = buffer_.size();
      const std::size_t partial = scan_ - line_start_;
      // One byte more than the limit may be the CR of the line end.
      if (partial > limits_.max_line_bytes + 1) {
        failWith(Error("imap.limit", "response line longer than " +
                                         std::to_string(limits_.max_line_bytes) + " bytes"));
        return false;
      }
      if (response_bytes_ + partial > limits_.max_response_bytes) {
        failWith(Error("imap.limit", "response larger than " +
                                         std::to_string(limits_.max_response_bytes) + " bytes"));
        return false;
      }
      return false;
    }
    const auto lf = static_cast<std::size_t>(static_cast<const char*>(lf_at) - base);
    std::size_t line_end = lf;
    if (line_end > line_start_ && buffer_[line_end - 1] == '\r') {
      --line_end;
    }
    const std::string_view line(base + line_start_, line_end - line_start_);
    response_bytes_ += lf + 1 - line_start_;
    if (line.size() > limits_.max_line_bytes) {
      failWith(Error("imap.limit", "response line longer than " +
                                       std::to_string(limits_.max_line_bytes) + " bytes"));
      return false;
    }
    if (response_bytes_ > limits_.max_response_bytes) {
      failWith(Error("imap.limit", "response larger than " +
                                       std::to_string(limits_.max_response_bytes) + " bytes"));
      return false;
    }
    if (const std::size_t bad = line.find_first_of(std::string_view("\0\r", 2));
        bad != std::string_view::npos) {
      failWith(Error("imap.syntax", std::string(line[bad] == '\0' ? "NUL byte" : "bare CR") +
                                        " in a response line near \"" +
                                        quoteInput(line.substr(bad > 32 ? bad - 32 : 0)) + "\""));
      return false;
    }
    scan_ = lf + 1;
    const auto literal = announcedLiteral(line);
    if (!literal) {
      response_end = scan_;
      return true;
    }
    // Refused from the announcement: nothing of a too-large literal is ever buffered on purpose.
    if (*literal > limits_.max_literal_bytes) {
      failWith(Error("imap.limit", "server announced a literal of " + std::to_string(*literal) +
                                       " bytes, more than " +
                                       std::to_string(limits_.max_literal_bytes)));
      return false;
    }
    if (response_bytes_ + *literal > limits_.max_response_bytes) {
      failWith(Error("imap.limit", "response larger than " +
                                       std::to_string(limits_.max_response_bytes) + " bytes"));
      return false;
    }
    literal_remaining_ = *literal;
    response_bytes_ += *literal;
    in_literal_ = true;
    line_start_ = scan_;
  }
}

Result<std::optional<Response>> ResponseParser::next() {
  if (failed_) {
    return std::unexpected(*failed_);
  }
  std::size_t end = 0;
  if (!frame(end)) {
    if (failed_) {
      return std::unexpected(*failed_);
    }
    return std::optional<Response>();
  }
  const std::string_view in(buffer_.data() + consumed_, end - consumed_);
  Reader reader(in, limits_);
  auto parsed = reader.parse();
  consumed_ = end;
  line_start_ = end;
  response_bytes_ = 0;
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = scan_ = line_start_ = 0;
  }
  if (!parsed) {
    failWith(std::move(parsed.error()));
    return std::unexpected(*failed_);
  }
  return std::optional<Response>(std::move(*parsed));
}

} // namespace mailgate::imap::protocol

#include "config/loader.h"

#include "config/enum_names.h"
#include "config/validate.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <memory>
#include <set>
#include <unistd.h>
#include <utility>
#include <yaml-cpp/yaml.h>

namespace mailgate::config {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kMaxConfigBytes = std::size_t{16} << 20;
constexpr std::size_t kMaxSecretFileBytes = std::size_t{64} << 10;
// Bounds the work done on a file full of YAML aliases (each alias is walked again).
constexpr std::size_t kNodeBudget = 1'000'000;
// Keeps --check-config output readable and bounded on a badly broken file.
constexpr std::size_t kMaxDiagnostics = 1000;
// imap.pool.max_sessions of a mailbox (why: readMailbox).
constexpr std::uint32_t kMaxImapSessions = 16;

using FilePtr = std::unique_ptr<std::FILE, decltype(&std::fclose)>;

std::string join(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : fmt::format("{}.{}", parent, key);
}

Position positionOf(const YAML::Node& node) {
  if (!node.IsDefined()) {
    return {};
  }
  const YAML::Mark m = node.Mark();
  if (m.is_null()) {
    return {};
  }
  return {m.line + 1, m.column + 1};
}

std::string_view kindOf(const YAML::Node& node) {
  if (node.IsMap()) {
    return "a mapping";
  }
  if (node.IsSequence()) {
    return "a list";
  }
  if (node.IsNull()) {
    return "nothing";
  }
  return "a scalar";
}

std::size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

bool isEnvName(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) {
    return false;
  }
  return std::ranges::all_of(name, [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::optional<std::string> processEnv(const std::string& name) {
  const char* value = std::getenv(name.c_str()); // NOLINT(concurrency-mt-unsafe): load is not hot
  if (value == nullptr) {
    return std::nullopt;
  }
  return std::string(value);
}

std::string defaultNodeId() {
  std::array<char, 256> buf{};
  if (gethostname(buf.data(), buf.size() - 1) == 0 && buf[0] != '\0') {
    return {buf.data()};
  }
  return "mailgate";
}

std::uint16_t defaultPort(bool imap, TlsMode tls) {
  if (imap) {
    return tls == TlsMode::kImplicit ? 993 : 143;
  }
  switch (tls) {
  case TlsMode::kImplicit:
    return 465;
  case TlsMode::kStarttls:
    return 587;
  case TlsMode::kNone:
    return 25;
  }
  return 587;
}

// One key of a mapping (or one item of a list, with an empty key).
struct Entry {
  YAML::Node key;
  YAML::Node value;
  std::string path;
  Position key_pos;
  Position value_pos;

  // Where problems with the value are reported: the value, else its key.
  [[nodiscard]] Position pos() const { return value_pos.line > 0 ? value_pos : key_pos; }
  [[nodiscard]] bool isNull() const { return !value.IsDefined() || value.IsNull(); }
};

// Walks the YAML tree for one load: typed reads that report problems instead of throwing, env
// expansion, secret files, and recording every key's position into the SourceMap.
class Reader {
public:
  Reader(SourceMap& source, std::vector<Diagnostic>& out, std::string baseDir, EnvLookup env)
      : source_(source), out_(out), base_dir_(std::move(baseDir)), env_(std::move(env)) {}

  void error(Position pos, std::string path, std::string reason) {
    out_.push_back(
        Diagnostic{source_.file(), pos.line, pos.column, std::move(path), std::move(reason)});
  }
  void error(const Entry& e, std::string reason) { error(e.pos(), e.path, std::move(reason)); }

  void record(const Entry& e) { source_.record(e.path, e.pos()); }

  // False (after one diagnostic) once the walk has visited too many nodes.
  bool spend(std::size_t n, Position pos) {
    if (spent_ > kNodeBudget) {
      return false;
    }
    spent_ += n;
    if (spent_ > kNodeBudget) {
      error(pos, "", "too many nodes (YAML aliases expanding?); configuration not read further");
      return false;
    }
    return true;
  }

  // The items of a list; nothing for null; a diagnostic for anything else.
  std::vector<Entry> items(const Entry* e) {
    std::vector<Entry> out;
    if (e == nullptr || e->isNull()) {
      return out;
    }
    if (!e->value.IsSequence()) {
      error(*e, fmt::format("expected a list, got {}", kindOf(e->value)));
      return out;
    }
    if (!spend(e->value.size(), e->pos())) {
      return out;
    }
    std::size_t i = 0;
    for (const auto& item : e->value) {
      Entry entry{YAML::Node(), item, fmt::format("{}[{}]", e->path, i++), e->pos(),
                  positionOf(item)};
      record(entry);
      out.push_back(std::move(entry));
    }
    return out;
  }

  // The scalar's text with ${ENV} expanded. `what` names the expected type for the message.
  std::optional<std::string> text(const Entry& e, std::string_view what = "a string") {
    if (!e.value.IsScalar()) {
      error(e, fmt::format("expected {}, got {}", what, kindOf(e.value)));
      return std::nullopt;
    }
    return expand(e, e.value.Scalar());
  }

  bool str(const Entry* e, std::string& out) {
    if (e == nullptr) {
      return false;
    }
    auto v = text(*e);
    if (!v) {
      return false;
    }
    out = std::move(*v);
    return true;
  }

  std::vector<std::string> strings(const Entry* e) {
    std::vector<std::string> out;
    for (const Entry& item : items(e)) {
      if (auto v = text(item)) {
        out.push_back(std::move(*v));
      }
    }
    return out;
  }

  bool boolean(const Entry* e, bool& out) {
    if (e == nullptr) {
      return false;
    }
    auto v = text(*e, "true or false");
    if (!v) {
      return false;
    }
    if (*v == "true" || *v == "True" || *v == "TRUE") {
      out = true;
      return true;
    }
    if (*v == "false" || *v == "False" || *v == "FALSE") {
      out = false;
      return true;
    }
    error(*e, fmt::format("expected true or false, got '{}'", *v));
    return false;
  }

  template <typename T> bool integer(const Entry* e, T& out, T min, T max) {
    if (e == nullptr) {
      return false;
    }
    auto v = text(*e, "an integer");
    if (!v) {
      return false;
    }
    long long n = 0;
    const char* end = v->data() + v->size();
    auto [ptr, ec] = std::from_chars(v->data(), end, n);
    if (v->empty() || ptr != end || ec == std::errc::invalid_argument) {
      error(*e, fmt::format("expected an integer, got '{}'", *v));
      return false;
    }
    if (ec == std::errc::result_out_of_range || n < static_cast<long long>(min) ||
        static_cast<unsigned long long>(n) > static_cast<unsigned long long>(max)) {
      error(*e, fmt::format("must be between {} and {}", min, max));
      return false;
    }
    out = static_cast<T>(n);
    return true;
  }

  template <typename T> bool integer(const Entry* e, std::optional<T>& out, T min, T max) {
    T v{};
    if (!integer(e, v, min, max)) {
      return false;
    }
    out = v;
    return true;
  }

  bool duration(const Entry* e, Duration& out, Duration min, Duration max) {
    if (e == nullptr) {
      return false;
    }
    auto v = text(*e, "a duration");
    if (!v) {
      return false;
    }
    auto d = parseDuration(*v);
    if (!d) {
      error(*e, fmt::format("{} ({})", d.error().message, d.error().hint));
      return false;
    }
    if (*d < min || *d > max) {
      error(*e, fmt::format("must be between {} and {}", formatDuration(min), formatDuration(max)));
      return false;
    }
    out = *d;
    return true;
  }

  template <typename E, std::size_t N>
  bool choice(const Entry* e, E& out, const std::array<EnumName<E>, N>& table) {
    if (e == nullptr) {
      return false;
    }
    auto v = text(*e);
    if (!v) {
      return false;
    }
    for (const auto& entry : table) {
      if (entry.name == *v) {
        out = entry.value;
        return true;
      }
    }
    std::string names;
    for (const auto& entry : table) {
      names += names.empty() ? "" : "|";
      names += entry.name;
    }
    error(*e, fmt::format("unknown value '{}'; expected {}", *v, names));
    return false;
  }

  bool endpoint(const Entry* e, Endpoint& out) {
    std::string v;
    if (!str(e, v)) {
      return false;
    }
    auto parsed = parseEndpoint(v);
    if (!parsed) {
      error(*e, fmt::format("{} ({})", parsed.error().message, parsed.error().hint));
      return false;
    }
    out = std::move(*parsed);
    return true;
  }

  bool url(const Entry* e, std::string& out, std::initializer_list<std::string_view> schemes) {
    std::string v;
    if (!str(e, v)) {
      return false;
    }
    if (auto ok = checkUrl(v, schemes); !ok) {
      error(*e, ok.error().hint.empty()
                    ? ok.error().message
                    : fmt::format("{} ({})", ok.error().message, ok.error().hint));
      return false;
    }
    out = std::move(v);
    return true;
  }

  // A file name, resolved against the base folder. `mustRead`: report when it cannot be opened.
  bool file(const Entry* e, std::string& out, bool mustRead) {
    std::string v;
    if (!str(e, v)) {
      return false;
    }
    if (v.empty()) {
      error(*e, "file name is empty");
      return false;
    }
    out = resolve(v);
    if (mustRead) {
      FilePtr f(std::fopen(out.c_str(), "rb"), &std::fclose);
      if (!f) {
        error(*e, fmt::format("cannot read {}: {}", out, std::strerror(errno)));
        return false;
      }
    }
    return true;
  }

  // A Secret written as a string (with ${ENV}) or as {file: PATH}. Never echoes the value.
  std::optional<Secret> secret(const Entry* e) {
    if (e == nullptr) {
      return std::nullopt;
    }
    if (e->value.IsMap()) {
      return secretFromMap(*e);
    }
    if (!e->value.IsScalar()) {
      error(*e, fmt::format("expected a string, \"${{ENV}}\" or {{file: PATH}}, got {}",
                            kindOf(e->value)));
      return std::nullopt;
    }
    auto v = expand(*e, e->value.Scalar());
    if (!v) {
      return std::nullopt;
    }
    if (v->empty()) {
      error(*e, "secret is empty");
      return std::nullopt;
    }
    return Secret(std::move(*v));
  }

  // The contents of the file named by `e` (a string), without trailing newlines.
  std::optional<Secret> secretFile(const Entry& e) {
    std::string path;
    if (!file(&e, path, false)) {
      return std::nullopt;
    }
    FilePtr f(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!f) {
      error(e, fmt::format("cannot read secret file {}: {}", path, std::strerror(errno)));
      return std::nullopt;
    }
    std::string data(kMaxSecretFileBytes + 1, '\0');
    const std::size_t n = std::fread(data.data(), 1, data.size(), f.get());
    if (std::ferror(f.get()) != 0) {
      error(e, fmt::format("cannot read secret file {}: {}", path, std::strerror(errno)));
      return std::nullopt;
    }
    if (n > kMaxSecretFileBytes) {
      error(e, fmt::format("secret file {} is larger than {} bytes", path, kMaxSecretFileBytes));
      return std::nullopt;
    }
    data.resize(n);
    while (!data.empty() && (data.back() == '\n' || data.back() == '\r')) {
      data.pop_back();
    }
    if (data.empty()) {
      error(e, fmt::format("secret file {} is empty", path));
      return std::nullopt;
    }
    return Secret(std::move(data));
  }

private:
  std::optional<Secret> secretFromMap(const Entry& e);

  [[nodiscard]] std::string resolve(const std::string& written) const {
    const fs::path p(written);
    if (p.is_absolute() || base_dir_.empty()) {
      return p.lexically_normal().string();
    }
    return (fs::path(base_dir_) / p).lexically_normal().string();
  }

  // Expands ${NAME}; "$${" stands for a literal "${". Reports unset variables by name only.
  std::optional<std::string> expand(const Entry& e, std::string_view raw) {
    std::string out;
    out.reserve(raw.size());
    std::size_t i = 0;
    while (i < raw.size()) {
      if (raw.substr(i, 3) == "$${") {
        out += "${";
        i += 3;
        continue;
      }
      if (raw.substr(i, 2) != "${") {
        out += raw[i++];
        continue;
      }
      const auto close = raw.find('}', i + 2);
      if (close == std::string_view::npos) {
        error(e, "unterminated ${ (write $${ for a literal ${)");
        return std::nullopt;
      }
      const std::string name(raw.substr(i + 2, close - i - 2));
      if (!isEnvName(name)) {
        error(e, "${...} must hold an environment variable name (letters, digits, _)");
        return std::nullopt;
      }
      auto value = env_ ? env_(name) : processEnv(name);
      if (!value) {
        error(e, fmt::format("environment variable {} is not set", name));
        return std::nullopt;
      }
      out += *value;
      i = close + 1;
    }
    return out;
  }

  SourceMap& source_;
  std::vector<Diagnostic>& out_;
  std::string base_dir_;
  EnvLookup env_;
  std::size_t spent_ = 0;
};

// The keys of one mapping. Reports unknown and repeated keys, and a value that is not a mapping;
// null or absent means "no keys". With `anyKey`, every key is accepted (relays: NAME).
class Fields {
public:
  Fields(Reader& r, const Entry* e, std::initializer_list<std::string_view> known,
         bool anyKey = false)
      : reader_(r), path_(e != nullptr ? e->path : std::string()),
        pos_(e != nullptr ? e->pos() : Position{}) {
    if (e == nullptr || e->isNull()) {
      return;
    }
    if (!e->value.IsMap()) {
      r.error(*e, fmt::format("expected a mapping (key: value), got {}", kindOf(e->value)));
      return;
    }
    if (!r.spend(e->value.size(), pos_)) {
      return;
    }
    std::set<std::string, std::less<>> seen;
    for (const auto& kv : e->value) {
      const Position keyPos = positionOf(kv.first);
      if (!kv.first.IsScalar()) {
        r.error(keyPos.line > 0 ? keyPos : pos_, path_, "keys must be plain strings");
        continue;
      }
      const std::string name = kv.first.Scalar();
      Entry entry{kv.first, kv.second, join(path_, name), keyPos, positionOf(kv.second)};
      if (!anyKey && std::ranges::find(known, name) == known.end()) {
        r.error(keyPos, entry.path, unknownKeyReason(name, known));
        continue;
      }
      if (!seen.insert(name).second) {
        r.error(keyPos, entry.path, "duplicate key");
        continue;
      }
      r.record(entry);
      entries_.push_back(std::move(entry));
    }
  }

  // The entry under `key`, or nullptr when the key is absent or its value is null.
  [[nodiscard]] const Entry* get(std::string_view key) const {
    for (const Entry& e : entries_) {
      if (e.key.Scalar() == key) {
        return e.isNull() ? nullptr : &e;
      }
    }
    return nullptr;
  }

  // Reports `key` as missing unless it has a value.
  void require(std::string_view key) const {
    if (get(key) == nullptr) {
      reader_.error(pos_, join(path_, key), "is required");
    }
  }

  [[nodiscard]] const std::vector<Entry>& entries() const { return entries_; }

private:
  static std::string unknownKeyReason(const std::string& name,
                                      std::initializer_list<std::string_view> known) {
    std::string_view best;
    std::size_t bestDistance = 3;
    for (const auto k : known) {
      const std::size_t d = editDistance(name, k);
      if (d < bestDistance) {
        best = k;
        bestDistance = d;
      }
    }
    if (!best.empty()) {
      return fmt::format("unknown key (did you mean '{}'?)", best);
    }
    std::string list;
    for (const auto k : known) {
      list += list.empty() ? "" : ", ";
      list += k;
    }
    return fmt::format("unknown key (expected one of: {})", list);
  }

  Reader& reader_;
  std::string path_;
  Position pos_;
  std::vector<Entry> entries_;
};

std::optional<Secret> Reader::secretFromMap(const Entry& e) {
  const Fields f(*this, &e, {"file"});
  f.require("file");
  const Entry* file = f.get("file");
  if (file == nullptr) {
    return std::nullopt;
  }
  return secretFile(*file);
}

// A key that must have a value, read as a string; a missing one is reported.
void requiredStr(Reader& r, const Fields& f, std::string_view key, std::string& out) {
  f.require(key);
  r.str(f.get(key), out);
}

// A key that must have a value, read as a Secret; `out` is left alone when it has none.
void requiredSecret(Reader& r, const Fields& f, std::string_view key, Secret& out) {
  f.require(key);
  if (auto s = r.secret(f.get(key))) {
    out = std::move(*s);
  }
}

// True when a list item is a mapping; otherwise reports it, naming some of the `expected` keys.
bool isMappingItem(Reader& r, const Entry& item, std::string_view expected) {
  if (!item.isNull() && item.value.IsMap()) {
    return true;
  }
  r.error(item, fmt::format("expected a mapping ({}), got {}", expected, kindOf(item.value)));
  return false;
}

std::optional<TlsFiles> readTlsFiles(Reader& r, const Entry* e) {
  if (e == nullptr) {
    return std::nullopt;
  }
  const Fields f(r, e, {"cert", "key"});
  TlsFiles tls;
  f.require("cert");
  f.require("key");
  r.file(f.get("cert"), tls.cert, true);
  r.file(f.get("key"), tls.key, true);
  return tls;
}

void readPins(Reader& r, const Entry* e, std::vector<std::string>& out) {
  for (const Entry& item : r.items(e)) {
    auto v = r.text(item);
    if (!v) {
      continue;
    }
    std::string hex;
    for (const char c : *v) {
      if (c != ':') {
        hex += c;
      }
    }
    hex = lowerAscii(hex);
    const bool ok = hex.size() == 64 && std::ranges::all_of(hex, [](char c) {
                      return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                    });
    if (!ok) {
      r.error(item, "expected the SHA-256 of the server's public key as 64 hex digits");
      continue;
    }
    out.push_back(std::move(hex));
  }
}

const std::initializer_list<std::string_view> kUpstreamKeys = {
    "host", "port", "tls", "allow_self_signed", "ca_file", "pins"};

// Overlays the written keys of `f` on `u`. When tls is written without a port, the port becomes
// the usual one for that TLS mode, so `tls: implicit` alone does not keep 587.
void readUpstream(Reader& r, const Fields& f, Upstream& u, bool imap) {
  if (const Entry* host = f.get("host"); r.str(host, u.host) && !isHostName(u.host)) {
    r.error(*host, fmt::format("'{}' is not a host name or IP address", u.host));
  }
  const bool tlsSet = r.choice(f.get("tls"), u.tls, kTlsModeNames);
  const bool portSet = r.integer<std::uint16_t>(f.get("port"), u.port, 1, 65535);
  if (tlsSet && !portSet) {
    u.port = defaultPort(imap, u.tls);
  }
  r.boolean(f.get("allow_self_signed"), u.allow_self_signed);
  r.file(f.get("ca_file"), u.ca_file, true);
  if (const Entry* pins = f.get("pins")) {
    u.pins.clear();
    readPins(r, pins, u.pins);
  }
}

void readNode(Reader& r, const Entry* e, NodeConfig& node) {
  const Fields f(r, e, {"id", "data_dir"});
  r.str(f.get("id"), node.id);
  r.str(f.get("data_dir"), node.data_dir);
}

void readLog(Reader& r, const Entry* e, LogConfig& log) {
  const Fields f(r, e, {"level", "format"});
  r.choice(f.get("level"), log.level, kLogLevelNames);
  r.choice(f.get("format"), log.format, kLogFormatNames);
}

void readSmtpListener(Reader& r, const Entry* e, SmtpListener& s) {
  const Fields f(r, e,
                 {"address", "tls", "require_tls", "max_message_bytes", "max_recipients",
                  "max_connections", "trusted_networks", "trusted_as", "idle_timeout",
                  "command_timeout", "data_timeout", "max_line_length", "max_auth_failures"});
  using std::chrono::hours;
  using std::chrono::seconds;
  r.endpoint(f.get("address"), s.address);
  s.tls = readTlsFiles(r, f.get("tls"));
  s.require_tls = s.tls.has_value();
  r.boolean(f.get("require_tls"), s.require_tls);
  r.integer<std::uint64_t>(f.get("max_message_bytes"), s.max_message_bytes, 1024,
                           std::uint64_t{1} << 30);
  r.integer<std::uint32_t>(f.get("max_recipients"), s.max_recipients, 1, 100000);
  r.integer<std::uint32_t>(f.get("max_connections"), s.max_connections, 1, 1000000);
  for (const Entry& item : r.items(f.get("trusted_networks"))) {
    auto v = r.text(item);
    if (!v) {
      continue;
    }
    auto cidr = Cidr::parse(*v);
    if (!cidr) {
      r.error(item, cidr.error().hint.empty()
                        ? cidr.error().message
                        : fmt::format("{} ({})", cidr.error().message, cidr.error().hint));
      continue;
    }
    s.trusted_networks.push_back(*cidr);
  }
  r.str(f.get("trusted_as"), s.trusted_as);
  r.duration(f.get("idle_timeout"), s.idle_timeout, seconds(1), hours(24));
  r.duration(f.get("command_timeout"), s.command_timeout, seconds(1), hours(24));
  r.duration(f.get("data_timeout"), s.data_timeout, seconds(1), hours(24));
  r.integer<std::uint32_t>(f.get("max_line_length"), s.max_line_length, 1000, 1 << 20);
  r.integer<std::uint32_t>(f.get("max_auth_failures"), s.max_auth_failures, 1, 100);
}

void readToken(Reader& r, const Entry& e, ApiToken& t) {
  const Fields f(r, &e, {"name", "secret", "secret_file", "roles", "tenants"});
  requiredStr(r, f, "name", t.name);
  const Entry* secret = f.get("secret");
  const Entry* secretFile = f.get("secret_file");
  if (secret != nullptr && secretFile != nullptr) {
    r.error(e, "set either secret or secret_file, not both");
  } else if (secret == nullptr && secretFile == nullptr) {
    r.error(e, "needs a secret or a secret_file");
  } else if (secret != nullptr) {
    if (auto s = r.secret(secret)) {
      t.secret = std::move(*s);
    }
  } else if (auto s = r.secretFile(*secretFile)) {
    t.secret = std::move(*s);
  }
  for (const Entry& item : r.items(f.get("roles"))) {
    Role role{};
    if (r.choice(&item, role, kRoleNames)) {
      t.roles.push_back(role);
    }
  }
  if (const Entry* tenants = f.get("tenants")) {
    t.tenants = r.strings(tenants);
  }
}

void readApiListener(Reader& r, const Entry* e, ApiListener& a) {
  const Fields f(r, e, {"address", "tls", "tokens"});
  r.endpoint(f.get("address"), a.address);
  a.tls = readTlsFiles(r, f.get("tls"));
  for (const Entry& item : r.items(f.get("tokens"))) {
    ApiToken token;
    if (isMappingItem(r, item, "name, secret, roles...")) {
      readToken(r, item, token);
    }
    a.tokens.push_back(std::move(token));
  }
}

void readListeners(Reader& r, const Entry* e, Listeners& l) {
  const Fields f(r, e, {"smtp", "api"});
  readSmtpListener(r, f.get("smtp"), l.smtp);
  readApiListener(r, f.get("api"), l.api);
}

void readStorage(Reader& r, const Entry* e, StorageConfig& s) {
  const Fields f(r, e, {"backend", "redis"});
  r.choice(f.get("backend"), s.backend, kStorageBackendNames);
  if (const Entry* redis = f.get("redis")) {
    const Fields rf(r, redis, {"url"});
    rf.require("url");
    const Entry* urlEntry = rf.get("url");
    if (auto url = r.secret(urlEntry)) {
      if (auto ok = checkUrl(url->reveal(), {"redis", "rediss"}); !ok) {
        r.error(*urlEntry, fmt::format("{} ({})", ok.error().message, ok.error().hint));
      }
      s.redis_url = std::move(*url);
    }
  }
}

void readEgress(Reader& r, const Entry* e, EgressConfig& eg) {
  const Fields f(r, e, {"bind_address"});
  if (const Entry* a = f.get("bind_address"); r.str(a, eg.bind_address)) {
    if (!isIpLiteral(eg.bind_address)) {
      r.error(*a, fmt::format("'{}' is not an IP address", eg.bind_address));
    }
  }
}

void readM365Limits(Reader& r, const Entry* e, Microsoft365Limits& l) {
  const Fields f(r, e,
                 {"recipients_per_day", "messages_per_minute", "recipients_per_message",
                  "max_connections", "window_seconds"});
  r.integer<std::uint32_t>(f.get("recipients_per_day"), l.recipients_per_day, 1, 10000000);
  r.integer<std::uint32_t>(f.get("messages_per_minute"), l.messages_per_minute, 1, 1000000);
  r.integer<std::uint32_t>(f.get("recipients_per_message"), l.recipients_per_message, 1, 100000);
  r.integer<std::uint32_t>(f.get("max_connections"), l.max_connections, 1, 100);
  std::uint32_t window = 0;
  if (r.integer<std::uint32_t>(f.get("window_seconds"), window, 1, 31 * 86400)) {
    l.window = std::chrono::seconds(window);
  }
}

void readMicrosoft365(Reader& r, const Entry* e, Microsoft365& m) {
  const Fields f(r, e,
                 {"smtp", "imap", "token_endpoint", "graph_endpoint", "limits",
                  "login_retry_initial", "login_retry_max"});
  readUpstream(r, Fields(r, f.get("smtp"), kUpstreamKeys), m.smtp, false);
  readUpstream(r, Fields(r, f.get("imap"), kUpstreamKeys), m.imap, true);
  r.url(f.get("token_endpoint"), m.token_endpoint, {"https", "http"});
  r.url(f.get("graph_endpoint"), m.graph_endpoint, {"https", "http"});
  readM365Limits(r, f.get("limits"), m.limits);
  r.duration(f.get("login_retry_initial"), m.login_retry_initial, std::chrono::seconds(1),
             std::chrono::hours(24));
  r.duration(f.get("login_retry_max"), m.login_retry_max, std::chrono::seconds(1),
             std::chrono::hours(24 * 7));
}

bool isSimpleName(std::string_view name) {
  return !name.empty() && name.size() <= 64 && std::ranges::all_of(name, [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

void readRelay(Reader& r, const Entry& e, Relay& relay) {
  const Fields f(r, &e,
                 {"host", "port", "tls", "auth", "limits", "allow_self_signed", "ca_file", "pins"});
  relay.server = Upstream{"", 587, TlsMode::kStarttls, false, {}, {}};
  f.require("host");
  readUpstream(r, f, relay.server, false);
  if (const Entry* auth = f.get("auth")) {
    const Fields af(r, auth, {"username", "password"});
    RelayAuth a;
    requiredStr(r, af, "username", a.username);
    requiredSecret(r, af, "password", a.password);
    relay.auth = std::move(a);
  }
  const Fields lf(r, f.get("limits"),
                  {"messages_per_minute", "recipients_per_day", "recipients_per_message",
                   "max_message_bytes", "max_connections", "window_seconds"});
  RelayLimits& l = relay.limits;
  r.integer<std::uint32_t>(lf.get("messages_per_minute"), l.messages_per_minute, 1, 10000000);
  r.integer<std::uint32_t>(lf.get("recipients_per_day"), l.recipients_per_day, 1, 1000000000);
  r.integer<std::uint32_t>(lf.get("recipients_per_message"), l.recipients_per_message, 1, 100000);
  r.integer<std::uint64_t>(lf.get("max_message_bytes"), l.max_message_bytes, 1024,
                           std::uint64_t{1} << 30);
  r.integer<std::uint32_t>(lf.get("max_connections"), l.max_connections, 1, 10000);
  std::uint32_t window = 0;
  if (r.integer<std::uint32_t>(lf.get("window_seconds"), window, 1, 31 * 86400)) {
    l.window = std::chrono::seconds(window);
  }
}

void readRelays(Reader& r, const Entry* e, std::map<std::string, Relay>& relays) {
  const Fields f(r, e, {}, true);
  for (const Entry& item : f.entries()) {
    const std::string name = item.key.Scalar();
    if (!isSimpleName(name)) {
      r.error(item.key_pos, item.path,
              "relay names hold letters, digits, '-' and '_' (at most 64)");
    }
    Relay relay;
    relay.name = name;
    if (isMappingItem(r, item, "host, port, tls...")) {
      readRelay(r, item, relay);
    }
    relays.emplace(name, std::move(relay));
  }
}

void readWebhooks(Reader& r, const Entry* e, std::vector<Webhook>& hooks) {
  for (const Entry& item : r.items(e)) {
    Webhook hook;
    if (!isMappingItem(r, item, "url, secret, events, tenants")) {
      hooks.push_back(std::move(hook));
      continue;
    }
    const Fields f(r, &item, {"url", "secret", "events", "tenants"});
    f.require("url");
    r.url(f.get("url"), hook.url, {"https", "http"});
    requiredSecret(r, f, "secret", hook.secret);
    if (const Entry* events = f.get("events")) {
      hook.events = r.strings(events);
    }
    if (const Entry* tenants = f.get("tenants")) {
      hook.tenants = r.strings(tenants);
    }
    hooks.push_back(std::move(hook));
  }
}

void readMailbox(Reader& r, const Entry& e, const Microsoft365& m365, Mailbox& mb) {
  const Fields f(r, &e, {"address", "aliases", "access", "auth", "smtp", "imap", "sync"});
  requiredStr(r, f, "address", mb.address);
  mb.aliases = r.strings(f.get("aliases"));
  r.choice(f.get("access"), mb.access, kAccessNames);
  if (const Entry* auth = f.get("auth")) {
    const Fields af(r, auth, {"method", "password", "refresh_token"});
    MailboxAuth a;
    r.choice(af.get("method"), a.method, kAuthMethodNames);
    a.password = r.secret(af.get("password"));
    a.refresh_token = r.secret(af.get("refresh_token"));
    mb.auth = std::move(a);
  }
  // A custom server is not Microsoft's: it inherits nothing from microsoft365.
  if (mb.access == Access::kCustom) {
    mb.smtp = Upstream{"", 587, TlsMode::kStarttls, false, {}, {}};
    mb.imap = Upstream{"", 993, TlsMode::kImplicit, false, {}, {}};
  } else {
    mb.smtp = m365.smtp;
    mb.imap = m365.imap;
  }
  readUpstream(r, Fields(r, f.get("smtp"), kUpstreamKeys), mb.smtp, false);
  const Fields imap(r, f.get("imap"),
                    {"host", "port", "tls", "allow_self_signed", "ca_file", "pins", "pool",
                     "sent_folder", "sync_folders"});
  readUpstream(r, imap, mb.imap, true);
  if (const Entry* sent = imap.get("sent_folder");
      r.str(sent, mb.imap_sent_folder) &&
      (mb.imap_sent_folder.empty() || mb.imap_sent_folder.size() > 1024 ||
       std::ranges::any_of(mb.imap_sent_folder, [](char c) {
         return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
       }))) {
    r.error(*sent, "must be a folder name of 1 to 1024 bytes without control characters");
  }
  if (const Entry* extra = imap.get("sync_folders"); extra != nullptr) {
    mb.imap_sync_folders = r.strings(extra);
    for (const auto& name : mb.imap_sync_folders) {
      const bool bad = name.empty() || name.size() > 1024 || std::ranges::any_of(name, [](char c) {
                         return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
                       });
      const bool reserved =
          lowerAscii(name) == "inbox" || lowerAscii(name) == "sent" || lowerAscii(name) == "bcc";
      if (bad || reserved ||
          std::count(mb.imap_sync_folders.begin(), mb.imap_sync_folders.end(), name) > 1) {
        r.error(*extra, "must list distinct folder names of 1 to 1024 bytes without control "
                        "characters, other than INBOX (always synced), \"sent\" and \"bcc\"");
        break;
      }
    }
  }
  const Fields pool(r, imap.get("pool"), {"max_sessions"});
  // Microsoft 365 refuses logins past about 16-20 concurrent IMAP connections per mailbox, and
  // other clients of the same mailbox (Outlook, phones) need some of them. 0: no IMAP side at all
  // (a send-only mailbox: no sync, no Sent-folder write-back).
  r.integer<std::uint32_t>(pool.get("max_sessions"), mb.imap_max_sessions, 0, kMaxImapSessions);
  mb.sync = mb.access == Access::kGraph ? SyncMode::kOneWay : SyncMode::kTwoWay;
  r.choice(f.get("sync"), mb.sync, kSyncModeNames);
}

void readTenant(Reader& r, const Entry& e, const Microsoft365& m365, Tenant& t) {
  const Fields f(r, &e,
                 {"id", "oauth", "limits", "fallback", "priority_reserve_percent", "on_disconnect",
                  "bcc_address", "imap", "mailboxes"});
  requiredStr(r, f, "id", t.id);
  if (const Entry* oauth = f.get("oauth")) {
    const Fields of(r, oauth, {"tenant_id", "client_id", "client_secret"});
    TenantOauth o;
    requiredStr(r, of, "tenant_id", o.tenant_id);
    requiredStr(r, of, "client_id", o.client_id);
    requiredSecret(r, of, "client_secret", o.client_secret);
    t.oauth = std::move(o);
  }
  t.limits = m365.limits;
  readM365Limits(r, f.get("limits"), t.limits);
  t.fallback = r.strings(f.get("fallback"));
  r.integer<std::uint32_t>(f.get("priority_reserve_percent"), t.priority_reserve_percent, 0, 100);
  r.choice(f.get("on_disconnect"), t.on_disconnect, kOnDisconnectNames);
  r.str(f.get("bcc_address"), t.bcc_address);
  const Fields imap(r, f.get("imap"), {"max_sessions"});
  r.integer<std::uint32_t>(imap.get("max_sessions"), t.imap_max_sessions, 1, 100000);
  for (const Entry& item : r.items(f.get("mailboxes"))) {
    Mailbox mb;
    if (isMappingItem(r, item, "address, auth...")) {
      readMailbox(r, item, m365, mb);
    }
    t.mailboxes.push_back(std::move(mb));
  }
}

void readTenants(Reader& r, const Entry* e, const Microsoft365& m365,
                 std::vector<Tenant>& tenants) {
  for (const Entry& item : r.items(e)) {
    Tenant t;
    if (isMappingItem(r, item, "id, mailboxes...")) {
      readTenant(r, item, m365, t);
    }
    tenants.push_back(std::move(t));
  }
}

void readQueue(Reader& r, const Entry* e, QueueConfig& q) {
  const Fields f(
      r, e,
      {"retry_initial", "retry_max", "lifetime", "messages_per_connection", "commit_batch_max"});
  using std::chrono::hours;
  using std::chrono::minutes;
  using std::chrono::seconds;
  r.duration(f.get("retry_initial"), q.retry_initial, seconds(1), hours(24));
  r.duration(f.get("retry_max"), q.retry_max, seconds(1), hours(24 * 7));
  r.duration(f.get("lifetime"), q.lifetime, minutes(1), hours(24 * 30));
  r.integer<std::uint32_t>(f.get("messages_per_connection"), q.messages_per_connection, 1, 100000);
  r.integer<std::uint32_t>(f.get("commit_batch_max"), q.commit_batch_max, 1, 65536);
}

void readConfig(Reader& r, const YAML::Node& root, Config& c) {
  const Entry rootEntry{YAML::Node(), root, "", Position{1, 1}, positionOf(root)};
  const Fields f(r, &rootEntry,
                 {"node", "log", "listeners", "storage", "egress", "microsoft365", "relays",
                  "webhooks", "tenants", "queue"});
  readNode(r, f.get("node"), c.node);
  if (c.node.id.empty()) {
    c.node.id = defaultNodeId();
  }
  readLog(r, f.get("log"), c.log);
  readListeners(r, f.get("listeners"), c.listeners);
  readStorage(r, f.get("storage"), c.storage);
  readEgress(r, f.get("egress"), c.egress);
  readMicrosoft365(r, f.get("microsoft365"), c.microsoft365);
  readRelays(r, f.get("relays"), c.relays);
  readWebhooks(r, f.get("webhooks"), c.webhooks);
  readQueue(r, f.get("queue"), c.queue);
  readTenants(r, f.get("tenants"), c.microsoft365, c.tenants);
}

// The line `mark` points into, to recognise the unquoted-${} trap in a syntax error.
bool lineHasEnvRef(std::string_view yaml, int line) {
  std::size_t start = 0;
  for (int i = 0; i < line && start != std::string_view::npos; ++i) {
    start = yaml.find('\n', start);
    if (start != std::string_view::npos) {
      ++start;
    }
  }
  if (start == std::string_view::npos || start > yaml.size()) {
    return false;
  }
  const std::string_view rest = yaml.substr(start);
  return rest.substr(0, rest.find('\n')).find("${") != std::string_view::npos;
}

struct Parsed {
  Config config;
  std::vector<Diagnostic> diagnostics;
};

Parsed parse(std::string_view yaml, std::string name, const std::string& baseDir,
             const EnvLookup& env) {
  Parsed p;
  p.config.source = SourceMap(std::move(name));
  const std::string& file = p.config.source.file();
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(yaml));
  } catch (const YAML::Exception& e) {
    Diagnostic d{file, 0, 0, "", "invalid YAML: " + e.msg};
    if (!e.mark.is_null()) {
      d.line = e.mark.line + 1;
      d.column = e.mark.column + 1;
      if (lineHasEnvRef(yaml, e.mark.line) ||
          (e.mark.line > 0 && lineHasEnvRef(yaml, e.mark.line - 1))) {
        d.reason += " (inside { } or [ ], quote \"${...}\" values)";
      }
    }
    p.diagnostics.push_back(std::move(d));
    return p;
  }
  if (docs.size() > 1) {
    const Position pos = positionOf(docs[1]);
    p.diagnostics.push_back(
        Diagnostic{file, pos.line, pos.column, "", "only one YAML document is allowed"});
    return p;
  }
  const YAML::Node root = docs.empty() ? YAML::Node() : docs.front();
  try {
    Reader reader(p.config.source, p.diagnostics, baseDir, env);
    readConfig(reader, root, p.config);
  } catch (const std::exception& e) {
    // yaml-cpp should not throw on a tree it built; if it does, report rather than crash.
    p.diagnostics.push_back(
        Diagnostic{file, 0, 0, "", fmt::format("internal error: {}", e.what())});
    return p;
  }
  // A value that failed to read keeps its default; rules about it would only repeat the error.
  std::set<std::string, std::less<>> reported;
  for (const Diagnostic& d : p.diagnostics) {
    reported.insert(d.path);
  }
  for (Diagnostic& d : validate(p.config)) {
    if (!reported.contains(d.path)) {
      p.diagnostics.push_back(std::move(d));
    }
  }
  std::ranges::stable_sort(p.diagnostics, [](const Diagnostic& a, const Diagnostic& b) {
    return std::pair(a.line, a.column) < std::pair(b.line, b.column);
  });
  if (p.diagnostics.size() > kMaxDiagnostics) {
    const std::size_t more = p.diagnostics.size() - kMaxDiagnostics;
    p.diagnostics.resize(kMaxDiagnostics);
    p.diagnostics.push_back(
        Diagnostic{file, 0, 0, "", fmt::format("{} more problems not shown", more)});
  }
  return p;
}

struct FileText {
  std::string text;
  std::optional<Diagnostic> problem;
};

FileText readConfigFile(const std::string& path) {
  FileText out;
  FilePtr f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) {
    out.problem = Diagnostic{path, 0, 0, "", fmt::format("cannot read: {}", std::strerror(errno))};
    return out;
  }
  std::array<char, 65536> buf{};
  while (true) {
    const std::size_t n = std::fread(buf.data(), 1, buf.size(), f.get());
    out.text.append(buf.data(), n);
    if (out.text.size() > kMaxConfigBytes) {
      out.problem = Diagnostic{path, 0, 0, "", "file is larger than 16 MiB"};
      return out;
    }
    if (n < buf.size()) {
      break;
    }
  }
  if (std::ferror(f.get()) != 0) {
    out.problem = Diagnostic{path, 0, 0, "", fmt::format("cannot read: {}", std::strerror(errno))};
  }
  return out;
}

std::string folderOf(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

} // namespace

Error toError(const std::vector<Diagnostic>& diagnostics) {
  std::string message;
  for (const Diagnostic& d : diagnostics) {
    message += message.empty() ? "" : "\n";
    message += d.str();
  }
  return {"config.invalid", std::move(message),
          "fix the keys listed above; docs/configuration.md describes each one"};
}

std::vector<Diagnostic> checkFile(const std::string& path, const LoadOptions& options) {
  FileText file = readConfigFile(path);
  if (file.problem) {
    return {*file.problem};
  }
  const std::string base = options.base_dir.empty() ? folderOf(path) : options.base_dir;
  return parse(file.text, path, base, options.env).diagnostics;
}

std::vector<Diagnostic> checkString(std::string_view yaml, std::string name,
                                    const LoadOptions& options) {
  return parse(yaml, std::move(name), options.base_dir, options.env).diagnostics;
}

Result<Config> loadFile(const std::string& path, const LoadOptions& options) {
  FileText file = readConfigFile(path);
  if (file.problem) {
    return fail("config.read", file.problem->str(), "check the path given with --config");
  }
  const std::string base = options.base_dir.empty() ? folderOf(path) : options.base_dir;
  Parsed p = parse(file.text, path, base, options.env);
  if (!p.diagnostics.empty()) {
    return std::unexpected(toError(p.diagnostics));
  }
  return std::move(p.config);
}

Result<Config> loadString(std::string_view yaml, std::string name, const LoadOptions& options) {
  Parsed p = parse(yaml, std::move(name), options.base_dir, options.env);
  if (!p.diagnostics.empty()) {
    return std::unexpected(toError(p.diagnostics));
  }
  return std::move(p.config);
}

} // namespace mailgate::config

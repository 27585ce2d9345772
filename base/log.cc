#include "base/log.h"

#include <array>
#include <map>
#include <mutex>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <utility>

namespace mailgate {
namespace {

constexpr std::array<std::string_view, 5> kLevelNames = {"trace", "debug", "info", "warn", "error"};
constexpr std::array<std::string_view, 2> kFormatNames = {"text", "json"};

spdlog::level::level_enum toSpdlog(LogLevel level) {
  switch (level) {
  case LogLevel::kTrace:
    return spdlog::level::trace;
  case LogLevel::kDebug:
    return spdlog::level::debug;
  case LogLevel::kInfo:
    return spdlog::level::info;
  case LogLevel::kWarn:
    return spdlog::level::warn;
  case LogLevel::kError:
    return spdlog::level::err;
  }
  return spdlog::level::info;
}

std::string_view levelName(spdlog::level::level_enum level) {
  switch (level) {
  case spdlog::level::trace:
    return "trace";
  case spdlog::level::debug:
    return "debug";
  case spdlog::level::info:
    return "info";
  case spdlog::level::warn:
    return "warn";
  case spdlog::level::err:
    return "error";
  case spdlog::level::critical:
    return "critical";
  default:
    return "off";
  }
}

template <typename Out> void appendBytes(Out& out, std::string_view bytes) {
  out.append(bytes.data(), bytes.data() + bytes.size());
}

constexpr char kHex[] = "0123456789abcdef";

// Length of the well-formed UTF-8 sequence starting at text[i], or 0 when it is not one
// (overlong forms, surrogates and code points above U+10FFFF count as malformed).
std::size_t utf8SequenceLength(std::string_view text, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char b0 = byte(i);
  std::size_t len = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xbf;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    len = 2;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    len = 3;
    if (b0 == 0xe0) {
      lo = 0xa0;
    } else if (b0 == 0xed) {
      hi = 0x9f;
    }
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    len = 4;
    if (b0 == 0xf0) {
      lo = 0x90;
    } else if (b0 == 0xf4) {
      hi = 0x8f;
    }
  } else {
    return 0;
  }
  if (i + len > text.size()) {
    return 0;
  }
  if (byte(i + 1) < lo || byte(i + 1) > hi) {
    return 0;
  }
  for (std::size_t k = 2; k < len; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xbf) {
      return 0;
    }
  }
  return len;
}

bool isControl(unsigned char c) {
  return c < 0x20 || c == 0x7f;
}

// The short escapes both formats write; empty for any other byte.
std::string_view commonEscape(unsigned char c) {
  switch (c) {
  case '\\':
    return "\\\\";
  case '\n':
    return "\\n";
  case '\r':
    return "\\r";
  case '\t':
    return "\\t";
  default:
    return {};
  }
}

// Writes `prefix` then `c` as two lowercase hex digits: \x1b, \u001b.
template <typename Out> void appendHexEscape(Out& out, std::string_view prefix, unsigned char c) {
  appendBytes(out, prefix);
  const std::array<char, 2> digits = {kHex[c >> 4], kHex[c & 0xf]};
  appendBytes(out, std::string_view(digits.data(), digits.size()));
}

// Printable ASCII that JSON takes as it is: the common case, copied in runs.
bool plainJson(unsigned char c) {
  return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

template <typename Out> void escapeJson(std::string_view text, Out& out) {
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t end = i;
    while (end < text.size() && plainJson(static_cast<unsigned char>(text[end]))) {
      ++end;
    }
    if (end > i) {
      appendBytes(out, text.substr(i, end - i));
      i = end;
      continue;
    }
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      const std::size_t len = utf8SequenceLength(text, i);
      if (len == 0) {
        appendBytes(out, "\xef\xbf\xbd"); // U+FFFD for one invalid byte
        ++i;
      } else {
        appendBytes(out, text.substr(i, len));
        i += len;
      }
      continue;
    }
    if (c == '"') {
      appendBytes(out, "\\\"");
    } else if (const std::string_view esc = commonEscape(c); !esc.empty()) {
      appendBytes(out, esc);
    } else if (isControl(c)) {
      appendHexEscape(out, "\\u00", c);
    } else {
      out.push_back(static_cast<char>(c));
    }
    ++i;
  }
}

template <typename Out> void escapeText(std::string_view text, Out& out) {
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (const std::string_view esc = commonEscape(c); !esc.empty()) {
      appendBytes(out, esc);
    } else if (isControl(c)) {
      appendHexEscape(out, "\\x", c);
    } else {
      out.push_back(ch);
    }
  }
}

enum class Field { kMessage, kComponent, kLevel };

// A pattern flag that writes one field of the record, escaped for the chosen format. The
// pattern itself is fixed by this file; only these flags ever see caller-supplied text.
class EscapedFieldFlag final : public spdlog::custom_flag_formatter {
public:
  EscapedFieldFlag(Field field, LogFormat format) : field_(field), format_(format) {}

  void format(const spdlog::details::log_msg& msg, const std::tm& /*time*/,
              spdlog::memory_buf_t& dest) override {
    std::string_view text;
    switch (field_) {
    case Field::kMessage:
      text = std::string_view(msg.payload.data(), msg.payload.size());
      break;
    case Field::kComponent:
      text = std::string_view(msg.logger_name.data(), msg.logger_name.size());
      break;
    case Field::kLevel:
      text = levelName(msg.level);
      break;
    }
    if (format_ == LogFormat::kJson) {
      escapeJson(text, dest);
    } else {
      escapeText(text, dest);
    }
  }

  [[nodiscard]] std::unique_ptr<spdlog::custom_flag_formatter> clone() const override {
    return std::make_unique<EscapedFieldFlag>(field_, format_);
  }

private:
  Field field_;
  LogFormat format_;
};

std::unique_ptr<spdlog::formatter> makeFormatter(LogFormat format) {
  spdlog::pattern_formatter::custom_flags flags;
  flags['*'] = std::make_unique<EscapedFieldFlag>(Field::kMessage, format);
  flags['&'] = std::make_unique<EscapedFieldFlag>(Field::kComponent, format);
  flags['~'] = std::make_unique<EscapedFieldFlag>(Field::kLevel, format);
  std::string pattern =
      format == LogFormat::kJson
          ? R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%~","component":"%&","msg":"%*"})"
          : "%Y-%m-%dT%H:%M:%S.%eZ %~ %&: %*";
  return std::make_unique<spdlog::pattern_formatter>(
      std::move(pattern), spdlog::pattern_time_type::utc, "\n", std::move(flags));
}

// The one sink every logger holds. It forwards to the sink chosen by the latest setupLogging(),
// so switching format or destination never touches a logger's sink list while it is logging.
class SwitchSink final : public spdlog::sinks::sink {
public:
  explicit SwitchSink(spdlog::sink_ptr target) : target_(std::move(target)) {}

  void log(const spdlog::details::log_msg& msg) override { current()->log(msg); }
  void flush() override { current()->flush(); }
  // The format belongs to setupLogging(); attempts to change it through a logger are ignored.
  void set_pattern(const std::string& /*pattern*/) override {}
  void set_formatter(std::unique_ptr<spdlog::formatter> /*formatter*/) override {}

  void setTarget(spdlog::sink_ptr target) {
    const std::lock_guard lock(mutex_);
    target_ = std::move(target);
  }

private:
  spdlog::sink_ptr current() {
    const std::lock_guard lock(mutex_);
    return target_;
  }

  std::mutex mutex_;
  spdlog::sink_ptr target_;
};

struct Registry {
  std::mutex mutex;
  std::shared_ptr<SwitchSink> sink;
  spdlog::level::level_enum level = spdlog::level::info;
  std::map<std::string, std::shared_ptr<spdlog::logger>, std::less<>> loggers;

  Registry() {
    auto target = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    target->set_formatter(makeFormatter(LogFormat::kText));
    sink = std::make_shared<SwitchSink>(std::move(target));
  }
};

Registry& registry() {
  static Registry instance;
  return instance;
}

} // namespace

std::optional<LogLevel> parseLogLevel(std::string_view text) {
  for (std::size_t i = 0; i < kLevelNames.size(); ++i) {
    if (kLevelNames[i] == text) {
      return static_cast<LogLevel>(i);
    }
  }
  return std::nullopt;
}

std::optional<LogFormat> parseLogFormat(std::string_view text) {
  for (std::size_t i = 0; i < kFormatNames.size(); ++i) {
    if (kFormatNames[i] == text) {
      return static_cast<LogFormat>(i);
    }
  }
  return std::nullopt;
}

std::string_view toString(LogLevel level) {
  return kLevelNames.at(static_cast<std::size_t>(level));
}

std::string_view toString(LogFormat format) {
  return kFormatNames.at(static_cast<std::size_t>(format));
}

void setupLogging(LogLevel level, LogFormat format) {
  setupLogging(level, format, std::make_shared<spdlog::sinks::stderr_sink_mt>());
}

void setupLogging(LogLevel level, LogFormat format, spdlog::sink_ptr sink) {
  sink->set_formatter(makeFormatter(format));
  sink->set_level(spdlog::level::trace);
  Registry& reg = registry();
  const std::lock_guard lock(reg.mutex);
  reg.level = toSpdlog(level);
  reg.sink->setTarget(std::move(sink));
  for (auto& [name, log] : reg.loggers) {
    log->set_level(reg.level);
  }
}

std::shared_ptr<spdlog::logger> logger(std::string_view component) {
  Registry& reg = registry();
  const std::lock_guard lock(reg.mutex);
  if (auto it = reg.loggers.find(component); it != reg.loggers.end()) {
    return it->second;
  }
  auto log = std::make_shared<spdlog::logger>(std::string(component), reg.sink);
  log->set_level(reg.level);
  // Warnings and errors reach the sink's file at once; a crash right after must not lose them.
  log->flush_on(spdlog::level::warn);
  reg.loggers.emplace(std::string(component), log);
  return log;
}

void appendJsonEscaped(std::string_view text, std::string& out) {
  escapeJson(text, out);
}

void appendTextEscaped(std::string_view text, std::string& out) {
  escapeText(text, out);
}

} // namespace mailgate

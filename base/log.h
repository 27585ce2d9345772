// Logging set-up: one spdlog logger per component ("smtp", "queue", "net", ...), all writing
// through one shared sink, as text or as JSON lines. Message text is never trusted: both formats
// escape control characters, so a client-supplied string cannot forge a second log line, and the
// JSON format emits valid JSON (and valid UTF-8) whatever bytes the message holds. A Secret
// formats as "***" (base/secret.h), so passing one to a logger is harmless; passing reveal() is
// not.
#pragma once

#include <memory>
#include <optional>
#include <spdlog/common.h>
#include <spdlog/logger.h>
#include <string>
#include <string_view>

namespace mailgate {

// The levels the configuration offers (log.level). kError also lets critical through.
enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError };

// kText: `2026-11-23T14:27:00.123Z info smtp: message` (UTC).
// kJson: one object per line, {"time","level","component","msg"}, time in RFC 3339 UTC.
enum class LogFormat { kText, kJson };

// Parse the configuration spellings ("trace".."error", "text"|"json"); nullopt when unknown.
[[nodiscard]] std::optional<LogLevel> parseLogLevel(std::string_view text);
[[nodiscard]] std::optional<LogFormat> parseLogFormat(std::string_view text);
[[nodiscard]] std::string_view toString(LogLevel level);
[[nodiscard]] std::string_view toString(LogFormat format);

// Sets the level and format of every logger, existing and future, writing to stderr. Safe to call
// again at any time from any thread (SIGHUP reload); lines being written meanwhile finish in the
// old format. Before the first call, loggers write text at info to stderr.
void setupLogging(LogLevel level, LogFormat format);

// Same, but every logger writes to `sink` (tests capture lines with an ostream_sink; a daemon may
// pass a file sink). The sink receives the formatter; do not set another one on it afterwards.
void setupLogging(LogLevel level, LogFormat format, spdlog::sink_ptr sink);

// The logger of one component, created on first use and shared afterwards. Thread-safe. The
// returned pointer stays valid for the life of the process; callers may keep it.
[[nodiscard]] std::shared_ptr<spdlog::logger> logger(std::string_view component);

// Appends `text` to `out` as the inside of a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD. Exposed for other JSON writers.
void appendJsonEscaped(std::string_view text, std::string& out);

// Appends `text` with control characters and backslashes written as \n, \t, \xNN, \\ so that
// one call can never produce more than one line.
void appendTextEscaped(std::string_view text, std::string& out);

} // namespace mailgate

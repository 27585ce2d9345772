#include "gateway/store/json_writer.h"

#include "base/log.h"

#include <ctime>
#include <fmt/format.h>
#include <iterator>

namespace mailgate::store {

void appendJsonString(std::string& out, std::string_view s) {
  out.push_back('"');
  appendJsonEscaped(s, out);
  out.push_back('"');
}

void JsonWriter::appendEscapedTail(std::string_view s) {
  appendJsonEscaped(s, out_);
}

std::string formatRfc3339(int64_t ms) {
  // Floor division so times before 1970 still get a non-negative millisecond part.
  int64_t secs = ms / 1000;
  int64_t millis = ms % 1000;
  if (millis < 0) {
    millis += 1000;
    secs -= 1;
  }
  const auto t = static_cast<std::time_t>(secs);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) {
    return "1970-01-01T00:00:00.000Z";
  }
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
}

} // namespace mailgate::store

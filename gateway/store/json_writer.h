// A minimal streaming JSON writer for event data. Output is always valid JSON: strings are
// escaped, and bytes that are not valid UTF-8 (upstream replies can hold anything) become U+FFFD.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::store {

class JsonWriter {
public:
  JsonWriter& beginObject();
  JsonWriter& endObject();
  JsonWriter& beginArray();
  JsonWriter& endArray();
  // Inside an object, every value is preceded by key().
  JsonWriter& key(std::string_view name);
  JsonWriter& value(std::string_view s);
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }
  template <std::integral T>
    requires(!std::same_as<T, bool>)
  JsonWriter& value(T n) {
    return integer(static_cast<int64_t>(n));
  }
  JsonWriter& value(bool b);
  // Inserts already-encoded JSON (must be one valid value).
  JsonWriter& raw(std::string_view json);

  [[nodiscard]] const std::string& str() const { return out_; }
  [[nodiscard]] std::string take() { return std::move(out_); }

private:
  JsonWriter& integer(int64_t n);
  void separate();

  std::string out_;
  std::vector<bool> first_; // per open container: nothing written in it yet
  bool after_key_ = false;
};

// Appends `s` as a quoted JSON string, escaped by mailgate::appendJsonEscaped (base/log.h).
void appendJsonString(std::string& out, std::string_view s);

// "2026-11-23T14:30:00.123Z" for milliseconds since the Unix epoch (UTC).
[[nodiscard]] std::string formatRfc3339(int64_t ms);

} // namespace mailgate::store

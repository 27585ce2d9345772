// A minimal streaming JSON writer for event data. Output is always valid JSON: strings are
// escaped, and bytes that are not valid UTF-8 (upstream replies can hold anything) become U+FFFD.
#pragma once

#include <array>
#include <charconv>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mailgate::store {

// Hot paths are inline: the control API writes every answer with it.
class JsonWriter {
public:
  // `reserve`: bytes to allocate up front (one allocation for a typical document).
  explicit JsonWriter(std::size_t reserve = 0) { out_.reserve(reserve); }

  JsonWriter& beginObject() { return open('{'); }
  JsonWriter& endObject() { return close('}'); }
  JsonWriter& beginArray() { return open('['); }
  JsonWriter& endArray() { return close(']'); }
  // Inside an object, every value is preceded by key().
  JsonWriter& key(std::string_view name) {
    separate();
    appendString(name);
    out_.push_back(':');
    after_key_ = true;
    return *this;
  }
  JsonWriter& value(std::string_view s) {
    separate();
    appendString(s);
    return *this;
  }
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }
  template <std::integral T>
    requires(!std::same_as<T, bool>)
  JsonWriter& value(T n) {
    separate();
    std::array<char, 24> buf{};
    const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), n);
    out_.append(buf.data(), r.ptr);
    return *this;
  }
  JsonWriter& value(bool b) {
    separate();
    out_ += b ? "true" : "false";
    return *this;
  }
  JsonWriter& null() {
    separate();
    out_ += "null";
    return *this;
  }
  // Inserts already-encoded JSON (must be one valid value).
  JsonWriter& raw(std::string_view json) {
    separate();
    out_.append(json);
    return *this;
  }

  [[nodiscard]] const std::string& str() const { return out_; }
  [[nodiscard]] std::string take() { return std::move(out_); }

private:
  // Containers nest at most this deep (each level is one bit of first_).
  static constexpr unsigned kMaxDepth = 64;

  JsonWriter& open(char c) {
    separate();
    out_.push_back(c);
    ++depth_;
    if (depth_ <= kMaxDepth) {
      first_ |= uint64_t{1} << (depth_ - 1);
    }
    return *this;
  }
  JsonWriter& close(char c) {
    out_.push_back(c);
    if (depth_ > 0) {
      --depth_;
    }
    return *this;
  }
  void separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (depth_ == 0 || depth_ > kMaxDepth) {
      return;
    }
    const uint64_t bit = uint64_t{1} << (depth_ - 1);
    if ((first_ & bit) == 0) {
      out_.push_back(',');
    }
    first_ &= ~bit;
  }
  // Plain printable ASCII (the common case) is copied as it is; anything else is escaped.
  void appendString(std::string_view s) {
    out_.push_back('"');
    std::size_t i = 0;
    while (i < s.size()) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
        break;
      }
      ++i;
    }
    out_.append(s.data(), i);
    if (i < s.size()) {
      appendEscapedTail(s.substr(i));
    }
    out_.push_back('"');
  }
  void appendEscapedTail(std::string_view s);

  std::string out_;
  uint64_t first_ = 0; // bit d-1: nothing written yet in the open container at depth d
  unsigned depth_ = 0;
  bool after_key_ = false;
};

// Appends `s` as a quoted JSON string, escaped by mailgate::appendJsonEscaped (base/log.h).
void appendJsonString(std::string& out, std::string_view s);

// "2026-11-23T14:30:00.123Z" for milliseconds since the Unix epoch (UTC).
[[nodiscard]] std::string formatRfc3339(int64_t ms);

} // namespace mailgate::store

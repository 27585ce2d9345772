// Reading a finished message back the way a mail reader would: GMime parses it, and the tests look
// at structure, decoded bodies and decoded header values.
#pragma once

#include "gateway/message/gmime_support.h"
#include "gateway/message/submission.h"
#include "relay/policy/message_headers.h"

#include <gmime/gmime.h>
#include <gtest/gtest.h>
#include <string>
#include <string_view>
#include <vector>

namespace mailgate::message::testing {

using detail::GPtr;

inline ComposeContext context() {
  ComposeContext ctx;
  ctx.message_id_domain = "node1.example";
  ctx.now_ms = 1709632800000; // Tue, 05 Mar 2024 10:00:00 UTC
  return ctx;
}

inline GPtr<GMimeMessage> parseMessage(const std::string& data) {
  relay::policy::initGmime();
  const GPtr<GMimeStream> stream(g_mime_stream_mem_new_with_buffer(data.data(), data.size()));
  const GPtr<GMimeParser> parser(g_mime_parser_new_with_stream(stream.get()));
  GPtr<GMimeMessage> message(g_mime_parser_construct_message(parser.get(), nullptr));
  EXPECT_NE(message, nullptr);
  return message;
}

// "type/subtype" of a part, lower case.
inline std::string mimeType(GMimeObject* object) {
  GMimeContentType* type = g_mime_object_get_content_type(object);
  char* text = g_mime_content_type_get_mime_type(type);
  std::string out = text != nullptr ? text : "";
  g_free(text);
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

inline std::string contentTypeParameter(GMimeObject* object, const char* name) {
  const char* value = g_mime_object_get_content_type_parameter(object, name);
  return value != nullptr ? value : "";
}

// The decoded bytes of a leaf part (transfer encoding undone, no charset conversion).
inline std::string decodedContent(GMimeObject* object) {
  EXPECT_TRUE(GMIME_IS_PART(object));
  if (!GMIME_IS_PART(object)) {
    return {};
  }
  GMimeDataWrapper* content = g_mime_part_get_content(GMIME_PART(object));
  if (content == nullptr) {
    return {};
  }
  const GPtr<GMimeStream> out(g_mime_stream_mem_new());
  g_mime_data_wrapper_write_to_stream(content, out.get());
  GByteArray* bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out.get()));
  return std::string(reinterpret_cast<const char*>(bytes->data), bytes->len);
}

inline std::vector<GMimeObject*> children(GMimeObject* object) {
  std::vector<GMimeObject*> out;
  EXPECT_TRUE(GMIME_IS_MULTIPART(object)) << mimeType(object);
  if (!GMIME_IS_MULTIPART(object)) {
    return out;
  }
  GMimeMultipart* mp = GMIME_MULTIPART(object);
  for (int i = 0; i < g_mime_multipart_get_count(mp); ++i) {
    out.push_back(g_mime_multipart_get_part(mp, i));
  }
  return out;
}

inline std::string header(GMimeMessage* message, const char* name) {
  const char* value = g_mime_object_get_header(GMIME_OBJECT(message), name);
  return value != nullptr ? value : "";
}

inline bool hasHeader(GMimeMessage* message, const char* name) {
  return g_mime_object_get_header(GMIME_OBJECT(message), name) != nullptr;
}

// The raw header block (up to the empty line, without it).
inline std::string_view rawHeader(std::string_view data) {
  const std::size_t end = data.find("\r\n\r\n");
  return end == std::string_view::npos ? data : data.substr(0, end + 2);
}

// Every line end is CRLF and the text ends with one.
inline bool crlfOnly(std::string_view data) {
  for (std::size_t i = 0; i < data.size(); ++i) {
    if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r')) {
      return false;
    }
    if (data[i] == '\r' && (i + 1 >= data.size() || data[i + 1] != '\n')) {
      return false;
    }
  }
  return data.ends_with("\r\n");
}

inline std::size_t longestLine(std::string_view data) {
  std::size_t longest = 0;
  std::size_t pos = 0;
  while (pos < data.size()) {
    std::size_t eol = data.find("\r\n", pos);
    eol = eol == std::string_view::npos ? data.size() : eol;
    longest = std::max(longest, eol - pos);
    pos = eol + 2;
  }
  return longest;
}

// Names of the top-level header fields, in order.
inline std::vector<std::string> headerNames(std::string_view data) {
  std::vector<std::string> names;
  const std::string_view block = rawHeader(data);
  std::size_t pos = 0;
  while (pos < block.size()) {
    std::size_t eol = block.find("\r\n", pos);
    eol = eol == std::string_view::npos ? block.size() : eol;
    const std::string_view line = block.substr(pos, eol - pos);
    if (!line.empty() && line.front() != ' ' && line.front() != '\t') {
      names.emplace_back(line.substr(0, line.find(':')));
    }
    pos = eol + 2;
  }
  return names;
}

// Every text of an Error is short printable ASCII: nothing from the input but a short echo.
inline void expectTidyError(const Error& e) {
  for (const std::string* text : {&e.message, &e.hint}) {
    EXPECT_LT(text->size(), 400u) << *text;
    for (const char c : *text) {
      EXPECT_TRUE(c >= 0x20 && c < 0x7f)
          << "byte " << int(static_cast<unsigned char>(c)) << " in " << *text;
    }
  }
  EXPECT_FALSE(e.hint.empty()) << e.message;
}

} // namespace mailgate::message::testing

#include "gateway/message/gmime_support.h"

namespace mailgate::message::detail {

std::string writeCrlf(GMimeObject* object) {
  const GPtr<GMimeStream> stream(g_mime_stream_mem_new());
  const std::unique_ptr<GMimeFormatOptions, decltype(&g_mime_format_options_free)> options(
      g_mime_format_options_new(), &g_mime_format_options_free);
  g_mime_format_options_set_newline_format(options.get(), GMIME_NEWLINE_FORMAT_DOS);
  g_mime_object_write_to_stream(object, options.get(), stream.get());
  GByteArray* bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(stream.get()));
  return bytes == nullptr ? std::string()
                          : std::string(reinterpret_cast<const char*>(bytes->data), bytes->len);
}

} // namespace mailgate::message::detail

// GMime plumbing shared by the composer and the raw path: ownership of GObjects and writing a
// GMime object as CRLF text. Internal to gateway/message/. GMime is initialised with
// relay::policy::initGmime (one once-flag for the whole process).
#pragma once

#include <gmime/gmime.h>
#include <memory>
#include <string>

namespace mailgate::message::detail {

struct GObjectUnref {
  void operator()(gpointer object) const {
    if (object != nullptr) {
      g_object_unref(object);
    }
  }
};
// Owns one reference to a GObject (GMimeObject, InternetAddress, GMimeStream, ...).
template <typename T> using GPtr = std::unique_ptr<T, GObjectUnref>;

// `object` written with CRLF line ends (GMIME_NEWLINE_FORMAT_DOS).
[[nodiscard]] std::string writeCrlf(GMimeObject* object);

} // namespace mailgate::message::detail

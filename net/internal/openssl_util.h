// Internal to net/: reading OpenSSL's error queue into text.
#pragma once

#include <string>

namespace mailgate::net {

// Empties this thread's OpenSSL error queue and returns its reasons joined with "; " (or
// `fallback` if it was empty).
std::string takeOpensslErrors(const std::string& fallback = "unknown error");

} // namespace mailgate::net

// Test-only reader of what CommandBuilder sends, shared by the unit tests and the command fuzz
// target. Written from RFC 9051's grammar rather than from the builder.
#pragma once

#include "imap/protocol/command_builder.h"

#include <cstddef>
#include <string>
#include <vector>

namespace mailgate::imap::protocol::testing_support {

// The chunks are joined (each but the last must end in a synchronizing literal's
// announcement, whose bytes must open the next chunk), then split into arguments. `ok` is false
// on anything a server would not read as exactly these arguments.
struct Tokenized {
  std::vector<std::string> args; // tag, name words, then every argument's bytes
  std::size_t line_ends = 0;     // CRLFs outside literals
  bool ok = false;
};

inline Tokenized tokenize(const Command& command) {
  Tokenized out;
  std::string wire;
  std::vector<std::size_t> chunk_ends;
  for (const auto& chunk : command.chunks) {
    wire += chunk;
    chunk_ends.push_back(wire.size());
  }
  std::size_t pos = 0;
  std::size_t sync_literals = 0;
  while (pos < wire.size()) {
    const char c = wire[pos];
    if (c == '\r') {
      if (wire.compare(pos, 2, "\r\n") != 0) {
        return out;
      }
      ++out.line_ends;
      pos += 2;
      if (pos != wire.size()) {
        return out; // a second line
      }
      break;
    }
    if (!out.args.empty()) {
      if (c != ' ') {
        return out;
      }
      ++pos;
    }
    std::string arg;
    if (wire[pos] == '"') {
      ++pos;
      while (pos < wire.size() && wire[pos] != '"') {
        const char d = wire[pos];
        if (d == '\r' || d == '\n' || d == '\0' || static_cast<unsigned char>(d) >= 0x80) {
          return out;
        }
        if (d == '\\') {
          ++pos;
          if (pos >= wire.size() || (wire[pos] != '"' && wire[pos] != '\\')) {
            return out;
          }
        }
        arg += wire[pos++];
      }
      if (pos >= wire.size()) {
        return out;
      }
      ++pos;
    } else if (wire[pos] == '{' || wire.compare(pos, 2, "~{") == 0) {
      if (wire[pos] == '~') {
        ++pos;
      }
      ++pos;
      std::size_t n = 0;
      std::size_t digits = 0;
      while (pos < wire.size() && wire[pos] >= '0' && wire[pos] <= '9') {
        n = n * 10 + static_cast<std::size_t>(wire[pos++] - '0');
        ++digits;
      }
      bool plus = false;
      if (pos < wire.size() && wire[pos] == '+') {
        plus = true;
        ++pos;
      }
      if (digits == 0 || wire.compare(pos, 3, "}\r\n") != 0) {
        return out;
      }
      pos += 3;
      if (!plus) {
        // A synchronizing literal: the chunk must end exactly here.
        if (sync_literals >= chunk_ends.size() - 1 || chunk_ends[sync_literals] != pos) {
          return out;
        }
        ++sync_literals;
      }
      if (pos + n > wire.size()) {
        return out;
      }
      arg = wire.substr(pos, n);
      pos += n;
    } else {
      while (pos < wire.size() && wire[pos] != ' ' && wire[pos] != '\r') {
        const auto u = static_cast<unsigned char>(wire[pos]);
        if (u < 0x21 || u >= 0x7f || wire[pos] == '"' || wire[pos] == '{') {
          return out;
        }
        arg += wire[pos++];
      }
      if (arg.empty()) {
        return out;
      }
    }
    out.args.push_back(std::move(arg));
  }
  out.ok = out.line_ends == 1 && sync_literals + 1 == command.chunks.size();
  return out;
}

} // namespace mailgate::imap::protocol::testing_support

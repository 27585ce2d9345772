// Human renderings of the control API's answers (shapes in docs/api.md). Pure functions of the
// JSON; fields that are missing or null show as "-", so an older or newer server still renders.
#pragma once

#include "base/error.h"

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>

namespace mailgate::ctl {

// Keeps the server's key order, so --json prints the answer as it came.
using Json = nlohmann::ordered_json;

struct RenderOptions {
  std::size_t line_width = 0; // the terminal's columns; 0: not a terminal (last column cut at 60)
};

// Errors: "ctl.answer" when the answer is not the object the endpoint promises.
Result<std::string> renderStatus(const Json& status);
Result<std::string> renderMailboxTable(const Json& mailboxes, const RenderOptions& o); // array
Result<std::string> renderMailbox(const Json& mailbox);
Result<std::string> renderQueueTable(const Json& messages, const RenderOptions& o); // array
Result<std::string> renderQueueCounts(const Json& counts);
Result<std::string> renderMessage(const Json& message, const RenderOptions& o);
Result<std::string> renderReload(const Json& report);

// "1d 2h 3m 4s", leading zero units left out; "0s" for 0.
std::string formatUptime(int64_t seconds);

// A value as one line of text: "-" for null or missing, "yes"/"no", numbers as JSON writes them,
// arrays joined by ", ", objects as compact JSON.
std::string textOf(const Json* value);

} // namespace mailgate::ctl

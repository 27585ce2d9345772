// Rules that relate values to each other (references, duplicates, combinations). Pure: reads
// only the Config, touches no file, environment or clock, so it runs the same on a loaded file,
// on a reload candidate and on a Config built in a test.
#pragma once

#include "config/config.h"
#include "config/source_map.h"

#include <vector>

namespace mailgate::config {

// Every violation, in the order found (the loader sorts by position). Positions come from
// config.source; a Config built in code gets diagnostics without positions.
[[nodiscard]] std::vector<Diagnostic> validate(const Config& config);

} // namespace mailgate::config

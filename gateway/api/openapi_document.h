// The OpenAPI 3.1 document of the control API: gateway/api/openapi.json, compiled in (CMake
// writes it into openapi_document.cc), served at GET /v1/openapi.json.
#pragma once

#include <string_view>

namespace mailgate::api {

[[nodiscard]] std::string_view openApiDocument();

} // namespace mailgate::api

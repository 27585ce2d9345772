// mailgatectl below main(): parse the command line, find the URL and the token, run the command
// against an ApiClient, print, and return the exit code (exit_codes.h). Everything the process
// touches (environment, transport, streams, terminal width) is injected, so all of it is tested
// without sockets.
#pragma once

#include "base/secret.h"
#include "gateway/ctl/api_client.h"
#include "gateway/ctl/api_url.h"
#include "gateway/ctl/cli_args.h"
#include "gateway/ctl/views.h"

#include <chrono>
#include <expected>
#include <functional>
#include <optional>
#include <ostream>
#include <span>
#include <string>

namespace mailgate::ctl {

inline constexpr std::string_view kDefaultUrl = "http://127.0.0.1:8025";

// What the transport is built from once the command line and environment are resolved.
struct ClientSettings {
  std::string base_url; // normalized (api_url.h)
  std::chrono::milliseconds timeout{10000};
  std::string cacert;
  bool http2_prior_knowledge = false;
};

struct CtlEnvironment {
  std::function<std::optional<std::string>(const char* name)> getenv;
  std::function<Result<ApiClientPtr>(const ClientSettings&)> make_client;
  std::ostream* out = nullptr; // answers (tables, blocks, --json documents)
  std::ostream* err = nullptr; // failures: message, details, hint
  RenderOptions render;
  std::string version = "0.0.0";
};

// The whole program; `args` excludes argv[0].
int runCtl(std::span<const std::string> args, const CtlEnvironment& env);

// One parsed command against one API. Not thread-safe; one run() per instance.
class CtlRunner {
public:
  CtlRunner(ApiClient& client, Secret token, std::string base_url, CtlArgs args, std::ostream& out,
            std::ostream& err, RenderOptions render);

  int run();

private:
  // A 2xx answer's JSON, or the exit code once the failure has been reported on err_ (and,
  // with --json, the server's error document printed on out_).
  std::expected<Json, int> exchange(const std::string& method, const std::string& path,
                                    const QueryParams& query = {}, std::string body = {},
                                    bool reload = false);

  // Prints `answer` (with --json) or what `render` makes of it; 0, or 1 when it did not render.
  int show(const Json& answer, const Result<std::string>& rendered);
  int reportLocal(const Error& e);

  int status();
  int mailboxes();
  int mailbox(const std::string& suffix, const std::string& method);
  int queue();
  int message(const std::string& suffix, const std::string& method);
  int reload();

  ApiClient& client_;
  Secret token_;
  std::string base_url_;
  CtlArgs args_;
  std::ostream& out_;
  std::ostream& err_;
  RenderOptions render_;
};

} // namespace mailgate::ctl

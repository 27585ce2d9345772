// mailgatectl: the operator's command line for mailgated's control API (docs/cli.md).
#include "gateway/ctl/ctl_runner.h"
#include "gateway/ctl/curl_api_client.h"

#include <cstdlib>
#include <iostream>
#include <string>
#include <sys/ioctl.h>
#include <unistd.h>
#include <vector>

#ifndef MAILGATE_VERSION
#define MAILGATE_VERSION "0.0.0"
#endif

namespace {

// The terminal's width when stdout is one, else 0 (tables then cut their last column at 60).
std::size_t terminalColumns() {
  if (isatty(STDOUT_FILENO) == 0) {
    return 0;
  }
  winsize ws{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
    return ws.ws_col;
  }
  return 80;
}

} // namespace

int main(int argc, char** argv) {
  using namespace mailgate::ctl;
  const std::vector<std::string> args(argv + 1, argv + argc);
  CtlEnvironment env;
  env.getenv = [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    return v != nullptr ? std::optional<std::string>(v) : std::nullopt;
  };
  env.make_client = [](const ClientSettings& s) {
    CurlOptions o;
    o.timeout = s.timeout;
    o.cacert = s.cacert;
    o.http2_prior_knowledge = s.http2_prior_knowledge;
    o.user_agent = std::string("mailgatectl/") + MAILGATE_VERSION;
    return makeCurlApiClient(std::move(o));
  };
  env.out = &std::cout;
  env.err = &std::cerr;
  env.render.line_width = terminalColumns();
  env.version = MAILGATE_VERSION;
  const int code = runCtl(args, env);
  std::cout.flush();
  return code;
}

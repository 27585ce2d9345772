// JSON answers shaped as docs/api.md says, from tests/gateway/ctl/fixtures/.
#pragma once

#include <fstream>
#include <gtest/gtest.h>
#include <sstream>
#include <string>

namespace mailgate::ctl::testing {

inline std::string fixture(const std::string& name) {
  std::ifstream in(std::string(MAILGATE_CTL_FIXTURES) + "/" + name);
  EXPECT_TRUE(in.good()) << "no fixture " << name;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

} // namespace mailgate::ctl::testing

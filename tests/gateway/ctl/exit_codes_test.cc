#include "gateway/ctl/exit_codes.h"

#include <gtest/gtest.h>

namespace mailgate::ctl {
namespace {

TEST(ExitCodes, HttpStatusesMapAsDocumented) {
  for (int s : {200, 201, 202, 204}) {
    EXPECT_EQ(exitCodeForStatus(s, false), kExitOk) << s;
    EXPECT_EQ(exitCodeForStatus(s, true), kExitOk) << s;
  }
  EXPECT_EQ(exitCodeForStatus(401, false), 3);
  EXPECT_EQ(exitCodeForStatus(403, false), 3);
  EXPECT_EQ(exitCodeForStatus(403, true), 3);
  EXPECT_EQ(exitCodeForStatus(404, false), 4);
  EXPECT_EQ(exitCodeForStatus(409, false), 5);
  EXPECT_EQ(exitCodeForStatus(422, true), 6);
  // 422 elsewhere (e.g. a submission refused) is just an API error.
  EXPECT_EQ(exitCodeForStatus(422, false), 1);
  for (int s : {301, 400, 405, 413, 415, 429, 431, 500, 502, 503, 504}) {
    EXPECT_EQ(exitCodeForStatus(s, false), 1) << s;
    EXPECT_EQ(exitCodeForStatus(s, true), 1) << s;
  }
}

TEST(ExitCodes, LocalErrorsMapByCode) {
  EXPECT_EQ(exitCodeForError({"net.connect", "refused"}), 7);
  EXPECT_EQ(exitCodeForError({"net.tls", "bad certificate"}), 7);
  EXPECT_EQ(exitCodeForError({"net.timeout", "slow"}), 7);
  EXPECT_EQ(exitCodeForError({"net.io", "reset"}), 7);
  EXPECT_EQ(exitCodeForError({"ctl.usage", "?"}), 2);
  EXPECT_EQ(exitCodeForError({"ctl.url", "?"}), 2);
  EXPECT_EQ(exitCodeForError({"ctl.cacert", "?"}), 2);
  EXPECT_EQ(exitCodeForError({"ctl.token", "none"}), 3);
  EXPECT_EQ(exitCodeForError({"ctl.answer", "odd"}), 1);
  EXPECT_EQ(exitCodeForError({"ctl.answer_too_large", "big"}), 1);
  EXPECT_EQ(exitCodeForError({"ctl.http", "?"}), 1);
}

} // namespace
} // namespace mailgate::ctl

#include "gateway/store/id_generator.h"

#include <gtest/gtest.h>
#include <set>
#include <string>

namespace mailgate::store {
namespace {

TEST(IdGeneratorTest, IdsAre26UrlSafeCharactersWithTheTimeFirst) {
  IdGenerator g(1);
  const std::string id = g.next(1'790'000'000'000);
  ASSERT_EQ(id.size(), 26u);
  EXPECT_EQ(id.find_first_not_of("0123456789ABCDEFGHJKMNPQRSTVWXYZ"), std::string::npos);
  // The same millisecond from another generator shares the 10 time characters.
  IdGenerator other(2);
  EXPECT_EQ(other.next(1'790'000'000'000).substr(0, 10), id.substr(0, 10));
  EXPECT_EQ(IdGenerator(3).next(0).substr(0, 10), "0000000000");
}

TEST(IdGeneratorTest, IdsIncreaseWithinAMillisecondAndWhenTheClockStepsBack) {
  IdGenerator g(42);
  std::string prev = g.next(1000);
  for (int i = 0; i < 10000; ++i) {
    const std::string id = g.next(i % 3 == 0 ? 999 : 1000); // same ms, or back in time
    EXPECT_LT(prev, id);
    prev = id;
  }
  const std::string later = g.next(1001);
  EXPECT_LT(prev, later);
}

TEST(IdGeneratorTest, DifferentSeedsGiveDifferentIds) {
  std::set<std::string> ids;
  for (uint64_t seed = 0; seed < 100; ++seed) {
    ids.insert(IdGenerator(seed).next(5));
  }
  EXPECT_EQ(ids.size(), 100u);
}

} // namespace
} // namespace mailgate::store

// SHA-256 against the FIPS 180-2 example vectors.
#include "net/digest.h"

#include <gtest/gtest.h>
#include <string>

namespace mailgate::net {
namespace {

TEST(Digest, Sha256KnownVectors) {
  EXPECT_EQ(sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string with_nul("a\0b", 3);
  EXPECT_NE(sha256Hex(with_nul), sha256Hex("ab")) << "the whole byte range counts";
}

} // namespace
} // namespace mailgate::net

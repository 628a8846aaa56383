// request_fuzz_seeds OUT_DIR SEED.txtpb...: writes each seed (a GenerateRequest in protobuf text
// format) into OUT_DIR in the wire format, as the fuzzer's starting corpus. Exit 1 on a seed that
// does not parse, so that a stale seed is noticed.
#include <google/protobuf/text_format.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

#include "kvserve/v1/generation.pb.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: request_fuzz_seeds OUT_DIR SEED.txtpb...\n";
    return 2;
  }
  const std::filesystem::path out = argv[1];
  std::filesystem::create_directories(out);
  for (int i = 2; i < argc; ++i) {
    std::ifstream in(argv[i]);
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    kvserve::v1::GenerateRequest request;
    if (!in || !google::protobuf::TextFormat::ParseFromString(text, &request)) {
      std::cerr << "request_fuzz_seeds: " << argv[i] << " is not a GenerateRequest\n";
      return 1;
    }
    const std::filesystem::path seed = out / std::filesystem::path(argv[i]).stem();
    std::ofstream(seed, std::ios::binary) << request.SerializeAsString();
  }
  return 0;
}

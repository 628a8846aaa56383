// libsentencepiece behind plain std types (internal to tokenizer/). The library itself lives in a
// module (sentencepiece_shim.cc) loaded privately at the first Load: Debian's libsentencepiece
// carries its own protobuf-lite symbols, which crash a process that also loads the system
// libprotobuf (libtorch, gRPC) when both are linked normally.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kvserve {

class SentencePieceModel {
 public:
  // nullptr with *error set when PATH cannot be loaded.
  static std::unique_ptr<SentencePieceModel> Load(const std::string& path, std::string* error);
  ~SentencePieceModel();

  std::vector<int> Encode(std::string_view text) const;
  std::string Decode(const std::vector<int>& ids) const;
  int size() const;
  int PieceToId(std::string_view piece) const;  // unk_id() when unknown
  const std::string& IdToPiece(int id) const;
  bool IsControl(int id) const;
  bool IsUnknown(int id) const;
  int bos_id() const;
  int eos_id() const;
  int unk_id() const;

  struct Api;

 private:
  SentencePieceModel(const Api* api, void* handle);

  const Api* api_;
  void* handle_;
  std::vector<std::string> pieces_;
  std::unordered_map<std::string, int> piece_ids_;
};

}  // namespace kvserve

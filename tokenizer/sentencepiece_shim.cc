// A C interface to libsentencepiece, built as a module that SentencePieceModel loads with
// dlopen(RTLD_LOCAL | RTLD_DEEPBIND). Debian's libsentencepiece carries its own copy of
// protobuf-lite's symbols; linked into a process that also loads the system libprotobuf (libtorch,
// gRPC), one library's calls bind to the other's copy and the process crashes at start-up. Loaded
// locally and deep-bound, each copy keeps to itself.
#include <sentencepiece_processor.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#define KVSERVE_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

char* CopyOut(const std::string& text, size_t* length) {
  char* out = static_cast<char*>(std::malloc(text.size() + 1));
  std::memcpy(out, text.data(), text.size());
  out[text.size()] = '\0';
  if (length != nullptr) *length = text.size();
  return out;
}

sentencepiece::SentencePieceProcessor* Processor(void* handle) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(handle);
}

}  // namespace

// Returns a processor, or nullptr with *error (malloc'd) set.
KVSERVE_EXPORT void* kvserve_spm_load(const char* path, char** error) {
  auto* processor = new sentencepiece::SentencePieceProcessor();
  if (const auto status = processor->Load(path); !status.ok()) {
    *error = CopyOut(status.ToString(), nullptr);
    delete processor;
    return nullptr;
  }
  return processor;
}

KVSERVE_EXPORT void kvserve_spm_free(void* handle) { delete Processor(handle); }
KVSERVE_EXPORT void kvserve_spm_free_buffer(void* buffer) { std::free(buffer); }

// Writes a malloc'd array of ids to *ids and returns its length.
KVSERVE_EXPORT size_t kvserve_spm_encode(void* handle, const char* text, size_t length, int** ids) {
  const std::vector<int> encoded = Processor(handle)->EncodeAsIds(std::string(text, length));
  *ids = static_cast<int*>(std::malloc(sizeof(int) * (encoded.size() + 1)));
  std::memcpy(*ids, encoded.data(), sizeof(int) * encoded.size());
  return encoded.size();
}

// Returns malloc'd text and its length.
KVSERVE_EXPORT char* kvserve_spm_decode(void* handle, const int* ids, size_t count,
                                        size_t* length) {
  return CopyOut(Processor(handle)->DecodeIds(std::vector<int>(ids, ids + count)), length);
}

KVSERVE_EXPORT int kvserve_spm_size(void* handle) { return Processor(handle)->GetPieceSize(); }
KVSERVE_EXPORT char* kvserve_spm_id_to_piece(void* handle, int id, size_t* length) {
  return CopyOut(Processor(handle)->IdToPiece(id), length);
}
KVSERVE_EXPORT int kvserve_spm_is_control(void* handle, int id) {
  return Processor(handle)->IsControl(id);
}
KVSERVE_EXPORT int kvserve_spm_is_unknown(void* handle, int id) {
  return Processor(handle)->IsUnknown(id);
}
KVSERVE_EXPORT int kvserve_spm_bos_id(void* handle) { return Processor(handle)->bos_id(); }
KVSERVE_EXPORT int kvserve_spm_eos_id(void* handle) { return Processor(handle)->eos_id(); }
KVSERVE_EXPORT int kvserve_spm_unk_id(void* handle) { return Processor(handle)->unk_id(); }

#include "tokenizer/sentencepiece_model.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <unordered_map>

namespace kvserve {

// The shim module's C functions (tokenizer/sentencepiece_shim.cc), resolved once.
struct SentencePieceModel::Api {
  void* (*load)(const char*, char**);
  void (*free)(void*);
  void (*free_buffer)(void*);
  size_t (*encode)(void*, const char*, size_t, int**);
  char* (*decode)(void*, const int*, size_t, size_t*);
  int (*size)(void*);
  char* (*id_to_piece)(void*, int, size_t*);
  int (*is_control)(void*, int);
  int (*is_unknown)(void*, int);
  int (*bos_id)(void*);
  int (*eos_id)(void*);
  int (*unk_id)(void*);
};

namespace {

// Where the shim is: beside the running executable (an installed tree), else where the build put
// it.
std::string ShimPath() {
  std::error_code error;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) {
    for (const auto& dir : {exe.parent_path(), exe.parent_path() / ".." / "lib"}) {
      const auto candidate = dir / KVSERVE_SENTENCEPIECE_SHIM_NAME;
      if (std::filesystem::exists(candidate)) return candidate.string();
    }
  }
  return KVSERVE_SENTENCEPIECE_SHIM_PATH;
}

template <typename F>
bool Resolve(void* module, const char* name, F* out) {
  *out = reinterpret_cast<F>(dlsym(module, name));
  return *out != nullptr;
}

const SentencePieceModel::Api* LoadApi(std::string* error) {
  static std::once_flag once;
  static SentencePieceModel::Api api;
  static std::string load_error;
  std::call_once(once, [] {
    const std::string path = ShimPath();
    void* module = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (module == nullptr) {
      load_error = "cannot load the sentencepiece module " + path + ": " + dlerror();
      return;
    }
    const bool ok = Resolve(module, "kvserve_spm_load", &api.load) &&
                    Resolve(module, "kvserve_spm_free", &api.free) &&
                    Resolve(module, "kvserve_spm_free_buffer", &api.free_buffer) &&
                    Resolve(module, "kvserve_spm_encode", &api.encode) &&
                    Resolve(module, "kvserve_spm_decode", &api.decode) &&
                    Resolve(module, "kvserve_spm_size", &api.size) &&
                    Resolve(module, "kvserve_spm_id_to_piece", &api.id_to_piece) &&
                    Resolve(module, "kvserve_spm_is_control", &api.is_control) &&
                    Resolve(module, "kvserve_spm_is_unknown", &api.is_unknown) &&
                    Resolve(module, "kvserve_spm_bos_id", &api.bos_id) &&
                    Resolve(module, "kvserve_spm_eos_id", &api.eos_id) &&
                    Resolve(module, "kvserve_spm_unk_id", &api.unk_id);
    if (!ok) load_error = "the sentencepiece module " + path + " lacks a function";
  });
  if (!load_error.empty()) {
    *error = load_error;
    return nullptr;
  }
  return &api;
}

}  // namespace

std::unique_ptr<SentencePieceModel> SentencePieceModel::Load(const std::string& path,
                                                             std::string* error) {
  const Api* api = LoadApi(error);
  if (api == nullptr) return nullptr;
  char* load_error = nullptr;
  void* handle = api->load(path.c_str(), &load_error);
  if (handle == nullptr) {
    *error = load_error != nullptr ? load_error : "cannot load " + path;
    api->free_buffer(load_error);
    return nullptr;
  }
  return std::unique_ptr<SentencePieceModel>(new SentencePieceModel(api, handle));
}

SentencePieceModel::SentencePieceModel(const Api* api, void* handle) : api_(api), handle_(handle) {
  // Pieces are copied once so IdToPiece can hand out references.
  const int count = api_->size(handle_);
  pieces_.reserve(count);
  for (int id = 0; id < count; ++id) {
    size_t length = 0;
    char* piece = api_->id_to_piece(handle_, id, &length);
    pieces_.emplace_back(piece, length);
    api_->free_buffer(piece);
    piece_ids_.emplace(pieces_.back(), id);
  }
}

SentencePieceModel::~SentencePieceModel() { api_->free(handle_); }

std::vector<int> SentencePieceModel::Encode(std::string_view text) const {
  int* ids = nullptr;
  const size_t count = api_->encode(handle_, text.data(), text.size(), &ids);
  std::vector<int> result(ids, ids + count);
  api_->free_buffer(ids);
  return result;
}

std::string SentencePieceModel::Decode(const std::vector<int>& ids) const {
  size_t length = 0;
  char* text = api_->decode(handle_, ids.data(), ids.size(), &length);
  std::string result(text, length);
  api_->free_buffer(text);
  return result;
}

int SentencePieceModel::size() const { return static_cast<int>(pieces_.size()); }
int SentencePieceModel::PieceToId(std::string_view piece) const {
  auto it = piece_ids_.find(std::string(piece));
  return it == piece_ids_.end() ? unk_id() : it->second;
}
const std::string& SentencePieceModel::IdToPiece(int id) const { return pieces_.at(id); }
bool SentencePieceModel::IsControl(int id) const { return api_->is_control(handle_, id); }
bool SentencePieceModel::IsUnknown(int id) const { return api_->is_unknown(handle_, id); }
int SentencePieceModel::bos_id() const { return api_->bos_id(handle_); }
int SentencePieceModel::eos_id() const { return api_->eos_id(handle_); }
int SentencePieceModel::unk_id() const { return api_->unk_id(handle_); }

}  // namespace kvserve

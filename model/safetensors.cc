#include "model/safetensors.h"

#include <absl/status/status.h>
#include <absl/strings/str_cat.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

namespace kvserve {

// A read-only memory mapping of a whole file.
class MappedFile {
 public:
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) return absl::NotFoundError(absl::StrCat("cannot open ", path));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      return absl::InternalError(absl::StrCat("cannot stat ", path));
    }
    auto file = std::unique_ptr<MappedFile>(new MappedFile(path, static_cast<size_t>(st.st_size)));
    if (file->size_ > 0) {
      void* data = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (data == MAP_FAILED) {
        ::close(fd);
        return absl::InternalError(absl::StrCat("cannot map ", path));
      }
      file->data_ = static_cast<const uint8_t*>(data);
    }
    ::close(fd);
    return file;
  }
  ~MappedFile() {
    if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  MappedFile(std::string path, size_t size) : path_(std::move(path)), size_(size) {}
  std::string path_;
  size_t size_;
  const uint8_t* data_ = nullptr;
};

namespace {

using nlohmann::json;

absl::StatusOr<at::ScalarType> ParseDtype(const std::string& name) {
  if (name == "F32") return at::kFloat;
  if (name == "F16") return at::kHalf;
  if (name == "BF16") return at::kBFloat16;
  if (name == "F64") return at::kDouble;
  if (name == "I64") return at::kLong;
  if (name == "I32") return at::kInt;
  return absl::InvalidArgumentError(absl::StrCat("unsupported dtype ", name));
}

std::string DtypeName(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat:
      return "F32";
    case at::kHalf:
      return "F16";
    case at::kBFloat16:
      return "BF16";
    case at::kDouble:
      return "F64";
    case at::kLong:
      return "I64";
    case at::kInt:
      return "I32";
    default:
      return "";
  }
}

}  // namespace

SafetensorsReader::~SafetensorsReader() = default;

absl::StatusOr<std::unique_ptr<SafetensorsReader>> SafetensorsReader::OpenFile(
    const std::string& path) {
  auto reader = std::unique_ptr<SafetensorsReader>(new SafetensorsReader());
  if (auto status = reader->AddFile(path); !status.ok()) return status;
  return reader;
}

absl::StatusOr<std::unique_ptr<SafetensorsReader>> SafetensorsReader::OpenFolder(
    const std::string& dir) {
  const std::string single = dir + "/model.safetensors";
  const std::string index_path = dir + "/model.safetensors.index.json";
  if (std::filesystem::exists(single)) return OpenFile(single);
  if (!std::filesystem::exists(index_path)) {
    return absl::NotFoundError(
        absl::StrCat("no model.safetensors or model.safetensors.index.json in ", dir));
  }
  std::ifstream in(index_path);
  json index = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": missing or bad 'weight_map'"));
  }
  std::set<std::string> shards;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (!shard.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": bad shard for ", name));
    }
    shards.insert(shard.get<std::string>());
  }
  auto reader = std::unique_ptr<SafetensorsReader>(new SafetensorsReader());
  for (const auto& shard : shards) {
    if (auto status = reader->AddFile(dir + "/" + shard); !status.ok()) return status;
  }
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (!reader->Has(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          index_path, ": tensor ", name, " is not in shard ", shard.get<std::string>()));
    }
  }
  return reader;
}

absl::Status SafetensorsReader::AddFile(const std::string& path) {
  auto mapped = MappedFile::Open(path);
  if (!mapped.ok()) return mapped.status();
  const MappedFile& file = **mapped;
  uint64_t header_size = 0;
  if (file.size() < 8) return absl::DataLossError(absl::StrCat(path, " is truncated (no header)"));
  std::memcpy(&header_size, file.data(), 8);
  if (header_size > file.size() - 8) {
    return absl::DataLossError(absl::StrCat(path, " is truncated (header of ", header_size,
                                            " bytes, file of ", file.size(), ")"));
  }
  const char* header_begin = reinterpret_cast<const char*>(file.data() + 8);
  json header = json::parse(header_begin, header_begin + header_size, nullptr, false);
  if (header.is_discarded() || !header.is_object()) {
    return absl::DataLossError(absl::StrCat(path, ": the header is not valid JSON"));
  }
  const size_t data_start = 8 + header_size;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    try {
      auto dtype = ParseDtype(info.at("dtype").get<std::string>());
      if (!dtype.ok())
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": ", name, ": ", dtype.status().message()));
      Entry entry{&file, *dtype, info.at("shape").get<std::vector<int64_t>>(), 0, 0};
      const auto offsets = info.at("data_offsets").get<std::vector<size_t>>();
      if (offsets.size() != 2 || offsets[0] > offsets[1]) throw std::invalid_argument("offsets");
      entry.begin = data_start + offsets[0];
      entry.end = data_start + offsets[1];
      int64_t numel = 1;
      for (int64_t d : entry.shape) numel *= d;
      if (entry.end - entry.begin != numel * c10::elementSize(entry.dtype)) {
        return absl::DataLossError(absl::StrCat(path, ": tensor ", name, " has ",
                                                entry.end - entry.begin, " bytes for its shape"));
      }
      if (entry.end > file.size()) {
        return absl::DataLossError(
            absl::StrCat(path, " is truncated: tensor ", name, " ends past the end of the file"));
      }
      entries_[name] = std::move(entry);
    } catch (const std::exception&) {
      return absl::DataLossError(absl::StrCat(path, ": bad header entry for tensor ", name));
    }
  }
  files_.push_back(std::move(*mapped));
  return absl::OkStatus();
}

std::vector<std::string> SafetensorsReader::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, entry] : entries_) names.push_back(name);
  return names;
}

std::vector<int64_t> SafetensorsReader::Shape(const std::string& name) const {
  return entries_.at(name).shape;
}

absl::StatusOr<at::Tensor> SafetensorsReader::Read(const std::string& name,
                                                   const at::TensorOptions& options) const {
  auto it = entries_.find(name);
  if (it == entries_.end())
    return absl::NotFoundError(absl::StrCat("tensor ", name, " is missing"));
  const Entry& e = it->second;
  // from_blob only views the mapping, which dies with the reader: copy into a tensor of our own
  // (copy_ converts the dtype and moves to the device).
  auto view = at::from_blob(const_cast<uint8_t*>(e.file->data() + e.begin), e.shape,
                            at::TensorOptions().dtype(e.dtype));
  auto tensor = at::empty(e.shape, options);
  tensor.copy_(view);
  return tensor;
}

absl::Status WriteSafetensors(const std::string& path,
                              const std::map<std::string, at::Tensor>& tensors) {
  json header = json::object();
  std::vector<at::Tensor> contiguous;
  size_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    auto t = tensor.to(at::kCPU).contiguous();
    const std::string dtype = DtypeName(t.scalar_type());
    if (dtype.empty()) return absl::InvalidArgumentError(absl::StrCat("cannot write ", name));
    const size_t bytes = t.numel() * t.element_size();
    header[name] = {
        {"dtype", dtype}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(t);
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');  // keep the data 8-byte aligned
  std::ofstream out(path, std::ios::binary);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  const uint64_t header_size = header_text.size();
  out.write(reinterpret_cast<const char*>(&header_size), 8);
  out.write(header_text.data(), header_text.size());
  for (const auto& t : contiguous) {
    out.write(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  }
  return out.good() ? absl::OkStatus() : absl::DataLossError(absl::StrCat("short write to ", path));
}

}  // namespace kvserve

// Reads tensors from Hugging Face safetensors files: one `model.safetensors`, or shards listed in
// `model.safetensors.index.json`. Files are memory-mapped; a tensor is copied out on Read.
#pragma once

#include <ATen/ATen.h>
#include <absl/status/statusor.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace kvserve {

class MappedFile;

class SafetensorsReader {
 public:
  // Opens DIR/model.safetensors, or the shards named by DIR/model.safetensors.index.json.
  // Errors name the file: missing, truncated, bad header, unsupported dtype.
  static absl::StatusOr<std::unique_ptr<SafetensorsReader>> OpenFolder(const std::string& dir);
  // Opens one file.
  static absl::StatusOr<std::unique_ptr<SafetensorsReader>> OpenFile(const std::string& path);
  ~SafetensorsReader();

  bool Has(const std::string& name) const { return entries_.count(name) > 0; }
  std::vector<std::string> Names() const;
  // Shape of a stored tensor. REQUIRES: Has(name).
  std::vector<int64_t> Shape(const std::string& name) const;
  // Stored dtype of a tensor. REQUIRES: Has(name).
  at::ScalarType Dtype(const std::string& name) const { return entries_.at(name).dtype; }
  // Copies tensor `name` to `options` (dtype and device), converting from the stored dtype.
  absl::StatusOr<at::Tensor> Read(const std::string& name, const at::TensorOptions& options) const;

 private:
  struct Entry {
    const MappedFile* file;
    at::ScalarType dtype;
    std::vector<int64_t> shape;
    size_t begin;  // byte offsets within the file
    size_t end;
  };
  SafetensorsReader() = default;
  absl::Status AddFile(const std::string& path);

  std::vector<std::unique_ptr<MappedFile>> files_;
  std::map<std::string, Entry> entries_;
};

// Writes tensors (CPU, contiguous or not) to one safetensors file; the offline tools use it.
absl::Status WriteSafetensors(const std::string& path,
                              const std::map<std::string, at::Tensor>& tensors);

}  // namespace kvserve

// Text <-> token ids for the models kvserve serves, with no dependency heavier than sentencepiece.
//
// Two backends behind one interface: Hugging Face tokenizer.json BPE (sentencepiece-style Llama-2 /
// Mistral / TinyLlama files and byte-level GPT-2 / Llama-3 / Qwen2 files), and sentencepiece
// tokenizer.model files through libsentencepiece. Both aim to give exactly the ids and text of
// Hugging Face transformers. Load once at start-up; a loaded Tokenizer is immutable and every const
// method may be called from any thread at the same time. An IncrementalDetokenizer is per stream
// and not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvserve {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Loads DIR/tokenizer.json if present, else DIR/tokenizer.model (sentencepiece). BOS/EOS ids and
  // add_bos come from tokenizer_config.json / config.json / generation_config.json in DIR.
  // Errors (NotFound, InvalidArgument, Unimplemented) name the file at fault.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& model_dir);
  // Same, forcing one backend (tests compare them): "json" or "sentencepiece".
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& model_dir,
                                                         std::string_view backend);

  // Text -> ids. Adds BOS first when add_bos and the model's config asks for it (add_bos_token).
  // Special-token text such as "<s>" in `text` is encoded as that special token, as transformers
  // does by default; callers that take untrusted text and mind this must escape it first.
  virtual std::vector<int32_t> Encode(std::string_view text, bool add_bos) const = 0;
  // Ids -> text, as Hugging Face's decode(skip_special_tokens=True). Ids outside the vocabulary
  // are skipped.
  virtual std::string Decode(std::span<const int32_t> ids) const = 0;
  // One past the largest id the tokenizer can produce or decode.
  virtual int32_t vocab_size() const = 0;
  // The id of a token spelled exactly `token` (e.g. "<|eot_id|>"), if any.
  virtual std::optional<int32_t> TokenToId(std::string_view token) const = 0;

  int32_t bos_id() const { return bos_id_; }  // -1 if none
  // Every id that ends generation; generation_config's eos_token_id may be a list. May be empty.
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }
  // Whether Encode(text, /*add_bos=*/true) starts with bos_id().
  bool add_bos_token() const { return add_bos_token_ && bos_id_ >= 0; }

 protected:
  // The ids Encode starts with.
  std::vector<int32_t> StartIds(bool add_bos) const {
    return add_bos && add_bos_token() ? std::vector<int32_t>{bos_id_} : std::vector<int32_t>{};
  }

 private:
  int32_t bos_id_ = -1;
  std::vector<int32_t> eos_ids_;
  bool add_bos_token_ = false;
};

// Streams text for ids as they arrive; never emits half a UTF-8 character, and its concatenated
// output equals Decode(all ids), including sentencepiece's dropped leading space. Decodes only a
// short window of recent ids per call (the prefix/read-offset scheme of TGI and vLLM), so a long
// stream costs O(n). REQUIRES: `tokenizer` outlives the detokenizer.
class IncrementalDetokenizer {
 public:
  explicit IncrementalDetokenizer(const Tokenizer& tokenizer);

  std::string Push(int32_t id);  // new complete text, possibly empty
  std::string Flush();           // whatever is left (invalid trailing bytes as U+FFFD); then resets

 private:
  // Drops ids before prefix_offset_, which no later decode needs.
  void Compact();

  const Tokenizer& tokenizer_;
  std::vector<int32_t> ids_;  // the window: ids_[0] is the oldest id still needed
  size_t prefix_offset_ = 0;  // start of the context decoded with the new ids
  size_t read_offset_ = 0;    // end of the ids whose text has been emitted
};

}  // namespace kvserve

#include "tokenizer/bpe_model.h"

#include <queue>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tokenizer/unicode.h"

namespace kvserve {
namespace {

// A merge candidate between the symbol at `pos` and the next live one. The queue pops the lowest
// rank first and, on equal ranks, the leftmost position, as `tokenizers` does.
struct Candidate {
  int32_t rank;
  size_t pos;
  int32_t merged_id;
  bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

// Merges are "a b" strings in older files and ["a", "b"] pairs in newer ones (which allows spaces
// inside tokens).
absl::StatusOr<std::pair<std::string, std::string>> ParseMerge(const nlohmann::json& merge,
                                                               const std::string& file) {
  if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
    return std::make_pair(merge[0].get<std::string>(), merge[1].get<std::string>());
  }
  if (merge.is_string()) {
    const std::string text = merge.get<std::string>();
    const size_t space = text.find(' ');
    if (space != std::string::npos && text.find(' ', space + 1) == std::string::npos) {
      return std::make_pair(text.substr(0, space), text.substr(space + 1));
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat(file, ": model.merges entry ", merge.dump(), " is not \"a b\" or [a, b]"));
}

}  // namespace

absl::StatusOr<BpeModel> BpeModel::FromJson(const nlohmann::json& model, const std::string& file) {
  BpeModel bpe;
  const nlohmann::json& vocab = model.at("vocab");
  if (!vocab.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": model.vocab must be an object"));
  }
  for (const auto& [token, id_json] : vocab.items()) {
    const int32_t id = id_json.get<int32_t>();
    if (id < 0) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": negative id for token ", token));
    }
    bpe.token_to_id_[token] = id;
    if (static_cast<size_t>(id) >= bpe.id_to_token_.size()) bpe.id_to_token_.resize(id + 1);
    bpe.id_to_token_[id] = token;
  }
  const nlohmann::json merges = model.value("merges", nlohmann::json::array());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    absl::StatusOr<std::pair<std::string, std::string>> merge = ParseMerge(merges[rank], file);
    if (!merge.ok()) return merge.status();
    const auto left = bpe.TokenToId(merge->first);
    const auto right = bpe.TokenToId(merge->second);
    const auto merged = bpe.TokenToId(merge->first + merge->second);
    if (!left || !right || !merged) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": merge ", merges[rank].dump(),
                                                     " uses or makes a token not in the vocab"));
    }
    bpe.merges_[PairKey(*left, *right)] = Merge{static_cast<int32_t>(rank), *merged};
  }
  for (const char* unsupported : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(unsupported) && !model[unsupported].is_null()) {
      return absl::UnimplementedError(
          absl::StrCat(file, ": model.", unsupported, " is not supported"));
    }
  }
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    bpe.unk_id_ = bpe.TokenToId(model["unk_token"].get<std::string>());
  }
  bpe.fuse_unk_ = model.value("fuse_unk", false);
  bpe.byte_fallback_ = model.value("byte_fallback", false);
  for (int b = 0; b < 256; ++b) {
    bpe.byte_ids_[b] = bpe.TokenToId(absl::StrFormat("<0x%02X>", b)).value_or(-1);
  }
  bpe.ignore_merges_ = model.value("ignore_merges", false);
  return bpe;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  const auto it = token_to_id_.find(token);
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

const std::string& BpeModel::IdToToken(int32_t id) const {
  static const std::string* const kEmpty = new std::string();
  return id >= 0 && id < size() ? id_to_token_[id] : *kEmpty;
}

std::vector<int32_t> BpeModel::InitialSymbols(std::string_view word) const {
  std::vector<int32_t> symbols;
  bool pending_unk = false;  // an unknown run not yet emitted, so fuse_unk can extend it
  auto flush_unk = [&] {
    if (pending_unk) symbols.push_back(*unk_id_);
    pending_unk = false;
  };
  for (size_t pos = 0; pos < word.size();) {
    const size_t len = unicode::DecodeChar(word, pos).length;
    const std::string_view ch = word.substr(pos, len);
    pos += len;
    if (const auto id = TokenToId(ch)) {
      flush_unk();
      symbols.push_back(*id);
      continue;
    }
    if (byte_fallback_) {
      std::vector<int32_t> bytes;
      for (char b : ch) {
        if (const int32_t id = byte_ids_[static_cast<uint8_t>(b)]; id >= 0) bytes.push_back(id);
      }
      if (bytes.size() == ch.size()) {  // only when every byte has a token, as in `tokenizers`
        symbols.insert(symbols.end(), bytes.begin(), bytes.end());
        continue;
      }
    }
    if (!unk_id_) continue;
    if (pending_unk && !fuse_unk_) flush_unk();
    pending_unk = true;
  }
  flush_unk();
  return symbols;
}

void BpeModel::ApplyMerges(std::vector<int32_t>* symbols) const {
  // A doubly linked list over `symbols`; a merged-away symbol is marked dead (-1 id).
  const size_t n = symbols->size();
  std::vector<int64_t> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int64_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int64_t>(i + 1) : -1;
  }
  std::vector<int32_t>& ids = *symbols;
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto push_pair = [&](size_t left) {
    if (next[left] < 0) return;
    const auto it = merges_.find(PairKey(ids[left], ids[next[left]]));
    if (it != merges_.end()) queue.push({it->second.rank, left, it->second.merged_id});
  };
  for (size_t i = 0; i + 1 < n; ++i) push_pair(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    if (ids[top.pos] < 0 || next[top.pos] < 0) continue;
    const size_t right = static_cast<size_t>(next[top.pos]);
    // Stale entry: one side changed since it was queued.
    const auto it = merges_.find(PairKey(ids[top.pos], ids[right]));
    if (it == merges_.end() || it->second.merged_id != top.merged_id) continue;
    ids[top.pos] = top.merged_id;
    ids[right] = -1;
    next[top.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = static_cast<int64_t>(top.pos);
    if (prev[top.pos] >= 0) push_pair(static_cast<size_t>(prev[top.pos]));
    push_pair(top.pos);
  }
  std::erase(ids, -1);
}

void BpeModel::Encode(std::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (const auto id = TokenToId(word)) {
      ids->push_back(*id);
      return;
    }
  }
  std::vector<int32_t> symbols = InitialSymbols(word);
  ApplyMerges(&symbols);
  ids->insert(ids->end(), symbols.begin(), symbols.end());
}

}  // namespace kvserve

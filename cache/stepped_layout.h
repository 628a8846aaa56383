// The data-independent layout state of an IN-CACHE policy whose slot ranks are one table for
// every layer and head (Cascading's schedule, TreeKV's regions): the state a step starts from and
// the one it leads to. Update runs layer by layer, so within a step the layers already updated
// hold the next layout and the others still the current one; a batched decode step moves every
// layer at once.
#pragma once

#include <c10/util/Exception.h>

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace kvserve {

template <typename State>
class SteppedLayout {
 public:
  explicit SteppedLayout(State initial) { current_.state = std::move(initial); }

  // The state the step at `tokens_seen` starts from, before `layer`'s Update. The step's first
  // layer makes the previous step's result current. REQUIRES: layers are updated in step order.
  const State& Begin(int64_t layer, int64_t layers, int64_t tokens_seen) {
    if (layer_tokens_.empty()) layer_tokens_.assign(layers, 0);
    if (next_.tokens == tokens_seen && current_.tokens != tokens_seen) {
      current_ = std::move(next_);
      next_ = Version{};
    }
    TORCH_CHECK(current_.tokens == tokens_seen && layer_tokens_.at(layer) == tokens_seen,
                "cache policy: layer ", layer, " out of step at token ", tokens_seen);
    return current_.state;
  }

  // After `layer`'s Update: its slots now belong to `tokens` (the stream after the step), laid
  // out as `state` with `ranks`; every layer of a step reaches the same state, kept once.
  void Finish(int64_t layer, int64_t tokens, State state, std::vector<int32_t> ranks) {
    if (next_.tokens != tokens) next_ = {std::move(state), std::move(ranks), tokens};
    layer_tokens_.at(layer) = tokens;
  }

  // A batched step moved every layer to `state` at once.
  void FinishAll(int64_t tokens, State state, std::vector<int32_t> ranks) {
    current_ = {std::move(state), std::move(ranks), tokens};
    next_ = Version{};
    std::fill(layer_tokens_.begin(), layer_tokens_.end(), tokens);
  }

  // The ranks of `layer`'s held slots now.
  std::span<const int32_t> ranks(int64_t layer) const {
    const bool stepped =
        layer < static_cast<int64_t>(layer_tokens_.size()) && layer_tokens_[layer] == next_.tokens;
    return stepped ? next_.ranks : current_.ranks;
  }

 private:
  struct Version {
    State state;
    std::vector<int32_t> ranks;
    int64_t tokens = -1;
  };

  Version current_{State{}, {}, 0};
  Version next_;
  std::vector<int64_t> layer_tokens_;  // per layer: the tokens_seen() its slots belong to
};

}  // namespace kvserve

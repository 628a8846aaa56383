// Cascading and TreeKV against plain reference simulations of policies.md §1.4–1.5 and §2.2–2.3
// (per layer and KV head, tokens in temporal order, as the policies kept them before their slots
// became circular buffers and a tree in any slot order), over long random streams: prefill chunks
// of several sizes, then many decode steps. The policies must keep the same tokens, in the same
// rank order, with the same scores.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <vector>

#include "cache/cascading_policy.h"
#include "cache/treekv_policy.h"
#include "tests/cache/policy_driver.h"

namespace kvserve {
namespace {

using testing::HeldInRankOrder;
using testing::InRankOrder;
using testing::Stream;

constexpr int64_t kLayers = 2, kKvHeads = 2, kGroup = 2, kDim = 8;

struct Token {
  int64_t p = 0;
  double score = 0;  // Cascading: EMA without (1 − β); TreeKV: S
  double count = 0;  // TreeKV: C
};

// probs[g][i][j]: query i (stream position first + i) of query head g of KV head `head` on key j
// of `keys` (stream positions; the chunk's own keys last, seen causally).
std::vector<std::vector<std::vector<double>>> Attention(const Stream& s, int64_t layer,
                                                        int64_t head, int64_t first, int64_t n,
                                                        const std::vector<int64_t>& keys) {
  const int64_t held = static_cast<int64_t>(keys.size()) - n;
  auto q = s.queries[layer].to(at::kDouble);  // [tokens, heads, dim]
  auto k = s.keys[layer][head].to(at::kDouble);
  std::vector<std::vector<std::vector<double>>> probs(kGroup);
  for (int64_t g = 0; g < kGroup; ++g) {
    for (int64_t i = 0; i < n; ++i) {
      auto query = q[first + i][head * kGroup + g];
      std::vector<double> logits;
      for (int64_t j = 0; j < held + i + 1; ++j) {
        logits.push_back(query.dot(k[keys[j]]).item<double>() / std::sqrt(double{kDim}));
      }
      double top = *std::max_element(logits.begin(), logits.end()), total = 0;
      for (double& l : logits) total += (l = std::exp(l - top));
      std::vector<double> row(keys.size(), 0.0);
      for (size_t j = 0; j < logits.size(); ++j) row[j] = logits[j] / total;
      probs[g].push_back(row);
    }
  }
  return probs;
}

// §1.4 with §1.5's scores, one (layer, KV head).
class CascadingReference {
 public:
  explicit CascadingReference(const CascadingParams& p)
      : p_(p),
        buffers_(p.num_cascades, std::vector<Token>(p.cascade_tokens)),
        start_(p.num_cascades, 0),
        stored_(p.num_cascades, 0) {}

  // Held tokens, oldest first.
  std::vector<Token> Held() const {
    std::vector<Token> out = sinks_;
    for (int64_t i = p_.num_cascades - 1; i >= 0; --i) {
      for (int64_t j = 0; j < stored_[i]; ++j) {
        out.push_back(buffers_[i][(start_[i] + j) % p_.cascade_tokens]);
      }
    }
    return out;
  }

  void Step(const Stream& s, int64_t layer, int64_t head, int64_t first, int64_t n) {
    std::vector<int64_t> keys;
    for (const Token& t : Held()) keys.push_back(t.p);
    const int64_t held = static_cast<int64_t>(keys.size());
    for (int64_t i = 0; i < n; ++i) keys.push_back(first + i);
    auto probs = Attention(s, layer, head, first, n, keys);
    std::vector<double> stat(keys.size());
    for (size_t j = 0; j < keys.size(); ++j) {
      double best = 0, sum = 0;
      for (int64_t g = 0; g < kGroup; ++g) {
        double weighted = 0;
        for (int64_t i = 0; i < n; ++i)
          weighted += std::pow(p_.ema_decay, n - 1 - i) * probs[g][i][j];
        best = std::max(best, weighted);
        sum += weighted;
      }
      stat[j] = p_.head_reduction == CascadingParams::HeadReduction::kMax ? best : sum / kGroup;
    }
    const double decay = std::pow(p_.ema_decay, n);
    std::map<int64_t, double> scores;
    for (int64_t j = 0; j < held; ++j) scores[keys[j]] = decay * ScoreOf(keys[j]) + stat[j];
    for (auto& b : buffers_) {
      for (Token& t : b) {
        if (scores.count(t.p)) t.score = scores[t.p];
      }
    }
    for (int64_t i = 0; i < n; ++i) Insert({first + i, stat[held + i], 0});
  }

 private:
  double ScoreOf(int64_t p) const {
    for (const auto& b : buffers_) {
      for (const Token& t : b) {
        if (t.p == p) return t.score;
      }
    }
    return 0;  // a sink
  }

  void Insert(Token x) {
    if (static_cast<int64_t>(sinks_.size()) < p_.sink_tokens) {
      sinks_.push_back(x);
      return;
    }
    const int64_t w = p_.cascade_tokens, n = x.p - p_.sink_tokens;
    const bool eager = x.p < p_.sink_tokens + p_.num_cascades * w;
    for (int64_t i = 0; i < p_.num_cascades; ++i) {
      auto& buffer = buffers_[i];
      if (eager || n % (int64_t{1} << i) == 0) {
        if (stored_[i] < w) {
          buffer[start_[i] + stored_[i]++] = x;
          return;
        }
        std::swap(buffer[start_[i]], x);
        start_[i] = (start_[i] + 1) % w;
        continue;
      }
      if (stored_[i] == 0) {
        buffer[0] = x;
        stored_[i] = 1;
        return;
      }
      Token& newest = buffer[((start_[i] - 1) % stored_[i] + stored_[i]) % stored_[i]];
      if (x.score >= newest.score) newest = x;
      return;
    }
  }

  CascadingParams p_;
  std::vector<Token> sinks_;
  std::vector<std::vector<Token>> buffers_;
  std::vector<int64_t> start_, stored_;
};

// §2.2–2.3 with §0.5 item 8, one (layer, KV head).
class TreeKvReference {
 public:
  explicit TreeKvReference(const TreeKvParams& p) : p_(p) {}

  std::vector<Token> Held() const {
    std::vector<Token> out = sinks_;
    out.insert(out.end(), tree_.begin(), tree_.end());
    out.insert(out.end(), recent_.begin(), recent_.end());
    return out;
  }

  void Step(const Stream& s, int64_t layer, int64_t head, int64_t first, int64_t n) {
    std::vector<int64_t> keys;
    for (const Token& t : Held()) keys.push_back(t.p);
    const int64_t held = static_cast<int64_t>(keys.size());
    for (int64_t i = 0; i < n; ++i) keys.push_back(first + i);
    auto probs = Attention(s, layer, head, first, n, keys);
    auto mass = [&](int64_t j) {
      double total = 0;
      for (int64_t g = 0; g < kGroup; ++g) {
        for (int64_t i = 0; i < n; ++i) total += probs[g][i][j];
      }
      return total;
    };
    int64_t j = 0;
    for (auto* part : {&sinks_}) {
      for (Token& t : *part) t.score += mass(j), t.count += n, ++j;
    }
    for (Token& t : tree_) t.score += mass(j), t.count += n, ++j;
    for (Token& t : recent_) t.score += mass(j), t.count += n, ++j;
    for (int64_t i = 0; i < n; ++i) {
      Token x{first + i, mass(held + i), static_cast<double>(n - i)};
      if (static_cast<int64_t>(sinks_.size()) < p_.sink_tokens) {
        sinks_.push_back(x);
        continue;
      }
      recent_.push_back(x);
      if (static_cast<int64_t>(recent_.size()) <= p_.recent_tokens) continue;
      tree_.push_back(recent_.front());
      recent_.pop_front();
      if (static_cast<int64_t>(tree_.size()) <= p_.tree_tokens) continue;
      auto averaged = [](const Token& t) { return t.score / t.count; };
      const bool keep_left = averaged(tree_[pointer_]) > averaged(tree_[pointer_ + 1]);
      tree_.erase(tree_.begin() + pointer_ + (keep_left ? 1 : 0));
      pointer_ = (pointer_ + 1) % p_.tree_tokens;
    }
  }

 private:
  TreeKvParams p_;
  std::vector<Token> sinks_, tree_;
  std::deque<Token> recent_;
  int64_t pointer_ = 0;
};

// Feeds `steps` chunk sizes through the policy and one reference per (layer, KV head), checking
// after every step the held tokens in rank order and their statistic (`stat`: the policy's,
// slot-aligned; `expected`: the reference token's).
template <typename Reference, typename Stat, typename Expected>
void CompareWithReference(CachePolicy& policy, const std::vector<int64_t>& steps,
                          const Reference& fresh, Stat stat, Expected expected) {
  int64_t total = 0, chunk = 1;
  for (int64_t n : steps) total += n, chunk = std::max(chunk, n);
  const Stream s = testing::RandomStream(kLayers, kKvHeads, kGroup, total, kDim, 5);
  KvCache cache = testing::MakeCache(s, policy.Capacity(chunk));
  std::vector<Reference> refs(kLayers * kKvHeads, fresh);
  for (int64_t n : steps) {
    const int64_t first = cache.tokens_seen();
    testing::FeedStep(policy, cache, s, n, testing::AttentionKeyMass);
    for (int64_t layer = 0; layer < kLayers; ++layer) {
      auto ranked = InRankOrder(policy, cache, layer, stat(cache, layer));
      for (int64_t h = 0; h < kKvHeads; ++h) {
        Reference& ref = refs[layer * kKvHeads + h];
        ref.Step(s, layer, h, first, n);
        std::vector<int64_t> want;
        for (const Token& t : ref.Held()) want.push_back(t.p);
        ASSERT_EQ(HeldInRankOrder(policy, cache, layer, h), want)
            << "after token " << cache.tokens_seen() << " layer " << layer << " head " << h;
        const auto held = ref.Held();
        for (size_t r = 0; r < held.size(); ++r) {
          const double want_stat = expected(held[r], static_cast<int64_t>(r));
          EXPECT_NEAR(ranked[h][r].template item<float>(), want_stat, 1e-5 * (1 + want_stat))
              << "token " << held[r].p << " after " << cache.tokens_seen();
        }
      }
    }
  }
  EXPECT_GT(policy.stats().evicted_tokens, 0);
}

std::vector<int64_t> Steps(std::vector<int64_t> prefill, int64_t decode) {
  prefill.insert(prefill.end(), decode, 1);
  return prefill;
}

TEST(LayoutReferenceTest, CascadingKeepsTheReferenceTokensAndScores) {
  for (auto reduction :
       {CascadingParams::HeadReduction::kMax, CascadingParams::HeadReduction::kMean}) {
    for (const auto& prefill : {std::vector<int64_t>{}, std::vector<int64_t>{9, 1, 17, 5},
                                std::vector<int64_t>{40}, std::vector<int64_t>{2, 33, 3}}) {
      CascadingParams p;
      p.sink_tokens = 3;
      p.num_cascades = 3;
      p.cascade_tokens = 5;
      p.ema_decay = 0.9;
      p.head_reduction = reduction;
      CascadingPolicy policy(p);
      CompareWithReference(
          policy, Steps(prefill, 150), CascadingReference(p),
          [&](const KvCache& c, int64_t layer) { return policy.Scores(c, layer); },
          [&](const Token& t, int64_t rank) {
            return rank < p.sink_tokens ? 0.0 : t.score * (1 - p.ema_decay);
          });
    }
  }
}

TEST(LayoutReferenceTest, TreeKvKeepsTheReferenceTokensAndScores) {
  for (int64_t recent : {0, 4}) {
    for (const auto& prefill : {std::vector<int64_t>{}, std::vector<int64_t>{9, 1, 17, 5},
                                std::vector<int64_t>{40}, std::vector<int64_t>{2, 33, 3}}) {
      TreeKvParams p;
      p.sink_tokens = 2;
      p.tree_tokens = 7;
      p.recent_tokens = recent;
      p.prompt_tokens = 1 << 20;  // never one whole prompt: the token path throughout
      TreeKvPolicy policy(p);
      CompareWithReference(
          policy, Steps(prefill, 150), TreeKvReference(p),
          [&](const KvCache& c, int64_t layer) { return policy.AveragedAttention(c, layer); },
          [](const Token& t, int64_t) { return t.score / t.count; });
    }
  }
}

}  // namespace
}  // namespace kvserve

#pragma once
// BigramLM: the baseline a trained language model must beat. An interpolated Kneser-Ney
// bigram fitted on a token stream (no tuning on validation data):
//
//   P(w | v) = max(c(v,w) - d, 0) / c(v)  +  d * n(v.) / c(v) * P_cont(w)     (c(v) > 0)
//   P(w | v) = P_cont(w)                                                      (c(v) = 0)
//   P_cont(w) = (n(.w) + 1) / (n(..) + V)
//
// c = counts of adjacent pairs in the training stream; n(v.) distinct successors of v, n(.w)
// distinct predecessors of w, n(..) distinct pairs; d = n1 / (n1 + 2 n2) (Ney et al.) from the
// numbers of pairs seen once and twice. Plain C++ (no torch).
//
//   BigramLM bg(train_ids, train_len, /*vocab=*/50257);
//   double nll = bg.nll(prev, next);        // -log P(next | prev), nats
#include <cstdint>
#include <vector>

namespace dynamoe::models::lm {

class BigramLM {
 public:
  /// Fits on ids[0 .. n); every id must be < vocab.
  BigramLM(const uint16_t* ids, int64_t n, int64_t vocab);
  /// -log P(next | prev) in nats.
  double nll(uint16_t prev, uint16_t next) const;
  double discount() const { return d_; }
  int64_t distinct_pairs() const { return static_cast<int64_t>(pairs_.size()); }

 private:
  int64_t vocab_;
  double d_ = 0.75;
  std::vector<uint32_t> pairs_;          ///< sorted distinct (prev << 16 | next)
  std::vector<uint32_t> pair_counts_;    ///< c(v, w) of pairs_
  std::vector<int64_t> row_start_;       ///< [65537] first index in pairs_ of each prev
  std::vector<double> prev_total_;       ///< c(v)
  std::vector<double> p_cont_;           ///< P_cont(w)
};

}  // namespace dynamoe::models::lm

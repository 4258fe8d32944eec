#include "dynamoe/models/lm/bigram.h"

#include <algorithm>
#include <cmath>

#include "dynamoe/util/error.h"

namespace dynamoe::models::lm {

BigramLM::BigramLM(const uint16_t* ids, int64_t n, int64_t vocab) : vocab_(vocab) {
  DYNAMOE_CHECK(vocab > 0 && vocab <= 65536, "bigram: vocabulary of ", vocab, " does not fit uint16 ids");
  DYNAMOE_CHECK(n >= 2, "bigram: needs at least 2 tokens, got ", n);
  std::vector<uint32_t> all(static_cast<size_t>(n - 1));
  for (int64_t i = 0; i + 1 < n; ++i) {
    DYNAMOE_CHECK(ids[i] < vocab && ids[i + 1] < vocab, "bigram: token id ", std::max(ids[i], ids[i + 1]),
                  " at position ", i, " is out of range for the vocabulary of ", vocab);
    all[i] = (static_cast<uint32_t>(ids[i]) << 16) | ids[i + 1];
  }
  std::sort(all.begin(), all.end());
  int64_t n1 = 0, n2 = 0;
  for (size_t i = 0; i < all.size();) {
    size_t j = i;
    while (j < all.size() && all[j] == all[i]) ++j;
    pairs_.push_back(all[i]);
    pair_counts_.push_back(static_cast<uint32_t>(j - i));
    n1 += (j - i) == 1;
    n2 += (j - i) == 2;
    i = j;
  }
  if (n1 > 0 || n2 > 0) d_ = static_cast<double>(n1) / (n1 + 2.0 * n2);
  d_ = std::clamp(d_, 0.05, 0.95);
  row_start_.assign(65537, 0);
  prev_total_.assign(65536, 0.0);
  std::vector<double> preds(static_cast<size_t>(vocab), 0.0);
  for (size_t i = 0; i < pairs_.size(); ++i) {
    const uint32_t v = pairs_[i] >> 16, w = pairs_[i] & 0xffffu;
    row_start_[v + 1] = static_cast<int64_t>(i) + 1;
    prev_total_[v] += pair_counts_[i];
    preds[w] += 1.0;
  }
  for (size_t v = 1; v < row_start_.size(); ++v) row_start_[v] = std::max(row_start_[v], row_start_[v - 1]);
  p_cont_.resize(static_cast<size_t>(vocab));
  const double denom = static_cast<double>(pairs_.size()) + static_cast<double>(vocab);
  for (int64_t w = 0; w < vocab; ++w) p_cont_[w] = (preds[w] + 1.0) / denom;
}

double BigramLM::nll(uint16_t prev, uint16_t next) const {
  DYNAMOE_CHECK(prev < vocab_ && next < vocab_, "bigram: token id ", std::max(prev, next),
                " is out of range for the vocabulary of ", vocab_);
  const double c_v = prev_total_[prev];
  if (c_v == 0) return -std::log(p_cont_[next]);
  const int64_t lo = row_start_[prev], hi = row_start_[prev + 1];
  const uint32_t key = (static_cast<uint32_t>(prev) << 16) | next;
  auto it = std::lower_bound(pairs_.begin() + lo, pairs_.begin() + hi, key);
  const double c_vw = (it != pairs_.begin() + hi && *it == key) ? pair_counts_[it - pairs_.begin()] : 0.0;
  const double successors = static_cast<double>(hi - lo);
  const double p = std::max(c_vw - d_, 0.0) / c_v + d_ * successors / c_v * p_cont_[next];
  return -std::log(p);
}

}  // namespace dynamoe::models::lm

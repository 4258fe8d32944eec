#pragma once
// hash router (Roller et al. 2021): a fixed, parameter-free assignment by token id.
// Shape legend: N tokens, E experts.
//
//   expert(t) = splitmix64(token_id_t) mod E            (token id read as an unsigned 64-bit integer)
//   w_{t, expert(t)} = 1                                (a constant: no gradient to the gate)
//   probs = softmax(z)                                  (T = 1; only for the auxiliary losses)
//
// splitmix64 is Vigna's finaliser: z = x + 0x9E3779B97F4A7C15;
// z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
// return z ^ (z >> 31)  (all mod 2^64). Needs ctx.token_ids [N] (any integer dtype); a missing
// or misshapen one is a dynamoe::Error. ctx.selection_bias is ignored.
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "dynamoe/moe/routing.h"
#include "dynamoe/util/options.h"

namespace dynamoe::moe {

/// Options of the hash router (config: moe.router.* with moe.router.kind = hash).
struct HashOptions : KindOptionsOf<HashOptions> {
  void visit(OptionVisitor& v) override;
};

namespace functional {

/// The splitmix64 finaliser (see above); splitmix64(0) == 0xE220A8397B1DCDAF.
uint64_t splitmix64(uint64_t x);

/// Routes token t to expert splitmix64(token_ids[t]) mod E with weight 1.
Routing hash_route(const at::Tensor& logits, const HashOptions& opt, const RouterContext& ctx);

}  // namespace functional
}  // namespace dynamoe::moe

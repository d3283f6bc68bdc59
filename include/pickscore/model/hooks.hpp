// pickscore/model/hooks.hpp — what a backward pass tells its caller while it runs: which
// parameters' gradients are final, so data-parallel training can sum them over the ranks while the
// rest of the backward still computes (train/trainer.hpp, "overlap").
//
// A tower's backward calls its TowerHook with the part it has just finished:
//   tower_head         the final LayerNorm and the projection (the first thing backward finishes)
//   l >= 0             transformer block l (from the last block down to block 0)
//   tower_embeddings   the embeddings and anything before the blocks (pre-LayerNorm): the last
// ClipModel turns these into ranges of its flat gradient buffer (GradientReady).
#pragma once

#include <cstdint>
#include <functional>

namespace pickscore::model {

inline constexpr std::int64_t tower_head = -1;
inline constexpr std::int64_t tower_embeddings = -2;

using TowerHook = std::function<void(std::int64_t part)>;

// [begin, end) of the flat gradient buffer (elements, alignment gaps included) holds final values
// for this backward: nothing later in the pass writes there.
using GradientReady = std::function<void(std::int64_t begin, std::int64_t end)>;

}  // namespace pickscore::model

// pickscore/ops/common.hpp — what every op header shares: argument checks and the backend switch.
//
// The op contract: outputs first, then saved buffers, then inputs, then sizes, each with a shape
// comment. Shapes, dtypes and devices are checked once, here at the dispatch boundary, and a
// mismatch throws ShapeError naming the op, the argument and both shapes. The backends
// (pickscore::cpu, pickscore::cuda) trust their arguments.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"

namespace pickscore::ops {

enum class Trans : bool { N = false, T = true };

// Whether an op writes a gradient (no) or adds to what the buffer already holds (yes): the
// residual stream joins by accumulation.
enum class Accumulate : bool { no = false, yes = true };

// The element-wise nonlinearity of an MLP (ops/activation.hpp): GELU with the exact erf (CLIP,
// LAION/open_clip), GELU's tanh approximation (what cuBLASLt's GELU epilogue computes), and
// quick GELU x·σ(1.702x) (OpenAI's CLIP checkpoints). Here so that backends can name it too.
enum class Activation { gelu_erf, gelu_tanh, quick_gelu };

template <class>
inline constexpr bool dependent_false = false;

// Fails unless `shape` equals `expected`.
inline void check_shape(const char* op, const char* name, const Shape& shape, const Shape& expected) {
    require<ShapeError>(shape == expected, op, ": ", name, " has shape ", shape, ", expected ", expected);
}

// Fails unless `shape` has the given rank.
inline void check_rank(const char* op, const char* name, const Shape& shape, int rank) {
    require<ShapeError>(shape.rank() == rank, op, ": ", name, " has shape ", shape, ", expected rank ", rank);
}

// Fails unless two arguments agree in dimension da of a and db of b.
inline void check_dim(const char* op, const char* a_name, const Shape& a, int da, const char* b_name, const Shape& b,
                      int db) {
    require<ShapeError>(a.rank() > (da < 0 ? -da - 1 : da) && b.rank() > (db < 0 ? -db - 1 : db), op, ": ", a_name,
                        " ", a, " or ", b_name, " ", b, " has too few dimensions");
    require<ShapeError>(a[da] == b[db], op, ": ", a_name, " has shape ", a, " and ", b_name, " has shape ", b,
                        " (dimension ", da, " of ", a_name, " must equal dimension ", db, " of ", b_name, ")");
}

// Fails unless a required tensor is present.
template <class View>
void check_present(const char* op, const char* name, const View& v) {
    require<ShapeError>(!v.empty(), op, ": ", name, " is required but empty");
}

}  // namespace pickscore::ops

// pickscore/ops/embedding.hpp — the input embeddings of the two towers.
//
// Text tower (token + learned position embedding, CLIP's 77 positions):
//     out[b, t, :] = token_table[ids[b, t], :] + pos_table[t, :]          (pos_table may be longer)
//     dtoken[ids[b, t], :] += dout[b, t, :]      (scatter-add: a repeated id collects every position)
//     dpos[t, :]           += Σ_b dout[b, t, :]
// Vision tower (after the patch GEMM): prepend the class embedding, add the position embedding:
//     out[b, 0, :] = cls + pos[0, :],   out[b, 1 + p, :] = patches[b, p, :] + pos[1 + p, :]
//     dpatches[b, p, :] = dout[b, 1 + p, :]   (written)
//     dcls += Σ_b dout[b, 0, :],  dpos += Σ_b dout[b, :, :]
// Parameter gradients accumulate; any gradient output may be empty (a frozen table, say).
// A token id outside [0, V) throws pickscore::Error naming the id and its position; the CPU
// backend checks every id before writing anything.
#pragma once

#include <cstdint>

#include "../core/tensor.hpp"
#include "../cpu/embedding.hpp"
#include "common.hpp"

namespace pickscore::ops {

// out[b, t, :] = token_table[ids[b, t], :] + pos_table[t, :]
template <class T, class D>
void token_embedding_forward(TensorView<T, D> out /*B,T,C*/, In<std::int32_t, D> ids /*B,T*/,
                             In<T, D> token_table /*V,C*/, In<T, D> pos_table /*P,C  P>=T*/) {
    constexpr const char* op = "token_embedding_forward";
    check_rank(op, "ids", ids.shape(), 2);
    check_rank(op, "token_table", token_table.shape(), 2);
    check_rank(op, "pos_table", pos_table.shape(), 2);
    const Shape expected{ids.size(0), ids.size(1), token_table.size(1)};
    require<ShapeError>(out.shape() == expected, op, ": out has shape ", out.shape(), " but ids ", ids.shape(),
                        " and token_table ", token_table.shape(), " make ", expected);
    check_dim(op, "pos_table", pos_table.shape(), 1, "token_table", token_table.shape(), 1);
    require<ShapeError>(pos_table.size(0) >= ids.size(1), op, ": pos_table has shape ", pos_table.shape(),
                        " and ids has shape ", ids.shape(), " (", ids.size(1),
                        " positions need at least as many position rows)");
    if constexpr (is_cpu<D>) {
        cpu::token_embedding_forward<T>(out, ids, token_table, pos_table);
    } else {
        static_assert(dependent_false<D>, "token_embedding_forward: no backend for this device in this build");
    }
}

// dtoken[ids[b, t], :] += dout[b, t, :];  dpos[t, :] += Σ_b dout[b, t, :]   (either may be empty)
template <class T, class D>
void token_embedding_backward(TensorView<T, D> dtoken /*V,C +=*/, TensorView<T, D> dpos /*P,C +=*/,
                              In<T, D> dout /*B,T,C*/, In<std::int32_t, D> ids /*B,T*/) {
    constexpr const char* op = "token_embedding_backward";
    check_rank(op, "dout", dout.shape(), 3);
    check_rank(op, "ids", ids.shape(), 2);
    check_dim(op, "dout", dout.shape(), 0, "ids", ids.shape(), 0);
    check_dim(op, "dout", dout.shape(), 1, "ids", ids.shape(), 1);
    if (!dtoken.empty()) {
        check_rank(op, "dtoken", dtoken.shape(), 2);
        check_dim(op, "dtoken", dtoken.shape(), 1, "dout", dout.shape(), 2);
    }
    if (!dpos.empty()) {
        check_rank(op, "dpos", dpos.shape(), 2);
        check_dim(op, "dpos", dpos.shape(), 1, "dout", dout.shape(), 2);
        require<ShapeError>(dpos.size(0) >= ids.size(1), op, ": dpos has shape ", dpos.shape(), " and ids has shape ",
                            ids.shape(), " (", ids.size(1), " positions need at least as many position rows)");
    }
    if constexpr (is_cpu<D>) {
        cpu::token_embedding_backward<T>(dtoken, dpos, dout, ids);
    } else {
        static_assert(dependent_false<D>, "token_embedding_backward: no backend for this device in this build");
    }
}

// Vision: out[b, 0, :] = cls + pos[0, :];  out[b, 1 + p, :] = patches[b, p, :] + pos[1 + p, :]
template <class T, class D>
void class_position_forward(TensorView<T, D> out /*B,1+P,C*/, In<T, D> patches /*B,P,C*/, In<T, D> cls /*C*/,
                            In<T, D> pos /*1+P,C*/) {
    constexpr const char* op = "class_position_forward";
    const Shape& s = out.shape();
    check_rank(op, "out", s, 3);
    require<ShapeError>(s[1] >= 1, op, ": out has shape ", s, " (at least the class token is needed)");
    auto check = [&](const char* name, const Shape& shape, const Shape& expected) {
        require<ShapeError>(shape == expected, op, ": ", name, " has shape ", shape, " and out has shape ", s,
                            " (expected ", name, " ", expected, ")");
    };
    check("patches", patches.shape(), Shape{s[0], s[1] - 1, s[2]});
    check("cls", cls.shape(), Shape{s[2]});
    check("pos", pos.shape(), Shape{s[1], s[2]});
    if constexpr (is_cpu<D>) {
        cpu::class_position_forward<T>(out, patches, cls, pos);
    } else {
        static_assert(dependent_false<D>, "class_position_forward: no backend for this device in this build");
    }
}

// dpatches = dout[:, 1:, :] (written);  dcls += Σ_b dout[b, 0, :];  dpos += Σ_b dout[b]
// (each output may be empty)
template <class T, class D>
void class_position_backward(TensorView<T, D> dpatches /*B,P,C written*/, TensorView<T, D> dcls /*C +=*/,
                             TensorView<T, D> dpos /*1+P,C +=*/, In<T, D> dout /*B,1+P,C*/) {
    constexpr const char* op = "class_position_backward";
    const Shape& s = dout.shape();
    check_rank(op, "dout", s, 3);
    require<ShapeError>(s[1] >= 1, op, ": dout has shape ", s, " (at least the class token is needed)");
    auto check = [&](const char* name, const Shape& shape, const Shape& expected) {
        require<ShapeError>(shape == expected, op, ": ", name, " has shape ", shape, " and dout has shape ", s,
                            " (expected ", name, " ", expected, ")");
    };
    if (!dpatches.empty()) check("dpatches", dpatches.shape(), Shape{s[0], s[1] - 1, s[2]});
    if (!dcls.empty()) check("dcls", dcls.shape(), Shape{s[2]});
    if (!dpos.empty()) check("dpos", dpos.shape(), Shape{s[1], s[2]});
    if constexpr (is_cpu<D>) {
        cpu::class_position_backward<T>(dpatches, dcls, dpos, dout);
    } else {
        static_assert(dependent_false<D>, "class_position_backward: no backend for this device in this build");
    }
}

}  // namespace pickscore::ops

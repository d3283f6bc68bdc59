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
// Pooling one token per row (the vision tower's class token, the text tower's end-of-text token):
//     out[b, :] = in[b, positions[b], :]
//     din[b, t, :] = dout[b, :] where t == positions[b], else 0       (written)
// Parameter gradients accumulate; any gradient output may be empty (a frozen table, say).
// A token id outside [0, V) throws pickscore::Error naming the id and its position (a pooling
// position outside [0, T): naming the row); every id is checked before anything is written.
//
// Ids and positions on CUDA. They are device memory there, which the host cannot read without
// waiting for the stream, yet the checks above run on the host (a kernel cannot throw), and so
// does the grouping that makes the token-table gradient deterministic (cuda/embedding.hpp). So
// every op that reads ids or positions takes an optional HOST MIRROR as its last argument
// (`ids_host`, `positions_host`): the same values in host memory, typically the tokenizer's
// output before its upload. With the mirror the CUDA backend checks and groups the mirror and
// never synchronises; it is the caller's promise that the mirror equals the device tensor (the
// shapes are checked; with PICKSCORE_CUDA_SYNC_CHECK=1 the values are compared too). Without it
// the CUDA backend downloads the ids first, which WAITS for all work queued on the stream:
// correct, but a hidden synchronisation, so training and serving code should pass the mirror.
// On the CPU the mirror is optional and, when given, checked to equal the ids.
#pragma once

#include <cstdint>

#include "../core/tensor.hpp"
#include "../cpu/embedding.hpp"
#include "../cuda/enabled.hpp"
#include "common.hpp"
#if PICKSCORE_CUDA_ENABLED
#include "../cuda/embedding.hpp"
#include "../cuda/runtime.hpp"
#include "../cuda/storage.hpp"
#endif

namespace pickscore::ops {

namespace detail {
// Host-visible copies of int32 index tensors (token ids, pooling positions); see the top of this file.
struct HostInts {
    Tensor<std::int32_t, Cpu> downloaded;      // holds the values when they had to be downloaded
    TensorView<const std::int32_t, Cpu> view;  // the values, on the host
};

// The values of `values` on the host: on the CPU the tensor itself (after checking a given mirror
// against it), on CUDA the mirror, or a download when there is none.
template <class D>
HostInts host_ints(const char* op, const char* name, In<std::int32_t, D> values, In<std::int32_t, Cpu> mirror) {
    if (!mirror.empty())
        require<ShapeError>(mirror.shape() == values.shape(), op, ": ", name, "_host has shape ", mirror.shape(),
                            " but ", name, " has shape ", values.shape());
    HostInts h;
    if constexpr (is_cpu<D>) {
        h.view = values;
        if (!mirror.empty())
            for (std::int64_t i = 0; i < values.numel(); ++i)
                require(mirror[i] == values[i], op, ": ", name, "_host differs from ", name, " at element ", i, " (",
                        mirror[i], " vs ", values[i], ")");
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        const bool compare = !mirror.empty() && cuda::sync_after_launch();  // PICKSCORE_CUDA_SYNC_CHECK
        if (mirror.empty() || compare) {
            h.downloaded = cuda::to_host(values);  // waits for the stream
            h.view = h.downloaded;
        }
        if (compare)
            for (std::int64_t i = 0; i < values.numel(); ++i)
                require(mirror[i] == h.view[i], op, ": ", name, "_host differs from the device ", name,
                        " at element ", i, " (", mirror[i], " vs ", h.view[i], ")");
        if (!mirror.empty()) h.view = mirror;
#endif
    } else {
        static_assert(dependent_false<D>, "host_ints: no backend for this device in this build");
    }
    return h;
}
}  // namespace detail

// out[b, t, :] = token_table[ids[b, t], :] + pos_table[t, :]
template <class T, class D>
void token_embedding_forward(TensorView<T, D> out /*B,T,C*/, In<std::int32_t, D> ids /*B,T*/,
                             In<T, D> token_table /*V,C*/, In<T, D> pos_table /*P,C  P>=T*/,
                             In<std::int32_t, Cpu> ids_host = {} /*B,T optional host mirror of ids*/) {
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
        if (!ids_host.empty()) detail::host_ints<D>(op, "ids", ids, ids_host);
        cpu::token_embedding_forward<T>(out, ids, token_table, pos_table);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        const detail::HostInts h = detail::host_ints<D>(op, "ids", ids, ids_host);
        cpu::check_token_ids(op, h.view, token_table.size(0));
        cuda::token_embedding_forward<T>(out.data(), ids.data(), token_table.data(), pos_table.data(), ids.numel(),
                                         ids.size(1), token_table.size(0), token_table.size(1));
#endif
    } else {
        static_assert(dependent_false<D>, "token_embedding_forward: no backend for this device in this build");
    }
}

// dtoken[ids[b, t], :] += dout[b, t, :];  dpos[t, :] += Σ_b dout[b, t, :]   (either may be empty)
template <class T, class D>
void token_embedding_backward(TensorView<T, D> dtoken /*V,C +=*/, TensorView<T, D> dpos /*P,C +=*/,
                              In<T, D> dout /*B,T,C*/, In<std::int32_t, D> ids /*B,T*/,
                              In<std::int32_t, Cpu> ids_host = {} /*B,T optional host mirror of ids*/) {
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
        if (!ids_host.empty()) detail::host_ints<D>(op, "ids", ids, ids_host);
        cpu::token_embedding_backward<T>(dtoken, dpos, dout, ids);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        detail::HostInts h;  // the ids matter only to the token-table gradient
        if (!dtoken.empty()) {
            h = detail::host_ints<D>(op, "ids", ids, ids_host);
            cpu::check_token_ids(op, h.view, dtoken.size(0));
        }
        cuda::token_embedding_backward<T>(dtoken.data(), dpos.data(), dout.data(), h.view.data(), dout.size(0),
                                          dout.size(1), dout.size(2));
#endif
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
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        cuda::class_position_forward<T>(out.data(), patches.data(), cls.data(), pos.data(), s[0], s[1], s[2]);
#endif
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
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        cuda::class_position_backward<T>(dpatches.data(), dcls.data(), dpos.data(), dout.data(), s[0], s[1], s[2]);
#endif
    } else {
        static_assert(dependent_false<D>, "class_position_backward: no backend for this device in this build");
    }
}

namespace detail {
// in [B,T,C] against pooled rows [B,C] and positions [B].
inline void check_select_token(const char* op, const char* rows_name, const Shape& rows, const char* tokens_name,
                               const Shape& tokens, const Shape& positions) {
    check_rank(op, tokens_name, tokens, 3);
    require<ShapeError>(rows == Shape{tokens[0], tokens[2]}, op, ": ", rows_name, " has shape ", rows, " and ",
                        tokens_name, " has shape ", tokens, " (expected ", rows_name, " ",
                        Shape{tokens[0], tokens[2]}, ")");
    require<ShapeError>(positions == Shape{tokens[0]}, op, ": positions has shape ", positions, " and ",
                        tokens_name, " has shape ", tokens, " (expected positions ", Shape{tokens[0]}, ")");
}
}  // namespace detail

// out[b, :] = in[b, positions[b], :]; a position outside [0, T) throws Error naming the row.
template <class T, class D>
void select_token_forward(TensorView<T, D> out /*B,C*/, In<T, D> in /*B,T,C*/, In<std::int32_t, D> positions /*B*/,
                          In<std::int32_t, Cpu> positions_host = {} /*B optional host mirror of positions*/) {
    constexpr const char* op = "select_token_forward";
    detail::check_select_token(op, "out", out.shape(), "in", in.shape(), positions.shape());
    if constexpr (is_cpu<D>) {
        if (!positions_host.empty()) detail::host_ints<D>(op, "positions", positions, positions_host);
        cpu::select_token_forward<T>(out, in, positions);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        const detail::HostInts h = detail::host_ints<D>(op, "positions", positions, positions_host);
        cpu::check_token_positions(op, h.view, in.size(1));
        cuda::select_token_forward<T>(out.data(), in.data(), positions.data(), in.size(0), in.size(1), in.size(2));
#endif
    } else {
        static_assert(dependent_false<D>, "select_token_forward: no backend for this device in this build");
    }
}

// din[b, positions[b], :] = dout[b, :], every other row of din = 0 (written).
template <class T, class D>
void select_token_backward(TensorView<T, D> din /*B,T,C written*/, In<T, D> dout /*B,C*/,
                           In<std::int32_t, D> positions /*B*/,
                           In<std::int32_t, Cpu> positions_host = {} /*B optional host mirror of positions*/) {
    constexpr const char* op = "select_token_backward";
    detail::check_select_token(op, "dout", dout.shape(), "din", din.shape(), positions.shape());
    if constexpr (is_cpu<D>) {
        if (!positions_host.empty()) detail::host_ints<D>(op, "positions", positions, positions_host);
        cpu::select_token_backward<T>(din, dout, positions);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        const detail::HostInts h = detail::host_ints<D>(op, "positions", positions, positions_host);
        cpu::check_token_positions(op, h.view, din.size(1));
        cuda::select_token_backward<T>(din.data(), dout.data(), positions.data(), din.size(0), din.size(1),
                                       din.size(2));
#endif
    } else {
        static_assert(dependent_false<D>, "select_token_backward: no backend for this device in this build");
    }
}

}  // namespace pickscore::ops

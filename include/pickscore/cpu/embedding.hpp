// pickscore/cpu/embedding.hpp — the embedding layers of both towers on the CPU (reference loops).
//
// Text:   out[b, t, :] = token_table[ids[b, t], :] + pos_table[t, :]
// Vision: out[b, 0, :] = cls + pos[0, :];  out[b, 1 + p, :] = patches[b, p, :] + pos[1 + p, :]
// Pooling: out[b, :] = in[b, positions[b], :]   (the class token; the text tower's end-of-text token)
// Every sum is formed in acc_t<T> and rounded to T once. The arguments were checked by
// pickscore/ops/embedding.hpp, except the token ids, which only the backend can read: they are
// checked here, before anything is written.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../core/threads.hpp"

namespace pickscore::cpu {

// Throws Error naming the first id outside [0, vocab) and its position [b, t].
inline void check_token_ids(const char* op, TensorView<const std::int32_t, Cpu> ids /*B,T*/, std::int64_t vocab) {
    const std::int64_t T = ids.size(1);
    for (std::int64_t i = 0; i < ids.numel(); ++i) {
        const std::int64_t id = ids[i];
        require(0 <= id && id < vocab, op, ": token id ", id, " at position [", i / T, ", ", i % T,
                "] of ids ", ids.shape(), " is outside the vocabulary [0, ", vocab, ")");
    }
}

template <class T>
void token_embedding_forward(TensorView<T, Cpu> out /*B,T,C*/, TensorView<const std::int32_t, Cpu> ids /*B,T*/,
                             TensorView<const T, Cpu> token_table /*V,C*/, TensorView<const T, Cpu> pos_table /*P,C*/) {
    using Acc = acc_t<T>;
    check_token_ids("token_embedding_forward", ids, token_table.size(0));
    const std::int64_t n = ids.numel(), Tn = ids.size(1), C = token_table.size(1);
    parallel_for(n, [&](std::int64_t i) {
        const T* tok = token_table.data() + std::int64_t(ids[i]) * C;
        const T* pos = pos_table.data() + (i % Tn) * C;
        T* o = out.data() + i * C;
        for (std::int64_t c = 0; c < C; ++c) o[c] = cast<T>(cast<Acc>(tok[c]) + cast<Acc>(pos[c]));
    });
}

// dtoken[ids[b, t], :] += dout[b, t, :] and dpos[t, :] += Σ_b dout[b, t, :]; either may be empty.
// A token that occurs several times gets all its contributions summed in acc_t<T> (in order of
// position) and added to dtoken once: no races, the same result for any thread count.
template <class T>
void token_embedding_backward(TensorView<T, Cpu> dtoken /*V,C*/, TensorView<T, Cpu> dpos /*P,C*/,
                              TensorView<const T, Cpu> dout /*B,T,C*/, TensorView<const std::int32_t, Cpu> ids /*B,T*/) {
    using Acc = acc_t<T>;
    const std::int64_t n = ids.numel(), B = ids.size(0), Tn = ids.size(1), C = dout.size(2);
    if (!dtoken.empty()) {
        check_token_ids("token_embedding_backward", ids, dtoken.size(0));
        // Positions grouped by token id; each group (a run of equal ids) is one task.
        std::vector<std::int64_t> order(static_cast<std::size_t>(n));
        std::iota(order.begin(), order.end(), std::int64_t(0));
        std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) { return ids[a] < ids[b]; });
        std::vector<std::size_t> run_begin;
        for (std::size_t k = 0; k < order.size(); ++k)
            if (k == 0 || ids[order[k]] != ids[order[k - 1]]) run_begin.push_back(k);
        run_begin.push_back(order.size());
        parallel_for(std::int64_t(run_begin.size()) - 1, [&](std::int64_t r) {
            const std::size_t k0 = run_begin[std::size_t(r)], k1 = run_begin[std::size_t(r) + 1];
            T* row = dtoken.data() + std::int64_t(ids[order[k0]]) * C;
            std::vector<Acc> sum(static_cast<std::size_t>(C));
            for (std::int64_t c = 0; c < C; ++c) sum[std::size_t(c)] = cast<Acc>(row[c]);
            for (std::size_t k = k0; k < k1; ++k) {
                const T* g = dout.data() + order[k] * C;
                for (std::int64_t c = 0; c < C; ++c) sum[std::size_t(c)] += cast<Acc>(g[c]);
            }
            for (std::int64_t c = 0; c < C; ++c) row[c] = cast<T>(sum[std::size_t(c)]);
        });
    }
    if (!dpos.empty()) {
        parallel_for(Tn, [&](std::int64_t t) {
            T* row = dpos.data() + t * C;
            for (std::int64_t c = 0; c < C; ++c) {
                Acc sum = cast<Acc>(row[c]);
                for (std::int64_t b = 0; b < B; ++b) sum += cast<Acc>(dout[(b * Tn + t) * C + c]);
                row[c] = cast<T>(sum);
            }
        });
    }
}

template <class T>
void class_position_forward(TensorView<T, Cpu> out /*B,1+P,C*/, TensorView<const T, Cpu> patches /*B,P,C*/,
                            TensorView<const T, Cpu> cls /*C*/, TensorView<const T, Cpu> pos /*1+P,C*/) {
    using Acc = acc_t<T>;
    const std::int64_t B = out.size(0), S = out.size(1), C = out.size(2), P = S - 1;
    parallel_for(B * S, [&](std::int64_t i) {
        const std::int64_t b = i / S, s = i % S;
        const T* src = s == 0 ? cls.data() : patches.data() + (b * P + s - 1) * C;
        const T* p = pos.data() + s * C;
        T* o = out.data() + i * C;
        for (std::int64_t c = 0; c < C; ++c) o[c] = cast<T>(cast<Acc>(src[c]) + cast<Acc>(p[c]));
    });
}

// dpatches[b, p, :] = dout[b, 1 + p, :] (written); dcls += Σ_b dout[b, 0, :]; dpos += Σ_b dout[b];
// each of the three may be empty.
template <class T>
void class_position_backward(TensorView<T, Cpu> dpatches /*B,P,C*/, TensorView<T, Cpu> dcls /*C*/,
                             TensorView<T, Cpu> dpos /*1+P,C*/, TensorView<const T, Cpu> dout /*B,1+P,C*/) {
    using Acc = acc_t<T>;
    const std::int64_t B = dout.size(0), S = dout.size(1), C = dout.size(2), P = S - 1;
    if (!dpatches.empty()) {
        parallel_for(B, [&](std::int64_t b) {
            std::copy_n(dout.data() + (b * S + 1) * C, P * C, dpatches.data() + b * P * C);
        });
    }
    // Position gradient of row s, and the class-embedding gradient (row 0 again).
    auto column_sum = [&](T* row, std::int64_t s) {
        for (std::int64_t c = 0; c < C; ++c) {
            Acc sum = cast<Acc>(row[c]);
            for (std::int64_t b = 0; b < B; ++b) sum += cast<Acc>(dout[(b * S + s) * C + c]);
            row[c] = cast<T>(sum);
        }
    };
    if (!dpos.empty()) parallel_for(S, [&](std::int64_t s) { column_sum(dpos.data() + s * C, s); });
    if (!dcls.empty()) column_sum(dcls.data(), 0);
}

// Throws Error naming the first position outside [0, tokens) and its row.
inline void check_token_positions(const char* op, TensorView<const std::int32_t, Cpu> positions /*B*/,
                                  std::int64_t tokens) {
    for (std::int64_t b = 0; b < positions.numel(); ++b) {
        const std::int64_t t = positions[b];
        require(0 <= t && t < tokens, op, ": positions[", b, "] = ", t, " is outside [0, ", tokens, ")");
    }
}

// out[b, :] = in[b, positions[b], :]. Pure data movement: nothing is rounded.
template <class T>
void select_token_forward(TensorView<T, Cpu> out /*B,C*/, TensorView<const T, Cpu> in /*B,T,C*/,
                          TensorView<const std::int32_t, Cpu> positions /*B*/) {
    check_token_positions("select_token_forward", positions, in.size(1));
    const std::int64_t Tn = in.size(1), C = in.size(2);
    for (std::int64_t b = 0; b < in.size(0); ++b)
        std::copy_n(in.data() + (b * Tn + positions[b]) * C, C, out.data() + b * C);
}

// din[b, t, :] = dout[b, :] where t == positions[b], 0 elsewhere (written).
template <class T>
void select_token_backward(TensorView<T, Cpu> din /*B,T,C*/, TensorView<const T, Cpu> dout /*B,C*/,
                           TensorView<const std::int32_t, Cpu> positions /*B*/) {
    check_token_positions("select_token_backward", positions, din.size(1));
    const std::int64_t Tn = din.size(1), C = din.size(2);
    parallel_for(din.size(0), [&](std::int64_t b) {
        T* rows = din.data() + b * Tn * C;
        std::fill(rows, rows + Tn * C, cast<T>(0.0));
        std::copy_n(dout.data() + b * C, C, rows + std::int64_t(positions[b]) * C);
    });
}

}  // namespace pickscore::cpu

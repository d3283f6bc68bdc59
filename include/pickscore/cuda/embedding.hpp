// pickscore/cuda/embedding.hpp — the CUDA backend of ops/embedding.hpp: token + position
// embedding, class + position embedding, and pooling one token per row, forward and backward.
//
// Same arguments as the CPU backend (pickscore/cpu/embedding.hpp) as raw pointers plus sizes,
// row-major, shapes already checked by the ops layer. Element types: float and bf16, sums in f32.
//
// Token ids and pooling positions: the ops layer checks them on the host before calling these
// (ops/embedding.hpp says where the host copy comes from), so the kernels trust them. They still
// never read or write out of bounds: a row whose id or position is out of range comes out NaN.
//
// The token-table gradient is a scatter-add, made deterministic without float atomics: the host
// groups the positions by id (a stable sort of the ids it already holds) and splits each group
// into segments of at most ~√(group size) positions (at least 32). One warp sums a segment in
// position order; a group of one segment adds its sum to dtoken directly, a longer group goes
// through f32 partial sums that one warp then adds in segment order. The result is the same bits
// on every run, for any grid; a group of one segment even matches the CPU's order exactly.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "../core/dtype.hpp"

namespace pickscore::cuda {

// out[i, :] = token_table[ids[i], :] + pos_table[i % tokens, :] for i < rows (= B·tokens);
// ids is device memory.
template <class T>
void token_embedding_forward(T* out /*rows,C*/, const std::int32_t* ids /*rows*/, const T* token_table /*V,C*/,
                             const T* pos_table /*>=tokens,C*/, std::int64_t rows, std::int64_t tokens,
                             std::int64_t vocab, std::int64_t C);

// dtoken[ids[i], :] += dout[i, :] (dtoken may be null), dpos[t, :] += Σ_b dout[b, t, :] (dpos may
// be null). ids_host is HOST memory (the grouping is built from it; it may be null when dtoken is).
template <class T>
void token_embedding_backward(T* dtoken /*V,C*/, T* dpos /*>=tokens,C*/, const T* dout /*B,tokens,C*/,
                              const std::int32_t* ids_host /*B,tokens*/, std::int64_t B, std::int64_t tokens,
                              std::int64_t C);

// out[b, 0, :] = cls + pos[0, :];  out[b, s, :] = patches[b, s - 1, :] + pos[s, :]  (S = 1 + P)
template <class T>
void class_position_forward(T* out /*B,S,C*/, const T* patches /*B,S-1,C*/, const T* cls /*C*/, const T* pos /*S,C*/,
                            std::int64_t B, std::int64_t S, std::int64_t C);

// dpatches = dout[:, 1:, :] (written), dcls += Σ_b dout[b, 0, :], dpos += Σ_b dout[b]; each may be null.
template <class T>
void class_position_backward(T* dpatches /*B,S-1,C*/, T* dcls /*C*/, T* dpos /*S,C*/, const T* dout /*B,S,C*/,
                             std::int64_t B, std::int64_t S, std::int64_t C);

// out[b, :] = in[b, positions[b], :]; positions is device memory.
template <class T>
void select_token_forward(T* out /*B,C*/, const T* in /*B,tokens,C*/, const std::int32_t* positions /*B*/,
                          std::int64_t B, std::int64_t tokens, std::int64_t C);

// din[b, t, :] = dout[b, :] where t == positions[b], else 0 (written); positions is device memory.
template <class T>
void select_token_backward(T* din /*B,tokens,C*/, const T* dout /*B,C*/, const std::int32_t* positions /*B*/,
                           std::int64_t B, std::int64_t tokens, std::int64_t C);

// ---- the host side of the deterministic scatter-add ---------------------------------------------------

// The work list of token_embedding_backward, built on the host from the ids, uploaded as one
// int32 buffer: `order` (the positions sorted by id, stably), then one Segment per warp of the
// first kernel, then one Finish per id whose group has several segments.
struct TokenGroups {
    struct Segment {
        std::int32_t begin, end;  // [begin, end) in `order`
        std::int32_t target;      // >= 0: the dtoken row to add to; < 0: partial slot -target - 1
    };
    struct Finish {
        std::int32_t id;          // the dtoken row
        std::int32_t first_slot;  // its partial sums are slots [first_slot, first_slot + slots)
        std::int32_t slots;
    };
    std::vector<std::int32_t> order;
    std::vector<Segment> segments;
    std::vector<Finish> finishes;
    std::int64_t partial_slots = 0;

    // The segment length of a group of n positions: about √n (so both passes are short), at least 32.
    static std::int64_t segment_length(std::int64_t n) {
        const auto root = std::int64_t(std::ceil(std::sqrt(double(n))));
        return std::max<std::int64_t>(32, root);
    }

    // [order | segments as triples | finishes as triples], the buffer the kernels read.
    std::vector<std::int32_t> packed() const {
        std::vector<std::int32_t> p(order);
        p.reserve(order.size() + 3 * (segments.size() + finishes.size()));
        for (const Segment& s : segments) p.insert(p.end(), {s.begin, s.end, s.target});
        for (const Finish& f : finishes) p.insert(p.end(), {f.id, f.first_slot, f.slots});
        return p;
    }
};

// Groups the n positions of `ids` (host memory, already checked to be in range) by id.
inline TokenGroups group_token_ids(const std::int32_t* ids, std::int64_t n) {
    TokenGroups g;
    g.order.resize(std::size_t(n));
    std::iota(g.order.begin(), g.order.end(), std::int32_t(0));
    std::stable_sort(g.order.begin(), g.order.end(), [&](std::int32_t a, std::int32_t b) { return ids[a] < ids[b]; });
    for (std::int64_t k0 = 0; k0 < n;) {
        const std::int32_t id = ids[g.order[std::size_t(k0)]];
        std::int64_t k1 = k0 + 1;
        while (k1 < n && ids[g.order[std::size_t(k1)]] == id) ++k1;
        const std::int64_t len = TokenGroups::segment_length(k1 - k0);
        if (k1 - k0 <= len) {
            g.segments.push_back({std::int32_t(k0), std::int32_t(k1), id});
        } else {
            const auto first = std::int32_t(g.partial_slots);
            for (std::int64_t s = k0; s < k1; s += len) {
                g.segments.push_back(
                    {std::int32_t(s), std::int32_t(std::min(s + len, k1)), std::int32_t(-g.partial_slots - 1)});
                ++g.partial_slots;
            }
            g.finishes.push_back({id, first, std::int32_t(g.partial_slots - first)});
        }
        k0 = k1;
    }
    return g;
}

}  // namespace pickscore::cuda

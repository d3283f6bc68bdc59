// pickscore/cpu/attention.hpp — scaled dot-product attention on the CPU: the readable reference.
//
// Layout: q, out [B, Tq, H, Dh] and k, v [B, Tk, H, Dh], heads interleaved in the channel
// dimension as they come out of a Linear; lse [B, H, Tq]. For every (batch, head) pair, one task of
// the thread pool computes the full row of scores of each query, in acc_t<T>:
//   s_ij = scale · q_i · k_j   (j ≤ i only when causal),   lse_i = log Σ_j exp(s_ij)
//   P_ij = exp(s_ij − lse_i),   out_i = Σ_j P_ij v_j
// Backward recomputes P from q, k and the saved lse (as a flash-attention kernel does), with
//   D_i = dout_i · out_i,   dP_ij = dout_i · v_j,   dS_ij = P_ij (dP_ij − D_i)
//   dq_i = scale Σ_j dS_ij k_j,   dk_j = scale Σ_i dS_ij q_i,   dv_j = Σ_i P_ij dout_i
// Gradients are summed in acc_t<T> buffers and rounded to T once.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/threads.hpp"

namespace pickscore::cpu {

namespace detail {
// Sizes of one attention call and where row t of head h of batch b starts in a [B, T, H, Dh] tensor.
struct AttentionDims {
    std::int64_t B, Tq, Tk, H, Dh;
    std::int64_t q_row(std::int64_t b, std::int64_t t, std::int64_t h) const { return ((b * Tq + t) * H + h) * Dh; }
    std::int64_t k_row(std::int64_t b, std::int64_t t, std::int64_t h) const { return ((b * Tk + t) * H + h) * Dh; }
    // How many keys query i sees.
    std::int64_t keys_seen(std::int64_t i, bool causal) const { return causal ? std::min(i + 1, Tk) : Tk; }
};

template <class Acc, class T>
Acc dot_row(const T* a, const T* b, std::int64_t n) {
    Acc s = 0;
    for (std::int64_t d = 0; d < n; ++d) s += cast<Acc>(a[d]) * cast<Acc>(b[d]);
    return s;
}
}  // namespace detail

// out = softmax(scale · q kᵀ (masked)) v per (batch, head); lse written when not null.
template <class T>
void attention_forward(T* out, acc_t<T>* lse, const T* q, const T* k, const T* v, std::int64_t B, std::int64_t Tq,
                       std::int64_t Tk, std::int64_t H, std::int64_t Dh, bool causal, double scale) {
    using Acc = acc_t<T>;
    const detail::AttentionDims dims{B, Tq, Tk, H, Dh};
    parallel_for(B * H, [&](std::int64_t bh) {
        const std::int64_t b = bh / H, h = bh % H;
        std::vector<Acc> p(static_cast<std::size_t>(Tk)), o(static_cast<std::size_t>(Dh));
        for (std::int64_t i = 0; i < Tq; ++i) {
            const T* qi = q + dims.q_row(b, i, h);
            const std::int64_t n = dims.keys_seen(i, causal);
            // Scores, their maximum, and the unnormalised probabilities exp(s − max).
            Acc m = -std::numeric_limits<Acc>::infinity();
            for (std::int64_t j = 0; j < n; ++j) {
                p[std::size_t(j)] = Acc(scale) * detail::dot_row<Acc>(qi, k + dims.k_row(b, j, h), Dh);
                m = std::max(m, p[std::size_t(j)]);
            }
            Acc l = 0;
            for (std::int64_t j = 0; j < n; ++j) {
                p[std::size_t(j)] = std::exp(p[std::size_t(j)] - m);
                l += p[std::size_t(j)];
            }
            std::fill(o.begin(), o.end(), Acc(0));
            for (std::int64_t j = 0; j < n; ++j) {
                const T* vj = v + dims.k_row(b, j, h);
                for (std::int64_t d = 0; d < Dh; ++d) o[std::size_t(d)] += p[std::size_t(j)] * cast<Acc>(vj[d]);
            }
            T* oi = out + dims.q_row(b, i, h);
            for (std::int64_t d = 0; d < Dh; ++d) oi[d] = cast<T>(o[std::size_t(d)] / l);
            if (lse) lse[(b * H + h) * Tq + i] = m + std::log(l);
        }
    });
}

// dq, dk, dv written (see the top of this file for the formulas).
template <class T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* out,
                        const acc_t<T>* lse, std::int64_t B, std::int64_t Tq, std::int64_t Tk, std::int64_t H,
                        std::int64_t Dh, bool causal, double scale) {
    using Acc = acc_t<T>;
    const detail::AttentionDims dims{B, Tq, Tk, H, Dh};
    const Acc sc = Acc(scale);
    parallel_for(B * H, [&](std::int64_t bh) {
        const std::int64_t b = bh / H, h = bh % H;
        std::vector<Acc> dq_acc(std::size_t(Tq * Dh), Acc(0)), dk_acc(std::size_t(Tk * Dh), Acc(0)),
            dv_acc(std::size_t(Tk * Dh), Acc(0));
        for (std::int64_t i = 0; i < Tq; ++i) {
            const T* qi = q + dims.q_row(b, i, h);
            const T* gi = dout + dims.q_row(b, i, h);
            const Acc Di = detail::dot_row<Acc>(gi, out + dims.q_row(b, i, h), Dh);
            const Acc lse_i = lse[(b * H + h) * Tq + i];
            Acc* dqi = dq_acc.data() + i * Dh;
            for (std::int64_t j = 0; j < dims.keys_seen(i, causal); ++j) {
                const T* kj = k + dims.k_row(b, j, h);
                const T* vj = v + dims.k_row(b, j, h);
                const Acc P = std::exp(sc * detail::dot_row<Acc>(qi, kj, Dh) - lse_i);
                const Acc dP = detail::dot_row<Acc>(gi, vj, Dh);
                const Acc dS = P * (dP - Di);
                Acc* dkj = dk_acc.data() + j * Dh;
                Acc* dvj = dv_acc.data() + j * Dh;
                for (std::int64_t d = 0; d < Dh; ++d) {
                    dvj[d] += P * cast<Acc>(gi[d]);
                    dqi[d] += sc * dS * cast<Acc>(kj[d]);
                    dkj[d] += sc * dS * cast<Acc>(qi[d]);
                }
            }
        }
        for (std::int64_t i = 0; i < Tq; ++i)
            for (std::int64_t d = 0; d < Dh; ++d)
                dq[dims.q_row(b, i, h) + d] = cast<T>(dq_acc[std::size_t(i * Dh + d)]);
        for (std::int64_t j = 0; j < Tk; ++j)
            for (std::int64_t d = 0; d < Dh; ++d) {
                dk[dims.k_row(b, j, h) + d] = cast<T>(dk_acc[std::size_t(j * Dh + d)]);
                dv[dims.k_row(b, j, h) + d] = cast<T>(dv_acc[std::size_t(j * Dh + d)]);
            }
    });
}

}  // namespace pickscore::cpu

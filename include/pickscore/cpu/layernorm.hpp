// pickscore/cpu/layernorm.hpp — LayerNorm over the last dimension on the CPU, forward and backward.
//
// Rows of C elements. Statistics are computed in acc_t<T> with two passes (mean, then the biased
// variance of the deviations), and every output is rounded to T once. Row r is read completely
// before it is written, so out may be the same memory as in.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/threads.hpp"
#include "../ops/common.hpp"
#include "elementwise.hpp"

namespace pickscore::cpu {

using ops::Accumulate;

// Rows per task: enough work per task for narrow rows.
inline std::int64_t layernorm_rows_per_task(std::int64_t C) { return std::max<std::int64_t>(1, 8192 / (C + 1)); }

// out[r, :] = (in[r, :] − μ_r) · rstd_r · weight + bias,  rstd_r = 1 / √(σ²_r + eps)
// mean and rstd (R values each, accumulator type) are written when not null.
template <class T>
void layernorm_forward(T* out, acc_t<T>* mean, acc_t<T>* rstd, const T* in, const T* weight, const T* bias,
                       std::int64_t R, std::int64_t C, double eps) {
    using Acc = acc_t<T>;
    parallel_chunks(R, layernorm_rows_per_task(C), [&](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t r = r0; r < r1; ++r) {
            const T* x = in + r * C;
            T* y = out + r * C;
            Acc sum = 0;
            for (std::int64_t j = 0; j < C; ++j) sum += cast<Acc>(x[j]);
            const Acc mu = sum / Acc(C);
            Acc sq = 0;
            for (std::int64_t j = 0; j < C; ++j) {
                const Acc d = cast<Acc>(x[j]) - mu;
                sq += d * d;
            }
            const Acc rs = Acc(1) / std::sqrt(sq / Acc(C) + Acc(eps));
            for (std::int64_t j = 0; j < C; ++j)
                y[j] = cast<T>((cast<Acc>(x[j]) - mu) * rs * cast<Acc>(weight[j]) + cast<Acc>(bias[j]));
            if (mean) mean[r] = mu;
            if (rstd) rstd[r] = rs;
        }
    });
}

// The pre-LN block's residual join and the next LayerNorm together: resid_out = a + b (rounded to
// T), then ln_out = LayerNorm(resid_out) · weight + bias — the composition of add and
// layernorm_forward, and the reference for the fused CUDA kernel. resid_out may be the same
// memory as a or b.
template <class T>
void add_layernorm_forward(T* resid_out, T* ln_out, acc_t<T>* mean, acc_t<T>* rstd, const T* a, const T* b,
                           const T* weight, const T* bias, std::int64_t R, std::int64_t C, double eps) {
    add<T>(resid_out, a, b, R * C);
    layernorm_forward<T>(ln_out, mean, rstd, resid_out, weight, bias, R, C, eps);
}

// With x̂ = (x − μ)·rstd and g = dout ∘ weight, per row:
//   din    = rstd · (g − mean_j(g) − x̂ · mean_j(g ∘ x̂))   (written, or added when din_mode == yes)
//   dweight += Σ_rows dout ∘ x̂,   dbias += Σ_rows dout
// The parameter sums are formed per block of rows and then added in block order, so the result
// does not depend on the number of threads.
template <class T>
void layernorm_backward(T* din, T* dweight, T* dbias, const T* dout, const T* in, const T* weight, const acc_t<T>* mean,
                        const acc_t<T>* rstd, std::int64_t R, std::int64_t C, Accumulate din_mode) {
    using Acc = acc_t<T>;
    const std::int64_t rows_per_task = layernorm_rows_per_task(C);
    const std::int64_t tasks = (R + rows_per_task - 1) / rows_per_task;
    std::vector<Acc> dw_part(std::size_t(tasks * C), Acc(0)), db_part(std::size_t(tasks * C), Acc(0));
    parallel_for(tasks, [&](std::int64_t t) {
        Acc* dw = dw_part.data() + t * C;
        Acc* db = db_part.data() + t * C;
        const std::int64_t r1 = std::min(R, (t + 1) * rows_per_task);
        for (std::int64_t r = t * rows_per_task; r < r1; ++r) {
            const T* x = in + r * C;
            const T* gy = dout + r * C;
            T* dx = din + r * C;
            const Acc mu = mean[r], rs = rstd[r];
            Acc sum_g = 0, sum_gx = 0;
            for (std::int64_t j = 0; j < C; ++j) {
                const Acc xhat = (cast<Acc>(x[j]) - mu) * rs;
                const Acc dy = cast<Acc>(gy[j]);
                const Acc g = dy * cast<Acc>(weight[j]);
                sum_g += g;
                sum_gx += g * xhat;
                dw[j] += dy * xhat;
                db[j] += dy;
            }
            const Acc mean_g = sum_g / Acc(C), mean_gx = sum_gx / Acc(C);
            for (std::int64_t j = 0; j < C; ++j) {
                const Acc xhat = (cast<Acc>(x[j]) - mu) * rs;
                const Acc g = cast<Acc>(gy[j]) * cast<Acc>(weight[j]);
                const Acc d = rs * (g - mean_g - xhat * mean_gx);
                dx[j] = din_mode == Accumulate::yes ? cast<T>(cast<Acc>(dx[j]) + d) : cast<T>(d);
            }
        }
    });
    for (std::int64_t j = 0; j < C; ++j) {
        Acc dw = 0, db = 0;
        for (std::int64_t t = 0; t < tasks; ++t) {
            dw += dw_part[std::size_t(t * C + j)];
            db += db_part[std::size_t(t * C + j)];
        }
        dweight[j] = cast<T>(cast<Acc>(dweight[j]) + dw);
        dbias[j] = cast<T>(cast<Acc>(dbias[j]) + db);
    }
}

}  // namespace pickscore::cpu

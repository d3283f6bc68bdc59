// pickscore/train/optimizer.hpp — AdamW over a model's flat parameter buffer with f32 master
// weights, gradient clipping on the fly, and optional sharding of the optimizer state.
//
// Mixed precision, as PickScore trained (bf16 autocast, f32 master weights), done explicitly:
//   - the model (ClipModel<bf16, D>) is the working copy: its forward and backward run in bf16
//     (matrix products accumulate in f32 inside the GEMMs, LayerNorm statistics and the loss are
//     f32), and it writes bf16 parameter gradients;
//   - this optimizer owns the f32 master weights and the f32 moments m and v. A step reads the
//     gradient (bf16, or the f32 accumulator below), clips it by the global norm on the fly, updates
//     the master weights, and writes bf16(master) back into the model in the same pass
//     (ops::adamw_step_flat): the working copy is always the rounding of the master;
//   - gradients are summed in f32 whenever more than one bf16 gradient contributes to an update —
//     several micro-batches (accumulation) or several ranks — by the trainer's f32 accumulator, so
//     bf16 rounding happens once per micro-batch, never in a running sum. With one micro-batch on
//     one rank, the bf16 gradient goes straight into the update (no extra buffer).
// For an f32 model the model's own parameters are the master weights (nothing is copied); for a
// double model (gradient checks and exact tests on the CPU) the moments are double too.
//
// Sharding (ZeRO stage 1): with shard = true, rank r keeps master weights and moments only for its
// range [lo_r, hi_r) of the flat buffer (train/comm.hpp's shard_offsets), updates that range after
// the gradient all-reduce, and the ranks then all-gather the updated working parameters. That saves
// 12 bytes per parameter on all but 1/W of them, for one all-gather of the parameters per step.
//
// The global norm is computed over the whole (all-reduced) gradient on every rank: each rank gets
// the same norm, clip coefficient and skip decision. A non-finite norm skips the update (master,
// moments and working copy unchanged) and is reported by step().
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../ops/elementwise.hpp"
#include "../ops/optim.hpp"
#include "comm.hpp"
#include "device.hpp"

namespace pickscore::train {

template <class T, class D = Cpu>
class AdamW {
public:
    // Master and moment type: double for double models, float otherwise.
    using M = std::conditional_t<std::is_same_v<T, double>, double, float>;
    static constexpr bool separate_master = !std::is_same_v<T, M>;

    struct StepResult {
        double grad_norm = 0;  // before clipping
        bool skipped = false;  // non-finite gradient: no update
    };

    // params: the model's flat parameter buffer (kept as a view). comm decides the shard; with
    // shard = false every rank holds the whole state.
    AdamW(TensorView<T, D> params, const ops::AdamWConfig& cfg, double max_grad_norm, Communicator& comm,
          bool shard = false)
        : params_(params), cfg_(cfg), max_norm_(max_grad_norm), comm_(comm), shard_(shard && comm.world() > 1) {
        const std::int64_t n = params.numel();
        offsets_ = shard_ ? shard_offsets(n, comm.world()) : std::vector<std::int64_t>{0, n};
        const int r = shard_ ? comm.rank() : 0;
        lo_ = offsets_[std::size_t(r)];
        hi_ = offsets_[std::size_t(r) + 1];
        const Shape s{hi_ - lo_};
        if constexpr (separate_master) {
            master_ = Tensor<M, D>(s);
            device_convert<M, T, D>(master_.view(), params.slice(lo_, hi_).cview());
        }
        m_ = Tensor<M, D>(s);
        v_ = Tensor<M, D>(s);
        ops::fill<M, D>(m_.view(), 0.0);
        ops::fill<M, D>(v_.view(), 0.0);
        norm_ = Tensor<float, D>(Shape{1});
    }

    const ops::AdamWConfig& config() const { return cfg_; }
    std::int64_t steps_done() const { return step_; }
    void set_steps_done(std::int64_t s) { step_ = s; }
    bool sharded() const { return shard_; }
    std::int64_t shard_begin() const { return lo_; }
    std::int64_t shard_end() const { return hi_; }
    const std::vector<std::int64_t>& shard_offsets_all() const { return offsets_; }

    // The master weights of this rank's range (the model's own parameters for f32 / double models).
    TensorView<M, D> master() {
        if constexpr (separate_master) return master_.view();
        else return params_.slice(lo_, hi_);
    }
    TensorView<M, D> moment1() { return m_.view(); }
    TensorView<M, D> moment2() { return v_.view(); }

    // After loading master weights (and moments) from a checkpoint: rewrite the working copy from
    // the master (and gather the shards).
    void sync_params_from_master() {
        if constexpr (separate_master) device_convert<T, M, D>(params_.slice(lo_, hi_), master_.cview());
        if (shard_) comm_.all_gather_ranges(params_.data(), offsets_, dtype_of<T>);
    }

    // One update with learning rate lr from the full flat gradient grad (element type G: T, or f32
    // for an accumulator); the caller has already summed it over ranks.
    template <class G>
    StepResult step(TensorView<G, D> grad, double lr) {
        check_same_shape("AdamW::step", "grad", grad.shape(), "params", params_.shape());
        ops::AdamWConfig c = cfg_;
        c.lr = lr;
        const std::int64_t t = step_ + 1;
        StepResult res;
        if constexpr (std::is_same_v<M, double>) {
            static_assert(is_cpu<D>, "AdamW: double models run on the CPU");
            // The double path (tests): clip in place over the whole gradient, then AdamW on the range.
            std::vector<TensorView<G, D>> gs{grad};
            res.grad_norm = ops::global_grad_norm(gs);
            if (!std::isfinite(res.grad_norm)) {
                res.skipped = true;
            } else {
                const double coef = max_norm_ / (res.grad_norm + 1e-6);
                if (coef < 1.0) ops::scale_inplace<G, D>(grad, coef);
                ops::AdamWSlot<double, D> slot{params_.slice(lo_, hi_), grad.slice(lo_, hi_).cview(), m_.view(),
                                               v_.view()};
                ops::adamw_step(slot, t, c);
            }
        } else {
            ops::global_grad_norm(norm_.view(), grad);
            res.grad_norm = read_norm();
            res.skipped = !std::isfinite(res.grad_norm);
            TensorView<bf16, D> working;
            if constexpr (std::is_same_v<T, bf16>) working = params_.slice(lo_, hi_);
            ops::adamw_step_flat<G, D>(master(), working, m_.view(), v_.view(), grad.slice(lo_, hi_), norm_.cview(),
                                       max_norm_, t, c);
        }
        if (!res.skipped) step_ = t;
        if (shard_) comm_.all_gather_ranges(params_.data(), offsets_, dtype_of<T>);
        return res;
    }

private:
    double read_norm() {
        Tensor<float, Cpu> h(Shape{1});
        download<float, D>(h.view(), norm_.cview());
        return double(h[0]);
    }

    TensorView<T, D> params_;
    ops::AdamWConfig cfg_;
    double max_norm_;
    Communicator& comm_;
    bool shard_;
    std::vector<std::int64_t> offsets_;
    std::int64_t lo_ = 0, hi_ = 0;
    Tensor<M, D> master_, m_, v_;
    Tensor<float, D> norm_;
    std::int64_t step_ = 0;
};

}  // namespace pickscore::train

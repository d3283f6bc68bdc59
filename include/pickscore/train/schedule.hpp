// pickscore/train/schedule.hpp — PickScore's learning-rate schedule: log-shaped warmup, then a
// linear decay to zero.
//
// PickScore's trainer uses DeepSpeed's WarmupDecayLR (warmup_type "log", warmup_min_lr 0). With
// t = the number of optimizer updates already done (0 for the first update; DeepSpeed's
// last_batch_iteration), W = max(2, warmup) and T = total:
//     t <  W:  lr = min + (peak - min) · ln(t + 1) / ln(W)
//     t >= W:  lr = min + (peak - min) · max(0, (T - t) / max(1, T - W))
// So the first update has lr = min (ln 1 = 0), the peak is reached at t = W, and lr is min from
// t = T on. The reference recipe: peak 3e-6, W = 500, T = 4000. (PickScore's own launcher passes
// total_num_steps = max_steps × number of processes — 32,000 on 8 GPUs — so its decay only reached
// about 0.89 of the peak by step 4000; set total = 32000 to reproduce that literally.)
// warmup_type "linear" is DeepSpeed's other choice: t / W.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>

#include "../core/error.hpp"

namespace pickscore::train {

enum class WarmupType { log, linear };

inline WarmupType parse_warmup_type(std::string_view s) {
    if (s == "log") return WarmupType::log;
    if (s == "linear") return WarmupType::linear;
    fail<Error>("unknown warmup type '", s, "' (log or linear)");
}

struct LrSchedule {
    double peak = 3e-6;
    double min = 0.0;
    std::int64_t warmup = 500;
    std::int64_t total = 4000;
    WarmupType warmup_type = WarmupType::log;

    void validate() const {
        require(std::isfinite(peak) && peak >= 0, "LrSchedule: peak ", peak, " must be finite and >= 0");
        require(std::isfinite(min) && min >= 0 && min <= peak, "LrSchedule: min ", min, " must lie in [0, peak]");
        require(warmup >= 0 && total >= 0, "LrSchedule: warmup and total must be >= 0");
    }

    // The factor γ in [0, 1] for the update that follows t done updates.
    double gamma(std::int64_t t) const {
        require(t >= 0, "LrSchedule: t = ", t, " (updates done) must be >= 0");
        const std::int64_t W = std::max<std::int64_t>(2, warmup);
        if (t < W) {
            if (warmup_type == WarmupType::log) return std::log(double(t) + 1.0) / std::log(double(W));
            return double(t) / double(W);
        }
        return std::max(0.0, double(total - t) / std::max(1.0, double(total - W)));
    }

    // The learning rate of the update that follows t done updates (t = step - 1 for 1-based steps).
    double at(std::int64_t t) const { return min + (peak - min) * gamma(t); }
};

}  // namespace pickscore::train

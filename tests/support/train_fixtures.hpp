// What the trainer tests share (test_train.cpp on the CPU, test_train_cuda.cpp on the CUDA backend):
// a small synthetic preference set, the loader settings for it, and a short run of the recipe.
#pragma once

#include <cstdint>

#include <pickscore/data/dataset.hpp>
#include <pickscore/data/loader.hpp>
#include <pickscore/data/synthetic.hpp>
#include <pickscore/train/trainer.hpp>

namespace pickscore::test {

// 40 training pairs of 16 px images (the synthetic set, seed 21).
inline const data::Dataset& train_set() {
    static const data::Dataset d = [] {
        data::SyntheticOptions o;
        o.image_size = 16;
        o.seed = 21;
        return data::Dataset::from_examples(data::make_synthetic_preferences(40, data::Split::train, o));
    }();
    return d;
}

// Batches of `batch` pairs over all ranks (this rank's share), 16 px, 12 token positions, one worker.
inline data::LoaderOptions loader_options(std::int64_t batch, int rank = 0, int world = 1) {
    data::LoaderOptions lo;
    lo.batch = batch;
    lo.rank = rank;
    lo.world = world;
    lo.preprocess.size = 16;
    lo.context_length = 12;
    lo.workers = 1;
    lo.seed = 5;
    return lo;
}

// The recipe with a large learning rate and a short schedule (so a few steps move the weights),
// weight decay 0.3, clipping at 1; no validation, checkpoints or progress.
inline train::TrainOptions train_options(std::int64_t batch, std::int64_t steps) {
    train::TrainOptions o;
    o.batch = batch;
    o.steps = steps;
    o.schedule = {.peak = 1e-2, .min = 0.0, .warmup = 2, .total = 10, .warmup_type = train::WarmupType::log};
    o.adam.weight_decay = 0.3;
    o.max_grad_norm = 1.0;
    o.eval_every = 0;
    o.eval_on_start = false;
    o.save_every = 0;
    o.log_every = 0;
    o.progress = nullptr;
    return o;
}

}  // namespace pickscore::test

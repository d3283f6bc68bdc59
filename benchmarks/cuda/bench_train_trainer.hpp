// benchmarks/cuda/bench_train_trainer.hpp — the part of bench_train_cuda that runs train::Trainer
// with the data loader (BM_train_trainer_step). It lives in bench_train_trainer.cpp, compiled by the
// C++ compiler: the loader's image headers (pickscore::io) are not nvcc material. Built only where
// the pickscore::io target exists (PICKSCORE_BENCH_TRAINER).
#pragma once

#include <cstdint>
#include <memory>
#include <utility>

#include <pickscore/core/dtype.hpp>
#include <pickscore/core/device.hpp>
#include <pickscore/model/clip.hpp>

namespace pickscore::bench {

class TrainerBench {
public:
    // Draws the synthetic examples (128 at image_size x image_size, PNG), builds the byte-level
    // tokenizer, and times a loader alone (seconds per batch over 4 batches after the first).
    TrainerBench(std::int64_t batch, std::int64_t image_size, int workers);
    ~TrainerBench();
    TrainerBench(const TrainerBench&) = delete;
    TrainerBench& operator=(const TrainerBench&) = delete;

    std::int32_t eos_id() const;             // the tokenizer's end-of-text id (the model must use it)
    std::int64_t max_tokens() const;         // the longest caption in ids, start and end included
    double loader_s_per_batch() const;

    // The loader and the trainer for `model` (micro-batch `micro`), in the current CUDA context.
    void start(model::ClipModel<bf16, Cuda>& model, std::int64_t micro);
    // One Trainer::step: (loss, gradient norm).
    std::pair<double, double> step();
    // Ends the trainer and the loader (start() again to go on).
    void stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace pickscore::bench

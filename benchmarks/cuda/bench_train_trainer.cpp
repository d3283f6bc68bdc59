// benchmarks/cuda/bench_train_trainer.cpp — BM_train_trainer_step's trainer and data loader (see
// bench_train_cuda.cu and bench_train_trainer.hpp).
#include "bench_train_trainer.hpp"

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include <pickscore/data/loader.hpp>
#include <pickscore/data/synthetic.hpp>
#include <pickscore/io/tokenizer.hpp>
#include <pickscore/train/comm.hpp>
#include <pickscore/train/trainer.hpp>

namespace pickscore::bench {

struct TrainerBench::Impl {
    std::shared_ptr<const io::Tokenizer> tok;
    data::Dataset dataset;
    data::LoaderOptions lo;
    std::int64_t max_tokens = 0;
    double loader_s = 0;
    train::LocalCommunicator comm;
    std::unique_ptr<data::DataLoader> loader;
    std::unique_ptr<train::Trainer<bf16, Cuda>> trainer;
};

TrainerBench::TrainerBench(std::int64_t batch, std::int64_t image_size, int workers) : impl_(std::make_unique<Impl>()) {
    Impl& s = *impl_;
    // Byte-level BPE (no merges): ids 0-511 the byte symbols, 512 and 513 start and end of text.
    s.tok = std::make_shared<const io::Tokenizer>(
        io::Tokenizer::from_bpe_text("#version: 0.2\n", "byte-level vocabulary", io::TokenizerMode::hf, 0));
    data::SyntheticOptions so;
    so.image_size = image_size;
    so.seed = 5;
    std::vector<data::Example> examples = data::make_synthetic_preferences(batch, data::Split::train, so);
    for (const data::Example& e : examples)
        s.max_tokens = std::max<std::int64_t>(s.max_tokens, std::int64_t(s.tok->encode(e.caption).size()) + 2);
    s.dataset = data::Dataset::from_examples(std::move(examples));
    s.lo.batch = batch;
    s.lo.workers = workers;
    s.lo.prefetch = 2;
    s.lo.seed = 3;
    data::DataLoader probe(s.dataset, s.tok, s.lo);
    (void)probe.next();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 4; ++i) (void)probe.next();
    s.loader_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 4;
}

TrainerBench::~TrainerBench() = default;

std::int32_t TrainerBench::eos_id() const { return impl_->tok->eot_id(); }
std::int64_t TrainerBench::max_tokens() const { return impl_->max_tokens; }
double TrainerBench::loader_s_per_batch() const { return impl_->loader_s; }

void TrainerBench::start(model::ClipModel<bf16, Cuda>& model, std::int64_t micro) {
    Impl& s = *impl_;
    stop();
    s.loader = std::make_unique<data::DataLoader>(s.dataset, s.tok, s.lo);
    train::TrainOptions to;
    to.batch = s.lo.batch;
    to.micro_batch = micro;
    to.eval_every = 0;
    to.save_every = 0;
    to.log_every = 0;
    to.progress = nullptr;
    s.trainer = std::make_unique<train::Trainer<bf16, Cuda>>(model, *s.loader, s.comm, to);
}

void TrainerBench::stop() {
    impl_->trainer.reset();
    impl_->loader.reset();
}

std::pair<double, double> TrainerBench::step() {
    const train::StepMetrics m = impl_->trainer->step();
    return {m.loss, m.grad_norm};
}

}  // namespace pickscore::bench

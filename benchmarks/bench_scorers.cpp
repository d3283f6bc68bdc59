// bench_scorers — the other scorers of the paper at their real sizes on the CPU (random weights,
// preprocessed tensors in): the LAION aesthetic predictor (OpenAI CLIP ViT-L/14 image tower + MLP)
// and ImageReward (BLIP ViT-L/16 + BERT-base with cross-attention + MLP). tools/bench_scorers.py
// runs this next to the Python references (transformers' CLIPVisionModelWithProjection + the MLP;
// the image-reward package's BLIP modules) in the same run; benchmarks/RESULTS.md has the figures.
//
//     bench_scorers [--threads N] [--batches 1,4] [--tokens 20] [--dtype f32|bf16]
//                   [Google Benchmark flags, e.g. --benchmark_format=json]
//
//   BM_aesthetic/<dtype>/B     AestheticModel::scores of B 224x224 images
//   BM_imagereward/<dtype>/B   ImageRewardModel::rewards of B (prompt, image) pairs, prompts of
//                                    --tokens ids ([CLS] ... [SEP]) padded to 35
// One iteration = one call; items_per_second = images/s.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <pickscore/core.hpp>
#include <pickscore/model/aesthetic.hpp>
#include <pickscore/model/imagereward.hpp>

namespace {

using namespace pickscore;

struct Settings {
    int threads = 0;
    std::vector<std::int64_t> batches = {1, 4};
    std::int64_t tokens = 20;
    bool bf16 = false;
};

Settings& settings() {
    static Settings s;
    return s;
}

template <class T>
model::AestheticModel<T>& aesthetic(std::int64_t batch) {
    static std::unique_ptr<model::AestheticModel<T>> m;
    static std::int64_t planned = 0;
    if (!m || planned < batch) {
        m.reset();
        m = std::make_unique<model::AestheticModel<T>>(model::AestheticConfig::aesthetic(),
                                                       model::AestheticOptions{.batch = batch});
        Rng rng(1);
        m->init_weights(rng, 0.02);
        planned = batch;
    }
    return *m;
}

template <class T>
model::ImageRewardModel<T>& imagereward(std::int64_t batch) {
    static std::unique_ptr<model::ImageRewardModel<T>> m;
    static std::int64_t planned = 0;
    if (!m || planned < batch) {
        m.reset();
        m = std::make_unique<model::ImageRewardModel<T>>(model::ImageRewardConfig::imagereward(),
                                                         model::ImageRewardOptions{.batch = batch});
        Rng rng(2);
        m->init_weights(rng, 0.02);
        planned = batch;
    }
    return *m;
}

template <class T>
Tensor<T, Cpu> random_pixels(std::int64_t B) {
    Tensor<T, Cpu> px(Shape{B, 3, 224, 224});
    Rng rng(3);
    for (std::int64_t i = 0; i < px.numel(); ++i) px[i] = cast<T>(rng.normal());
    return px;
}

template <class T>
void BM_aesthetic(benchmark::State& state) {
    const std::int64_t B = state.range(0);
    auto& m = aesthetic<T>(B);
    const Tensor<T, Cpu> px = random_pixels<T>(B);
    Tensor<T, Cpu> out(Shape{B});
    for (auto _ : state) {
        m.scores(out, px);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations() * B);
}

template <class T>
void BM_imagereward(benchmark::State& state) {
    const std::int64_t B = state.range(0), L = 35, n = settings().tokens;
    auto& m = imagereward<T>(B);
    const Tensor<T, Cpu> px = random_pixels<T>(B);
    Tensor<std::int32_t, Cpu> ids = Tensor<std::int32_t, Cpu>::zeros(Shape{B, L});
    Rng rng(4);
    for (std::int64_t b = 0; b < B; ++b) {
        ids.at(b, 0) = 101;  // [CLS]
        for (std::int64_t t = 1; t + 1 < n; ++t) ids.at(b, t) = std::int32_t(1000 + rng.uniform() * 28000);
        ids.at(b, n - 1) = 102;  // [SEP]
    }
    const std::vector<std::int64_t> len(static_cast<std::size_t>(B), n);
    Tensor<T, Cpu> out(Shape{B});
    for (auto _ : state) {
        m.rewards(out, ids, len, px);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations() * B);
}

std::vector<std::int64_t> parse_list(std::string_view s) {
    std::vector<std::int64_t> v;
    std::stringstream ss{std::string(s)};
    std::string item;
    while (std::getline(ss, item, ',')) v.push_back(std::atoll(item.c_str()));
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<char*> rest{argv[0]};
    Settings& s = settings();
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        auto value = [&]() -> std::string_view {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "bench_scorers: %s needs a value\n", argv[i]);
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--threads") s.threads = std::atoi(std::string(value()).c_str());
        else if (a == "--batches") s.batches = parse_list(value());
        else if (a == "--tokens") s.tokens = std::atoll(std::string(value()).c_str());
        else if (a == "--dtype") s.bf16 = value() == "bf16";
        else rest.push_back(argv[i]);
    }
    if (s.tokens < 2 || s.tokens > 35) {
        std::fprintf(stderr, "bench_scorers: --tokens must be in [2, 35]\n");
        return 2;
    }
    if (s.threads > 0) set_num_threads(s.threads);
    const char* dt = s.bf16 ? "bf16" : "f32";
    for (std::int64_t b : s.batches) {
        const std::string sfx = dt;  // the batch follows as the argument: BM_aesthetic/f32/4
        auto* a = s.bf16 ? benchmark::RegisterBenchmark(("BM_aesthetic/" + sfx).c_str(), BM_aesthetic<bf16>)
                         : benchmark::RegisterBenchmark(("BM_aesthetic/" + sfx).c_str(), BM_aesthetic<float>);
        a->Arg(b)->Unit(benchmark::kMillisecond)->UseRealTime();
        auto* r = s.bf16 ? benchmark::RegisterBenchmark(("BM_imagereward/" + sfx).c_str(), BM_imagereward<bf16>)
                         : benchmark::RegisterBenchmark(("BM_imagereward/" + sfx).c_str(), BM_imagereward<float>);
        r->Arg(b)->Unit(benchmark::kMillisecond)->UseRealTime();
    }
    int n = int(rest.size());
    benchmark::Initialize(&n, rest.data());
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

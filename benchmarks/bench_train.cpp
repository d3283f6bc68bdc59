// bench_train — one PickScore optimizer step on the CPU for a small CLIP configuration, f32:
// the forward of every prompt and both images of its pair, the KL preference loss, the backward
// of every parameter, and the AdamW update (clipping at norm 1.0, as the recipe does). That is
// the work of train::Trainer::step without the data loader (the inputs are fixed tensors).
// tools/bench_torch.py --train runs this next to the same step in PyTorch (transformers' CLIPModel)
// and prints the ratio; benchmarks/RESULTS.md has the figures.
//
//     bench_train [--threads N] [--batch 8] [--tokens 77] [--iterations N (steps per repetition)]
//                 [Google Benchmark flags, e.g. --benchmark_repetitions=5 --benchmark_format=json]
//
// The configuration ("small", see small_config below): ViT-B/32's layout scaled down — 224 px
// images in 32 px patches (50 tokens), vision width 384, 6 layers, 6 heads, MLP 1536; text width
// 256, 6 layers, 4 heads, MLP 1024 over CLIP's 49408-id vocabulary and 77 positions; embed 256;
// exact GELU. 29.4 M parameters (12.6 M of them the token embedding, which AdamW updates whole).
//
// Benchmark BM_train_step/f32/batch:B (one iteration = one optimizer step on B prompts, 2B images):
//   real time per step; items_per_second = examples (prompts) per second; counters "s/step" and
//   "GFLOP/s" (3 x the forward FLOPs of ClipConfig::vision_flops / text_flops: the usual
//   forward + backward count; LayerNorm, softmax, GELU and AdamW are not counted).
// Inputs: pixels ~ N(0, 1); ids random with start-of-text first and end-of-text at position
// tokens-1 (the text tower runs all `tokens` positions, as PyTorch does); labels cycle through
// [1,0], [0,1], [0.5,0.5]; weights 1/B (one example per prompt). AdamW: lr 3e-6, betas (0.9,
// 0.999), eps 1e-8, weight decay 0.3 on every parameter. One warm-up step before the timed ones.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <pickscore/core.hpp>
#include <pickscore/model.hpp>
#include <pickscore/train/comm.hpp>
#include <pickscore/train/optimizer.hpp>

namespace {

using namespace pickscore;

struct Settings {
    int threads = 2;
    std::int64_t batch = 8;
    std::int64_t tokens = 77;
    std::int64_t iterations = 1;
};

Settings& settings() {
    static Settings s;
    return s;
}

model::ClipConfig small_config() {
    model::ClipConfig c;
    c.name = "small";
    c.vision = {224, 32, 384, 6, 6, 1536};
    c.text = {49408, 77, 256, 6, 4, 1024, 49407};
    c.embed_dim = 256;
    c.activation = model::Activation::gelu_erf;
    return c;
}

std::string describe(const model::ClipConfig& c) {
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "%s: vision %lldpx/%lld (%lld tokens) width %lld layers %lld heads %lld mlp %lld; text vocab "
                  "%lld ctx %lld width %lld layers %lld heads %lld mlp %lld; embed %lld; %.1f M parameters",
                  c.name.c_str(), (long long)c.vision.image_size, (long long)c.vision.patch_size,
                  (long long)c.vision.tokens(), (long long)c.vision.width, (long long)c.vision.layers,
                  (long long)c.vision.heads, (long long)c.vision.mlp_width, (long long)c.text.vocab_size,
                  (long long)c.text.context_length, (long long)c.text.width, (long long)c.text.layers,
                  (long long)c.text.heads, (long long)c.text.mlp_width, (long long)c.embed_dim,
                  double(c.num_parameters()) * 1e-6);
    return buf;
}

void bm_train_step(benchmark::State& state) {
    const model::ClipConfig cfg = small_config();
    const std::int64_t B = state.range(0), S = cfg.vision.image_size, L = settings().tokens;
    model::ClipModel<float> m(cfg, model::ClipOptions{.batch = B, .training = true});
    Rng rng(1234);
    m.init_weights(rng);
    train::LocalCommunicator comm;
    train::AdamW<float> adamw(m.flat_parameters(), ops::AdamWConfig{}, /*max_grad_norm=*/1.0, comm);
    const double lr = 3e-6;

    Tensor<float, Cpu> pixels(Shape{B, 2, 3, S, S}), labels(Shape{B, 2}), weights(Shape{B});
    fill_normal(pixels.view(), rng);
    Tensor<std::int32_t, Cpu> ids(Shape{B, L});
    const std::int32_t eos = cfg.text.eos_token_id;
    for (std::int64_t i = 0; i < B; ++i) {
        for (std::int64_t t = 0; t < L; ++t) ids.at(i, t) = std::int32_t(1 + rng.below(std::uint64_t(eos - 2)));
        ids.at(i, 0) = eos - 1;  // start of text
        ids.at(i, L - 1) = eos;
        const float y0 = i % 3 == 0 ? 1.0f : i % 3 == 1 ? 0.0f : 0.5f;
        labels.at(i, 0) = y0;
        labels.at(i, 1) = 1.0f - y0;
        weights[i] = 1.0f / float(B);
    }
    auto step = [&] {
        m.zero_grad();
        const double loss = m.loss_and_grad(ids, pixels, labels, weights);
        const auto r = adamw.step(m.flat_gradients(), lr);
        benchmark::DoNotOptimize(loss);
        benchmark::DoNotOptimize(r);
    };
    step();  // warm-up: first touch of the arenas, the gradient buffer and the moments
    for (auto _ : state) step();
    state.SetItemsProcessed(state.iterations() * B);
    state.counters["s/step"] = benchmark::Counter(double(state.iterations()),
                                                  benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    const double flops = 3.0 * (2.0 * double(B) * cfg.vision_flops() + double(B) * cfg.text_flops(L));
    state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["threads"] = num_threads();
    state.counters["tokens"] = double(L);
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<char*> rest{argv[0]};
    try {
        for (int i = 1; i < argc; ++i) {
            const std::string_view a = argv[i];
            auto value = [&]() -> std::string {
                if (i + 1 >= argc) throw std::runtime_error(std::string(a) + " needs a value");
                return argv[++i];
            };
            if (a == "--threads") settings().threads = std::stoi(value());
            else if (a == "--batch") settings().batch = std::stoll(value());
            else if (a == "--tokens") settings().tokens = std::stoll(value());
            else if (a == "--iterations") settings().iterations = std::stoll(value());
            else rest.push_back(argv[i]);
        }
        if (settings().threads < 1 || settings().batch < 1 || settings().iterations < 1 || settings().tokens < 2 ||
            settings().tokens > small_config().text.context_length)
            throw std::runtime_error("--threads >= 1, --batch >= 1, --iterations >= 1, 2 <= --tokens <= 77");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_train: %s\n", e.what());
        return 2;
    }
    set_num_threads(settings().threads);
    int n = int(rest.size());
    benchmark::Initialize(&n, rest.data());
    if (benchmark::ReportUnrecognizedArguments(n, rest.data())) return 2;
    const std::string config = describe(small_config());
    std::fprintf(stderr, "bench_train: config %s; f32, batch %lld prompts (%lld images), %lld tokens, %d threads\n",
                 config.c_str(), (long long)settings().batch, (long long)(2 * settings().batch),
                 (long long)settings().tokens, settings().threads);
    benchmark::AddCustomContext("pickscore_threads", std::to_string(settings().threads));
    benchmark::AddCustomContext("config", config);
    benchmark::RegisterBenchmark("BM_train_step/f32", bm_train_step)
        ->Arg(settings().batch)
        ->ArgName("batch")
        ->Unit(benchmark::kMillisecond)
        ->Iterations(settings().iterations)
        ->UseRealTime()
        ->MeasureProcessCPUTime();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

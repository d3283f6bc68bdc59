// bench_e2e — end-to-end CLIP inference on the CPU: ViT-H/14 at its real size (986 M parameters,
// random weights), preprocessed tensors in, L2-normalised embeddings out, as pickscore::Scorer runs
// it (ClipModel::encode_images / encode_text on an inference-only model, scratch planned for the
// batch). tools/bench_torch.py runs this next to Hugging Face transformers' CLIPModel in the same
// run and prints the ratio; benchmarks/RESULTS.md has the figures.
//
//     bench_e2e [--threads N] [--batches 1,8] [--tokens 77] [--dtype f32|bf16] [--config vit_h14|tiny]
//               [--iterations N (calls per repetition, default 1)]
//               [Google Benchmark flags, e.g. --benchmark_repetitions=3 --benchmark_format=json]
//
// Benchmarks (one iteration = one call on `batch` inputs; wall time; items_per_second = images/s or
// prompts/s; "GFLOP/s" = the forward FLOPs of ClipConfig::vision_flops / text_flops per second):
//   BM_images/<dtype>/batch:B   encode_images of B preprocessed 224x224 images (pixels ~ N(0, 1))
//   BM_text/<dtype>/batch:B     encode_text of B prompts of --tokens tokens each (end-of-text at
//                               position tokens-1, padded to 77: the text tower stops at the
//                               end-of-text, as it does for real prompts; torch gets the same
//                               B x tokens ids, unpadded)
// The weights are drawn once (uniform, the std of HF's initialisation) before the first benchmark.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <pickscore/core.hpp>
#include <pickscore/model.hpp>

namespace {

using namespace pickscore;

struct Settings {
    int threads = 2;
    std::vector<std::int64_t> batches = {1, 8};
    std::int64_t tokens = 77;
    std::string dtype = "f32";
    std::string config = "vit_h14";
    std::int64_t iterations = 1;  // calls per repetition (each is seconds long at ViT-H/14 size)
};

Settings& settings() {
    static Settings s;
    return s;
}

model::ClipConfig bench_config() {
    return settings().config == "tiny" ? model::ClipConfig::tiny() : model::ClipConfig::vit_h14();
}

template <class T>
model::ClipModel<T>& the_model() {
    static std::unique_ptr<model::ClipModel<T>> m = [] {
        std::int64_t most = 1;
        for (std::int64_t b : settings().batches) most = std::max(most, b);
        auto p = std::make_unique<model::ClipModel<T>>(bench_config(),
                                                       model::ClipOptions{.batch = (most + 1) / 2, .training = false});
        Rng rng(1234);
        p->init_weights(rng, model::InitDistribution::uniform);
        return p;
    }();
    return *m;
}

template <class T>
void bm_images(benchmark::State& state) {
    auto& m = the_model<T>();
    const model::ClipConfig& c = m.config();
    const std::int64_t B = state.range(0), S = c.vision.image_size;
    Tensor<T, Cpu> px(Shape{B, 3, S, S});
    Tensor<T, Cpu> out(Shape{B, c.embed_dim});
    Rng rng(7);
    for (std::int64_t i = 0; i < px.numel(); ++i) px[i] = cast<T>(rng.normal(0.0, 1.0));
    m.encode_images(out, px);  // warm-up: first touch of the arena and the packed buffers
    for (auto _ : state) {
        m.encode_images(out, px);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations() * B);
    state.counters["GFLOP/s"] =
        benchmark::Counter(c.vision_flops() * double(B) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["threads"] = num_threads();
}

template <class T>
void bm_text(benchmark::State& state) {
    auto& m = the_model<T>();
    const model::ClipConfig& c = m.config();
    const std::int64_t B = state.range(0), L = c.text.context_length;
    const std::int64_t n = std::min(settings().tokens, L);
    Tensor<std::int32_t, Cpu> ids(Shape{B, L});
    Rng rng(11);
    for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t t = 0; t < L; ++t) {
            std::int32_t id = std::int32_t(1 + rng.below(std::uint64_t(c.text.eos_token_id - 2)));
            if (t == 0) id = c.text.eos_token_id - 1;  // start of text
            if (t == n - 1) id = c.text.eos_token_id;
            if (t >= n) id = c.text.eos_token_id;  // Hugging Face's padding
            ids.at(b, t) = id;
        }
    Tensor<T, Cpu> out(Shape{B, c.embed_dim});
    m.encode_text(out, ids);
    for (auto _ : state) {
        m.encode_text(out, ids);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations() * B);
    state.counters["GFLOP/s"] =
        benchmark::Counter(c.text_flops(n) * double(B) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["tokens"] = double(n);
    state.counters["threads"] = num_threads();
}

std::vector<std::int64_t> parse_list(std::string_view s) {
    std::vector<std::int64_t> v;
    std::stringstream in{std::string(s)};
    std::string item;
    while (std::getline(in, item, ',')) v.push_back(std::stoll(item));
    return v;
}

template <class T>
void register_all(const char* dtype) {
    for (std::int64_t b : settings().batches) {
        benchmark::RegisterBenchmark((std::string("BM_images/") + dtype).c_str(), bm_images<T>)
            ->Arg(b)
            ->ArgName("batch")
            ->Unit(benchmark::kMillisecond)
            ->Iterations(settings().iterations)
            ->UseRealTime()
            ->MeasureProcessCPUTime();
        benchmark::RegisterBenchmark((std::string("BM_text/") + dtype).c_str(), bm_text<T>)
            ->Arg(b)
            ->ArgName("batch")
            ->Unit(benchmark::kMillisecond)
            ->Iterations(settings().iterations)
            ->UseRealTime()
            ->MeasureProcessCPUTime();
    }
}

}  // namespace

int main(int argc, char** argv) {
    // Our flags first; the rest go to Google Benchmark.
    std::vector<char*> rest{argv[0]};
    try {
        for (int i = 1; i < argc; ++i) {
            const std::string_view a = argv[i];
            auto value = [&]() -> std::string_view {
                if (i + 1 >= argc) throw std::runtime_error(std::string(a) + " needs a value");
                return argv[++i];
            };
            if (a == "--threads") settings().threads = std::stoi(std::string(value()));
            else if (a == "--batches") settings().batches = parse_list(value());
            else if (a == "--tokens") settings().tokens = std::stoll(std::string(value()));
            else if (a == "--dtype") settings().dtype = std::string(value());
            else if (a == "--config") settings().config = std::string(value());
            else if (a == "--iterations") settings().iterations = std::stoll(std::string(value()));
            else rest.push_back(argv[i]);
        }
        if (settings().dtype != "f32" && settings().dtype != "bf16") throw std::runtime_error("--dtype f32 or bf16");
        if (settings().config != "vit_h14" && settings().config != "tiny") throw std::runtime_error("--config vit_h14 or tiny");
        if (settings().threads < 1 || settings().tokens < 2 || settings().iterations < 1)
            throw std::runtime_error("--threads >= 1, --tokens >= 2, --iterations >= 1");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_e2e: %s\n", e.what());
        return 2;
    }
    set_num_threads(settings().threads);
    int n = int(rest.size());
    benchmark::Initialize(&n, rest.data());
    if (benchmark::ReportUnrecognizedArguments(n, rest.data())) return 2;
    benchmark::AddCustomContext("pickscore_threads", std::to_string(settings().threads));
    benchmark::AddCustomContext("model", bench_config().name);
    if (settings().dtype == "bf16") register_all<bf16>("bf16");
    else register_all<float>("f32");
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

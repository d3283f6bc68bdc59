// bench_tokenizer: the CLIP tokenizer over the committed parity corpus (tests/data/tokenizer),
// one thread. tools/bench_tokenizer.py runs Hugging Face's Rust tokenizer on the same corpus in the
// same run and prints the ratio.
//
//   BM_encode/<mode>      full BPE ids of every string, no truncation (what HF's encode_batch
//                         without truncation computes): tokens/s and strings/s
//   BM_tokenize77/<mode>  PickScore's input: framed, truncated to 77, padded
//   BM_encode_cold/hf     as BM_encode with the word cache emptied before every pass
// The corpus path can be overridden with PICKSCORE_TOKENIZER_CORPUS, the vocabulary with
// PICKSCORE_VOCAB.
#include <benchmark/benchmark.h>

#include <pickscore/io/json.hpp>
#include <pickscore/io/tokenizer.hpp>

#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

namespace {

using pickscore::io::Tokenizer;
using pickscore::io::TokenizerMode;

std::string env_or(const char* name, const std::string& fallback) {
    const char* v = std::getenv(name);
    return v && *v ? std::string(v) : fallback;
}

const std::vector<std::string>& corpus() {
    static const std::vector<std::string> texts = [] {
        std::vector<std::string> out;
        const std::string raw = pickscore::io::read_gzip_file(
            env_or("PICKSCORE_TOKENIZER_CORPUS", PICKSCORE_SOURCE_DIR "/tests/data/tokenizer/corpus.jsonl.gz"));
        std::istringstream in(raw);
        std::string line;
        while (std::getline(in, line)) {
            if (line.empty()) continue;
            const auto j = pickscore::io::json::parse(line);
            if (const auto* s = j.find("s")) out.push_back(s->as_string());  // the same strings the Python side reads
        }
        return out;
    }();
    return texts;
}

Tokenizer load(TokenizerMode mode) {
    return Tokenizer::from_file(env_or("PICKSCORE_VOCAB", PICKSCORE_SHARED_DIR "/data/bpe_simple_vocab_16e6.txt.gz"), mode);
}

void report(benchmark::State& state, std::size_t tokens) {
    const auto n = double(corpus().size()) * double(state.iterations());
    state.counters["strings/s"] = benchmark::Counter(n, benchmark::Counter::kIsRate);
    state.counters["tokens/s"] = benchmark::Counter(double(tokens), benchmark::Counter::kIsRate);
    state.counters["strings"] = double(corpus().size());
}

void BM_encode(benchmark::State& state, TokenizerMode mode) {
    pickscore::set_num_threads(1);
    const Tokenizer tok = load(mode);
    std::size_t tokens = 0;
    for (auto _ : state) {
        for (const auto& s : corpus()) {
            const auto ids = tok.encode(s);
            tokens += ids.size();
            benchmark::DoNotOptimize(ids.data());
        }
    }
    report(state, tokens);
}

void BM_encode_cold(benchmark::State& state) {
    pickscore::set_num_threads(1);
    const Tokenizer tok = load(TokenizerMode::hf);
    std::size_t tokens = 0;
    for (auto _ : state) {
        state.PauseTiming();
        tok.clear_cache();
        state.ResumeTiming();
        for (const auto& s : corpus()) {
            const auto ids = tok.encode(s);
            tokens += ids.size();
            benchmark::DoNotOptimize(ids.data());
        }
    }
    report(state, tokens);
}

void BM_tokenize77(benchmark::State& state, TokenizerMode mode) {
    pickscore::set_num_threads(1);
    const Tokenizer tok = load(mode);
    std::vector<std::int32_t> row(77);
    std::size_t tokens = 0;
    for (auto _ : state) {
        for (const auto& s : corpus()) {
            tok.tokenize_into(s, row);
            tokens += 77;
            benchmark::DoNotOptimize(row.data());
        }
    }
    report(state, tokens);
}

BENCHMARK_CAPTURE(BM_encode, hf, TokenizerMode::hf)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_encode, openclip, TokenizerMode::openclip)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_encode_cold)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_tokenize77, hf, TokenizerMode::hf)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

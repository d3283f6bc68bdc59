// pickscore — the command-line tool.
//
//     pickscore <command> [arguments]      pickscore --help      pickscore <command> --help
//
// A thin program over the library: each command parses its arguments and calls library functions
// that a user can call directly. Commands are rows of the table `commands` below.
#include <cstdio>
#include <exception>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <pickscore/core.hpp>
#include "cli/selfcheck.hpp"
#ifdef PICKSCORE_CLI_HAS_IO  // the build links pickscore::io (image decoding, tokenizer)
#include "cli/demo.hpp"
#include "cli/compare.hpp"
#include "cli/embed.hpp"
#include "cli/eval.hpp"
#include "cli/preprocess.hpp"
#include "cli/score.hpp"
#include "cli/tokenize.hpp"
#include "cli/train.hpp"
#endif
#ifdef PICKSCORE_CLI_HAS_COLLECT  // the build links pickscore::collect (cpp-httplib, SQLite, OpenSSL)
#include "cli/collect.hpp"
#endif

#ifndef PICKSCORE_VERSION_STRING
#error "the build defines PICKSCORE_VERSION_STRING (the contents of the file VERSION)"
#endif

namespace {

using Args = std::span<const std::string_view>;  // the arguments after the command's name

// Wrong use of the command line: reported with the command's usage, exit status 2.
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Command {
    std::string_view name;
    std::string_view usage;  // the arguments it takes
    std::string_view summary;
    int (*run)(Args);
};

void no_arguments(std::string_view command, Args args) {
    if (!args.empty()) throw UsageError(std::string(command) + " takes no arguments, got '" + std::string(args[0]) + "'");
}

int run_version(Args args) {
    no_arguments("version", args);
    std::printf("pickscore %s\n", PICKSCORE_VERSION_STRING);
    return 0;
}

// `pickscore selfcheck`: examples/cli/selfcheck.hpp, called with argv[0] = "selfcheck".
int run_selfcheck(Args args) {
    std::vector<std::string> own{"selfcheck"};
    for (std::string_view a : args) own.emplace_back(a);
    std::vector<char*> argv;
    for (std::string& a : own) argv.push_back(a.data());
    return cmd_selfcheck(int(argv.size()), argv.data());
}

#ifdef PICKSCORE_CLI_HAS_IO
// `pickscore preprocess`: examples/cli/preprocess.hpp, called with argv[0] = "preprocess".
int run_preprocess(Args args) {
    std::vector<std::string> own{"preprocess"};
    for (std::string_view a : args) own.emplace_back(a);
    std::vector<char*> argv;
    for (std::string& a : own) argv.push_back(a.data());
    return cmd_preprocess(int(argv.size()), argv.data());
}

// `pickscore tokenize`: examples/cli/tokenize.hpp, called with argv[0] = "tokenize".
int run_tokenize(Args args) {
    std::vector<std::string> own{"tokenize"};
    for (std::string_view a : args) own.emplace_back(a);
    std::vector<char*> argv;
    for (std::string& a : own) argv.push_back(a.data());
    return cmd_tokenize(int(argv.size()), argv.data());
}

// `pickscore score | rank | embed`: examples/cli/score.hpp and embed.hpp, called with argv[0] = the name.
int run_with_argv(const char* name, int (*cmd)(int, char**), Args args) {
    std::vector<std::string> own{name};
    for (std::string_view a : args) own.emplace_back(a);
    std::vector<char*> argv;
    for (std::string& a : own) argv.push_back(a.data());
    return cmd(int(argv.size()), argv.data());
}
int run_score(Args args) { return run_with_argv("score", cmd_score, args); }
int run_rank(Args args) { return run_with_argv("rank", cmd_rank, args); }
int run_embed(Args args) { return run_with_argv("embed", cmd_embed, args); }
int run_eval(Args args) { return run_with_argv("eval", cmd_eval, args); }
int run_compare(Args args) { return run_with_argv("compare", cmd_compare, args); }
int run_demo(Args args) { return run_with_argv("demo", cmd_demo, args); }
int run_train(Args args) { return run_with_argv("train", cmd_train, args); }
#endif
#ifdef PICKSCORE_CLI_HAS_COLLECT
int run_collect(Args args) { return run_with_argv("collect", cmd_collect, args); }
#endif

constexpr Command commands[] = {
    {"version", "", "print the version", run_version},
    {"selfcheck", "[--quick | --full] [--filter SUBSTR]",
     "check every CPU op family (backward vs finite differences, f32 vs f64, sgemm, AdamW, bf16/f16), a line each and a summary; exit 1 if one fails", run_selfcheck},
#ifdef PICKSCORE_CLI_HAS_IO
    {"preprocess", "IMAGE --out FILE [--mode pickscore|hpsv2|resize] [--size N]",
     "decode and preprocess an image, write the float32 tensor [3, N, N] as .npy", run_preprocess},
    {"tokenize", "[--mode hf|openclip] [--vocab PATH] [--length N | --raw] [\"text\" ...]",
     "print CLIP token ids, a line per text (or stdin line); vocabulary: --vocab, $PICKSCORE_VOCAB, or beside the executable", run_tokenize},
    {"score", "--model PATH --prompt TEXT IMAGE... [--json|--csv] [--manifest FILE] [--device cpu|cuda] [--dtype f32|bf16] ...",
     "print each image's PickScore (score, probability, cosine) for a prompt; exit 3 when some images failed", run_score},
    {"rank", "--model PATH --prompt TEXT IMAGE... [--top K] [--copy-to DIR] [--manifest FILE] [--json|--csv] ...",
     "sort a prompt's images best first (reranking generator outputs); exit 3 when some images failed", run_rank},
    {"embed", "--model PATH [--prompt TEXT]... [IMAGE...] --out FILE.safetensors|FILE.npy ...",
     "write L2-normalised text and/or image embeddings", run_embed},
    {"eval", "--scorer NAME[,NAME...] --model PATH[,PATH...] --split FILE [--val FILE] [--json] ...",
     "the paper's accuracy table: tie-aware accuracy per scorer, threshold chosen on --val", run_eval},
    {"compare", "--manifest FILE.jsonl --scorer NAME[,NAME...] --model PATH[,PATH...] [--json] ...",
     "judge generators: mean score with bootstrap 95% interval, win rates, scorer agreement", run_compare},
    {"demo", "[--steps N] [--batch N] [--seed S] [--out DIR] [--threads N] [--vocab PATH]",
     "offline end-to-end demonstration: fine-tune a small CLIP on drawn preferences, score held-out images", run_demo},
    {"train", "--data PATH [--val PATH] --out DIR [--config FILE] [--model PATH | --config-name NAME] [--steps N] [--batch N] [--resume] ...",
     "fine-tune a CLIP on preference pairs with PickScore's recipe from shards, folders of shards or JSONL manifests", run_train},
#endif
#ifdef PICKSCORE_CLI_HAS_COLLECT
    {"collect", "--db FILE --pool DIR [--port N] [--bind ADDR] [--generate CMD] [--model PATH] [--admin-token TOKEN] | export --db FILE --out DIR [--exclude-flagged]",
     "the web app that gathers human preferences between two images (and `collect export`: them as training data)", run_collect},
#endif
};

void print_usage(std::FILE* to) {
    std::fprintf(to, "usage: pickscore <command> [arguments]\n\ncommands:\n");
    for (const Command& c : commands) std::fprintf(to, "  %-12.*s %.*s\n", int(c.name.size()), c.name.data(),
                                                   int(c.summary.size()), c.summary.data());
    std::fprintf(to, "\n'pickscore <command> --help' describes one command.\n");
}

void print_command_usage(std::FILE* to, const Command& c) {
    std::fprintf(to, "usage: pickscore %.*s%s%.*s\n  %.*s\n", int(c.name.size()), c.name.data(), c.usage.empty() ? "" : " ",
                 int(c.usage.size()), c.usage.data(), int(c.summary.size()), c.summary.data());
}

bool is_help(std::string_view a) { return a == "--help" || a == "-h" || a == "help"; }

}  // namespace

int main(int argc, char** argv) {
    const std::vector<std::string_view> argv_all(argv + 1, argv + argc);
    const Args args(argv_all);
    if (args.empty()) {
        print_usage(stderr);
        return 2;
    }
    if (is_help(args[0])) {
        print_usage(stdout);
        return 0;
    }
    const std::string_view name = args[0] == "--version" ? std::string_view("version") : args[0];
    const Command* command = nullptr;
    for (const Command& c : commands)
        if (c.name == name) command = &c;
    if (!command) {
        std::fprintf(stderr, "pickscore: unknown command '%.*s'\n\n", int(name.size()), name.data());
        print_usage(stderr);
        return 2;
    }
    const Args rest = args.subspan(1);
    // Every command but `version` answers --help itself with all of its options.
    if (!rest.empty() && is_help(rest[0]) && name == "version") {
        print_command_usage(stdout, *command);
        return 0;
    }
    try {
        return command->run(rest);
    } catch (const UsageError& e) {
        std::fprintf(stderr, "pickscore %.*s: %s\n", int(name.size()), name.data(), e.what());
        print_command_usage(stderr, *command);
        return 2;
    } catch (const pickscore::Error& e) {
        std::fprintf(stderr, "pickscore %.*s: %s\n", int(name.size()), name.data(), e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pickscore %.*s: unexpected error: %s\n", int(name.size()), name.data(), e.what());
        return 1;
    }
}

// examples/cli/collect.hpp — the `pickscore collect` command: the web app that gathers human
// preferences (include/pickscore/collect/), and `pickscore collect export`, which turns the votes
// into training data for `pickscore train`.
//
//     pickscore collect --db votes.db --pool images/ [--port 8080] [--bind 127.0.0.1] ...
//     pickscore collect export --db votes.db --out export/ [--exclude-flagged]
//
// The server runs until SIGINT or SIGTERM (Ctrl-C), then stops taking requests and exits 0. Needs
// the pickscore::collect target.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include <pickscore/collect.hpp>
#include <pickscore/collect/scorer.hpp>

#include "scoring.hpp"

inline constexpr const char* collect_usage =
    "usage: pickscore collect --db FILE --pool DIR [options]\n"
    "       pickscore collect export --db FILE --out DIR [--exclude-flagged] [--pool DIR] [--no-copy]\n"
    "  Serves a web page where people sign in and pick the better of two images for a prompt (or call a\n"
    "  tie); the votes go into an SQLite database. `export` writes them as training data (JSONL).\n"
    "  --db FILE              the SQLite database (created when absent)\n"
    "  --pool DIR             the images: DIR/pool.jsonl with {\"prompt\", \"image\", \"generator\"} per line, or one\n"
    "                         sub-folder per prompt (prompt.txt or the folder's name; generator = file name)\n"
    "  --port N               the TCP port (default 8080; 0: any free port)\n"
    "  --bind ADDR            the address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: all)\n"
    "  --public-url URL       how people reach the server, for sign-in links (default http://ADDR:PORT)\n"
    "  --generate CMD         a command that makes images for a typed prompt: {prompt} and {out} (a folder to\n"
    "                         write PNG/JPEG/WebP files into) are replaced; without {prompt}, the prompt is the\n"
    "                         last argument. No shell: quote with '...' or \"...\". The file names give the\n"
    "                         generators. Also in the environment: PICKSCORE_PROMPT, PICKSCORE_OUT\n"
    "  --generate-timeout S   seconds before the generator is killed (default 300)\n"
    "  --verify-cmd CMD       a command that sends the sign-in link: {email}, {link}, {name} are replaced\n"
    "                         (default: the link is written to this program's log, stderr)\n"
    "  --admin-token TOKEN    the admin page's token (default: $PICKSCORE_ADMIN_TOKEN, else a random one,\n"
    "                         printed in the log)\n"
    "  --model PATH           show what PickScore would have chosen after each vote (model flags below)\n"
    "  --votes-per-minute N   per person (default 60, burst 30; 0: unlimited)\n"
    "  --signins-per-minute N per client address and per e-mail address (default 6)\n"
    "  --repeat-every N       the hidden quality check: every N-th pair repeats an earlier one, sides\n"
    "                         swapped (default 10; 0: never)\n"
    "  --fast-vote-ms MS      votes faster than this count as implausibly fast (default 500)\n"
    "  --synchronous full|normal   SQLite's fsync policy (default full: survives power loss; normal:\n"
    "                         survives a killed server but maybe not a power cut)\n"
    "  --threads N            HTTP worker threads (default 16)\n"
    "  --no-validate          do not decode new pool images at start-up\n"
    "  --log-requests         log every request (method, path, status)\n"
    " export:\n"
    "  --out DIR              writes DIR/preferences.jsonl and DIR/images/ (the images, copied)\n"
    "  --exclude-flagged      leave out every vote of a flagged user\n"
    "  --pool DIR             where the images are (default: the pool the database records)\n"
    "  --no-copy              name the images by absolute path instead of copying them\n";

namespace pickscore_cli {

inline long collect_number(std::string_view flag, const std::string& v, long lo, long hi) {
    char* end = nullptr;
    const long n = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || !end || *end || n < lo || n > hi)
        throw UsageProblem{std::string(flag) + " must be a number from " + std::to_string(lo) + " to " + std::to_string(hi) + ", got '" + v + "'"};
    return n;
}

inline int run_collect_export(int argc, char** argv) {
    pickscore::collect::ExportOptions opt;
    for (int i = 2; i < argc; ++i) {
        const std::string_view a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw UsageProblem{std::string(a) + " needs a value"};
            return argv[++i];
        };
        if (a == "--help" || a == "-h") {
            std::printf("%s", collect_usage);
            return 0;
        } else if (a == "--db") {
            opt.db = value();
        } else if (a == "--out") {
            opt.out = value();
        } else if (a == "--pool") {
            opt.pool = value();
        } else if (a == "--exclude-flagged") {
            opt.exclude_flagged = true;
        } else if (a == "--no-copy") {
            opt.copy_images = false;
        } else {
            throw UsageProblem{"unknown argument '" + std::string(a) + "'"};
        }
    }
    if (opt.db.empty()) throw UsageProblem{"missing --db FILE"};
    if (opt.out.empty()) throw UsageProblem{"missing --out DIR"};
    const auto r = pickscore::collect::export_preferences(opt);
    std::printf("wrote %s: %lld preferences, %lld prompts, %lld people, %lld images\n", r.file.string().c_str(), (long long)r.rows,
                (long long)r.prompts, (long long)r.users, (long long)r.images);
    std::printf("left out: %lld skips, %lld quality-check repeats, %lld votes of flagged users%s\n", (long long)r.skips_left_out,
                (long long)r.repeats_left_out, (long long)r.flagged_votes_left_out, opt.exclude_flagged ? "" : " (kept: no --exclude-flagged)");
    return 0;
}

inline int run_collect_server(int argc, char** argv) {
    pickscore::collect::ServerOptions opt;
    ScorerFlags model;
    bool want_model = false;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw UsageProblem{std::string(a) + " needs a value"};
            return argv[++i];
        };
        if (a == "--help" || a == "-h") {
            std::printf("%s%s", collect_usage, scorer_flags_usage);
            return 0;
        } else if (model.parse(argc, argv, i)) {  // --model and the other model flags
            if (a == "--model") want_model = true;
        } else if (a == "--db") {
            opt.db = value();
        } else if (a == "--pool") {
            opt.pool = value();
        } else if (a == "--port") {
            opt.port = int(collect_number(a, value(), 0, 65535));
        } else if (a == "--bind") {
            opt.bind = value();
        } else if (a == "--public-url") {
            opt.public_url = value();
        } else if (a == "--generate") {
            opt.generate = value();
        } else if (a == "--generate-timeout") {
            opt.generate_timeout = std::chrono::seconds(collect_number(a, value(), 1, 86400));
        } else if (a == "--verify-cmd") {
            opt.verify_command = value();
        } else if (a == "--admin-token") {
            opt.admin_token = value();
        } else if (a == "--votes-per-minute") {
            opt.votes_per_minute = double(collect_number(a, value(), 0, 1000000));
        } else if (a == "--signins-per-minute") {
            opt.signins_per_minute = double(collect_number(a, value(), 1, 1000000));
        } else if (a == "--repeat-every") {
            opt.quality.repeat_every = int(collect_number(a, value(), 0, 1000000));
        } else if (a == "--fast-vote-ms") {
            opt.quality.fast_vote_ms = int(collect_number(a, value(), 0, 3600000));
        } else if (a == "--synchronous") {
            const std::string v = value();
            if (v == "full") opt.synchronous = pickscore::collect::Synchronous::full;
            else if (v == "normal") opt.synchronous = pickscore::collect::Synchronous::normal;
            else throw UsageProblem{"--synchronous must be full or normal, got '" + v + "'"};
        } else if (a == "--threads") {
            opt.threads = int(collect_number(a, value(), 2, 1024));
        } else if (a == "--no-validate") {
            opt.validate_images = false;
        } else if (a == "--log-requests") {
            opt.log_requests = true;
        } else {
            throw UsageProblem{"unknown argument '" + std::string(a) + "'"};
        }
    }
    if (opt.db.empty()) throw UsageProblem{"missing --db FILE"};
    if (opt.pool.empty()) throw UsageProblem{"missing --pool DIR"};
    if (opt.admin_token.empty())
        if (const char* env = std::getenv("PICKSCORE_ADMIN_TOKEN"); env && *env) opt.admin_token = env;
    if (want_model) {
        auto scorer = std::make_shared<pickscore::Scorer>(model.load());
        opt.predictor = pickscore::collect::make_scorer_predictor(scorer);
        opt.model_name = "pickscore:" + model.model;
    }

    // SIGINT and SIGTERM are blocked in every thread (the server's threads inherit the mask) and
    // taken by one thread with sigtimedwait, which stops the server.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    pickscore::collect::CollectServer server(opt);
    server.bind();
    std::atomic<bool> done{false};
    std::thread waiter([&] {
        const timespec tick{0, 200 * 1000 * 1000};
        while (!done) {
            const int s = sigtimedwait(&stop_signals, nullptr, &tick);
            if (s == SIGINT || s == SIGTERM) {
                std::fprintf(stderr, "pickscore collect: stopping (signal %d)\n", s);
                server.stop();
                return;
            }
        }
    });
    struct Join {
        std::atomic<bool>& done;
        std::thread& t;
        ~Join() {
            done = true;
            t.join();
        }
    } join{done, waiter};
    server.listen();
    return 0;
}

inline int cmd_collect(int argc, char** argv) {
    try {
        if (argc >= 2 && std::string_view(argv[1]) == "export") return run_collect_export(argc, argv);
        return run_collect_server(argc, argv);
    } catch (const UsageProblem& u) {
        std::fprintf(stderr, "pickscore collect: %s\n%s", u.message.c_str(), collect_usage);
        return 2;
    }
}

}  // namespace pickscore_cli

// argv[0] is the command's name; the arguments follow.
inline int cmd_collect(int argc, char** argv) { return pickscore_cli::cmd_collect(argc, argv); }

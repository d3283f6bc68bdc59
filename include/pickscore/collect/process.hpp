// pickscore/collect/process.hpp — running an outside command safely: the `--generate` image
// pickscore-requires: pickscore::collect
// generator and the `--verify-cmd` mailer of the collection server.
//
//   auto argv = collect::expand_command(collect::split_command_line("gen.sh --n 2 --out {out}"),
//                                       {{"prompt", "a red cube"}, {"out", dir}});
//   collect::ProcessResult r = collect::run_process(argv, {.timeout = std::chrono::seconds(60)});
//
// No shell is involved: the command line is split into words once, at start-up, by
// split_command_line (blanks separate words; '...' and "..." quote; a backslash escapes the next
// character; nothing else is special — no $, no `, no globbing, no ; or |), and each {name}
// placeholder is replaced inside its word by a value. A value therefore always stays inside the one
// argument it was put in, whatever characters it holds; it is never parsed again.
// run_process starts the program with posix_spawnp (safe in a threaded server, unlike fork), in a
// process group of its own, with stdin from /dev/null, stdout and stderr captured (up to
// max_output bytes, the rest read and dropped), the default signal dispositions and an empty signal
// mask. When the time limit passes the whole process group is killed (SIGKILL). When the program
// ends, any process it left running in its group is killed too.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/error.hpp"

extern "C" char** environ;

namespace pickscore::collect {

// Splits a command line into words (see the top of this file). Throws pickscore::Error on an
// unterminated quote or a trailing backslash.
inline std::vector<std::string> split_command_line(std::string_view s) {
    std::vector<std::string> words;
    std::string cur;
    bool in_word = false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (c == ' ' || c == '\t' || c == '\n') {
            if (in_word) words.push_back(std::move(cur));
            cur.clear();
            in_word = false;
        } else if (c == '\'' || c == '"') {
            const std::size_t end = s.find(c, i + 1);
            require(end != std::string_view::npos, "command line: unterminated ", c, " quote in '", s, "'");
            cur.append(s.substr(i + 1, end - i - 1));
            i = end;
            in_word = true;
        } else if (c == '\\') {
            require(i + 1 < s.size(), "command line: trailing backslash in '", s, "'");
            cur += s[++i];
            in_word = true;
        } else {
            cur += c;
            in_word = true;
        }
    }
    if (in_word) words.push_back(std::move(cur));
    return words;
}

// Replaces each "{name}" in each word by its value (a literal replacement: the value is not
// scanned again). Returns the words; `used[i]` tells whether vars[i] occurred anywhere.
inline std::vector<std::string> expand_command(const std::vector<std::string>& words,
                                               const std::vector<std::pair<std::string, std::string>>& vars,
                                               std::vector<bool>* used = nullptr) {
    if (used) used->assign(vars.size(), false);
    std::vector<std::string> out;
    for (const std::string& w : words) {
        std::string r;
        for (std::size_t i = 0; i < w.size();) {
            bool replaced = false;
            if (w[i] == '{') {
                for (std::size_t k = 0; k < vars.size(); ++k) {
                    const std::string key = "{" + vars[k].first + "}";
                    if (w.compare(i, key.size(), key) == 0) {
                        r += vars[k].second;
                        i += key.size();
                        if (used) (*used)[k] = true;
                        replaced = true;
                        break;
                    }
                }
            }
            if (!replaced) r += w[i++];
        }
        out.push_back(std::move(r));
    }
    return out;
}

struct RunOptions {
    std::chrono::milliseconds timeout{60000};
    std::filesystem::path cwd;                                // empty: the server's
    std::vector<std::pair<std::string, std::string>> env;     // added to (or replacing in) the environment
    std::size_t max_output = 64 * 1024;                       // bytes of stdout+stderr kept
};

struct ProcessResult {
    int exit_status = -1;  // the exit status when the program exited
    int signal = 0;        // the signal that ended it, else 0
    bool timed_out = false;
    std::string output;    // stdout and stderr, interleaved, at most max_output bytes
    bool ok() const { return !timed_out && signal == 0 && exit_status == 0; }
    std::string describe() const {
        if (timed_out) return "timed out (killed)";
        if (signal) return "killed by signal " + std::to_string(signal);
        return "exit status " + std::to_string(exit_status);
    }
};

namespace detail {

struct SpawnCleanup {
    posix_spawn_file_actions_t* fa = nullptr;
    posix_spawnattr_t* attr = nullptr;
    int fds[2] = {-1, -1};
    ~SpawnCleanup() {
        if (fa) posix_spawn_file_actions_destroy(fa);
        if (attr) posix_spawnattr_destroy(attr);
        for (int fd : fds)
            if (fd >= 0) ::close(fd);
    }
};

}  // namespace detail

// Runs argv[0] (looked up in PATH) with the arguments argv[1..]; waits at most opt.timeout.
// Throws pickscore::Error when the program cannot be started.
inline ProcessResult run_process(const std::vector<std::string>& argv, const RunOptions& opt = {}) {
    require(!argv.empty() && !argv[0].empty(), "run_process: no program given");
    // Everything the child needs is built before spawning.
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    std::vector<std::string> env_strings;
    for (char** e = environ; e && *e; ++e) {
        const std::string_view kv(*e);
        bool overridden = false;
        for (const auto& [k, v] : opt.env)
            if (kv.size() > k.size() && kv.compare(0, k.size(), k) == 0 && kv[k.size()] == '=') overridden = true;
        if (!overridden) env_strings.emplace_back(kv);
    }
    for (const auto& [k, v] : opt.env) env_strings.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (std::string& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);

    detail::SpawnCleanup c;
    require(::pipe2(c.fds, O_CLOEXEC) == 0, "run_process: pipe failed: ", std::strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    c.fa = &fa;
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, c.fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, c.fds[1], 2);
    if (!opt.cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, opt.cwd.c_str());
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    c.attr = &attr;
    sigset_t none, all_default;
    sigemptyset(&none);
    sigemptyset(&all_default);
    for (int s : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD}) sigaddset(&all_default, s);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all_default);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = -1;
    const int rc = posix_spawnp(&pid, args[0], &fa, &attr, args.data(), envp.data());
    if (rc != 0) fail<Error>("cannot run '", argv[0], "': ", std::strerror(rc));
    ::close(c.fds[1]);
    c.fds[1] = -1;

    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + opt.timeout;
    ProcessResult r;
    bool pipe_open = true, exited = false;
    char buf[4096];
    while (!exited) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) {
            r.timed_out = true;
            break;
        }
        if (pipe_open) {
            pollfd p{c.fds[0], POLLIN, 0};
            const int n = ::poll(&p, 1, int(std::min<long long>(left, 50)));
            if (n > 0) {
                const ssize_t got = ::read(c.fds[0], buf, sizeof buf);
                if (got > 0) {
                    const std::size_t keep = std::min<std::size_t>(std::size_t(got), opt.max_output - std::min(opt.max_output, r.output.size()));
                    r.output.append(buf, keep);
                } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
                    pipe_open = false;
                }
            }
        } else {
            ::usleep(10000);
        }
        // Has it ended? (WNOWAIT: the zombie keeps the pid, so its process group id cannot be reused
        // before we kill the group below.)
        siginfo_t info{};
        if (::waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid) exited = true;
    }
    ::kill(-pid, SIGKILL);  // the whole group: a timed-out program, or what it left behind
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!r.timed_out) {
        if (WIFEXITED(status)) r.exit_status = WEXITSTATUS(status);
        else if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
        // What is left in the pipe (the writers are gone or killed now, so this ends).
        for (;;) {
            pollfd p{c.fds[0], POLLIN, 0};
            if (!pipe_open || ::poll(&p, 1, 100) <= 0) break;
            const ssize_t got = ::read(c.fds[0], buf, sizeof buf);
            if (got <= 0) break;
            r.output.append(buf, std::min<std::size_t>(std::size_t(got), opt.max_output - std::min(opt.max_output, r.output.size())));
        }
    }
    return r;
}

}  // namespace pickscore::collect

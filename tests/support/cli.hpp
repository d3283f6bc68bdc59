// Running a program (the `pickscore` command) from a test as a subprocess: its exit status and what
// it printed, each stream captured in a file of a scratch folder.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "files.hpp"

namespace pickscore::test {

struct ProgramRun {
    int status = -1;  // the exit status; -1 when the program did not exit normally (a signal)
    std::string out, err;
};

// s as one word of the shell: single-quoted, with embedded quotes escaped.
inline std::string shell_quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

// Runs `program args...` through the shell, with stdin from /dev/null, and `env` ("NAME=value
// ...") before it when given. stdout and stderr go to scratch_dir/run.out and run.err (or both to
// run.out with merge_stderr, err then empty).
inline ProgramRun run_program(const std::string& program, const std::vector<std::string>& args,
                              const std::filesystem::path& scratch_dir, const std::string& env = "",
                              bool merge_stderr = false) {
    const std::filesystem::path out = scratch_dir / "run.out", err = scratch_dir / "run.err";
    std::string cmd = env;
    if (!cmd.empty()) cmd += ' ';
    cmd += shell_quote(program);
    for (const auto& a : args) {  // (appends: GCC 12 warns wrongly about " " + std::string here)
        cmd += ' ';
        cmd += shell_quote(a);
    }
    cmd += " >";
    cmd += shell_quote(out.string());
    if (merge_stderr) {
        cmd += " 2>&1";
    } else {
        cmd += " 2>";
        cmd += shell_quote(err.string());
    }
    cmd += " </dev/null";
    const int st = std::system(cmd.c_str());
    ProgramRun r;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = read_text(out);
    if (!merge_stderr) r.err = read_text(err);
    return r;
}

// The lines of s, without their newlines.
inline std::vector<std::string> lines_of(const std::string& s) {
    std::vector<std::string> v;
    std::istringstream in(s);
    for (std::string l; std::getline(in, l);) v.push_back(l);
    return v;
}

}  // namespace pickscore::test

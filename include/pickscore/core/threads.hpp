// pickscore/core/threads.hpp — the CPU worker pool behind every multi-threaded CPU op.
//
// One pool per process (a function-local static, no globals in headers). set_num_threads(n)
// chooses how many threads CPU ops use, the calling thread included; the default is the number
// of hardware threads. parallel_for(n, fn) runs fn(i) for i in [0, n), each index exactly once,
// and returns when all are done. A call from inside a task runs serially (no nested pools).
// The first exception thrown by fn is rethrown in the caller.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "error.hpp"

namespace pickscore {

namespace detail {

class ThreadPool {
public:
    ThreadPool() : wanted_(std::max(1u, std::thread::hardware_concurrency())) {}
    ~ThreadPool() { stop_workers(); }
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return wanted_; }

    void resize(int n) {
        require(n >= 1, "set_num_threads: thread count must be at least 1, got ", n);
        std::lock_guard<std::mutex> call_lock(call_mutex_);
        if (n == wanted_) return;
        stop_workers();
        wanted_ = n;
    }

    void run(std::int64_t n, const std::function<void(std::int64_t)>& fn) {
        if (n <= 0) return;
        if (n == 1 || wanted_ == 1 || in_worker()) {
            for (std::int64_t i = 0; i < n; ++i) fn(i);
            return;
        }
        std::lock_guard<std::mutex> call_lock(call_mutex_);
        // The calling thread runs tasks too: a parallel_for inside one of them must run serially
        // instead of waiting for the lock this call holds.
        struct InJob {
            InJob() { in_worker() = true; }
            ~InJob() { in_worker() = false; }
        } in_job;
        start_workers();
        {
            std::lock_guard<std::mutex> lk(m_);
            job_ = &fn;
            job_n_ = n;
            next_.store(0);
            pending_ = int(workers_.size());
            error_ = nullptr;
            ++generation_;
        }
        cv_.notify_all();
        work(fn, n);
        std::unique_lock<std::mutex> lk(m_);
        done_cv_.wait(lk, [&] { return pending_ == 0; });
        job_ = nullptr;
        if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    }

private:
    static bool& in_worker() {
        thread_local bool flag = false;
        return flag;
    }

    void work(const std::function<void(std::int64_t)>& fn, std::int64_t n) {
        for (;;) {
            const std::int64_t i = next_.fetch_add(1);
            if (i >= n) break;
            try {
                fn(i);
            } catch (...) {
                std::lock_guard<std::mutex> lk(m_);
                if (!error_) error_ = std::current_exception();
            }
        }
    }

    void start_workers() {
        if (!workers_.empty()) return;
        stopping_ = false;
        // A new worker waits for the next job, not the last one: generation_ counts every job
        // since the pool was made, and the last one's job_ is already gone (null).
        const std::uint64_t current = generation_;
        for (int t = 1; t < wanted_; ++t) {
            workers_.emplace_back([this, current] {
                in_worker() = true;
                std::uint64_t seen = current;
                for (;;) {
                    const std::function<void(std::int64_t)>* job;
                    std::int64_t n;
                    {
                        std::unique_lock<std::mutex> lk(m_);
                        cv_.wait(lk, [&] { return stopping_ || generation_ != seen; });
                        if (stopping_) return;
                        seen = generation_;
                        job = job_;
                        n = job_n_;
                    }
                    work(*job, n);
                    std::lock_guard<std::mutex> lk(m_);
                    if (--pending_ == 0) done_cv_.notify_one();
                }
            });
        }
    }

    void stop_workers() {
        {
            std::lock_guard<std::mutex> lk(m_);
            stopping_ = true;
        }
        cv_.notify_all();
        for (auto& w : workers_) w.join();
        workers_.clear();
    }

    int wanted_;
    std::vector<std::thread> workers_;
    std::mutex call_mutex_;  // one parallel_for at a time
    std::mutex m_;
    std::condition_variable cv_, done_cv_;
    const std::function<void(std::int64_t)>* job_ = nullptr;
    std::int64_t job_n_ = 0;
    std::atomic<std::int64_t> next_{0};
    int pending_ = 0;
    std::uint64_t generation_ = 0;
    bool stopping_ = false;
    std::exception_ptr error_;
};

inline ThreadPool& thread_pool() {
    static ThreadPool pool;
    return pool;
}

}  // namespace detail

// How many threads CPU ops use (the calling thread included).
inline int num_threads() { return detail::thread_pool().size(); }
inline void set_num_threads(int n) { detail::thread_pool().resize(n); }

// Runs fn(i) for every i in [0, n) on the pool; returns when all are done.
template <class F>
void parallel_for(std::int64_t n, F&& fn) {
    const std::function<void(std::int64_t)> f = std::forward<F>(fn);
    detail::thread_pool().run(n, f);
}

}  // namespace pickscore

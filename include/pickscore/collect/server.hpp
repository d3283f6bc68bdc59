// pickscore/collect/server.hpp — `pickscore collect`: the web app that gathers human preferences.
// pickscore-requires: pickscore::collect
//
//   collect::ServerOptions opt;
//   opt.db = "votes.db";  opt.pool = "pool/";        // see pool.hpp for the pool's layout
//   collect::CollectServer server(opt);                // opens the database, imports the pool
//   server.bind();  server.listen();                   // or start() to serve on a background thread
//
// People open the page (/), sign in with a name and an e-mail address, open the verification link
// (written to the server log, or handed to `verify_command`), and then see a prompt with two images:
// left, right, tie or skip (buttons, or the keys ←/→/↓/S). The next pair is fetched and its images
// loaded while they look at the current one, so it appears at once. After a vote the page shows what
// PickScore would have chosen when a predictor is set (`--model`). With `generate` set, people can
// type a prompt: the server runs the command, adds the images it wrote to the pool, and shows a pair
// of them. /admin (token) shows counts per user and generator, the tie rate, and agreement with
// PickScore and between people; the export (export.hpp) turns the votes into training data.
//
// HTTP API (JSON bodies, Content-Type: application/json; the session is a signed cookie):
//   GET  /api/me                      {signed_in, name, email, votes, generate, pickscore}
//   POST /api/signin {name, email}    starts a sign-in; the link goes to the log / verify_command
//   GET  /verify?token=T              completes it: sets the session cookie, redirects to /
//   POST /api/signout {}              clears the cookie
//   GET  /api/pair                    {show_id, prompt, left, right} (image URLs) or {done: true, generate}
//   POST /api/vote {show_id, choice}  choice: left | right | tie | skip -> {ok, vote_id, pickscore?}
//   POST /api/generate {prompt}       (with `generate`) runs the generator, answers like /api/pair
//   GET  /img/<uid>                   an image of the pool (signed-in users)
//   GET  /api/admin/stats[?exclude_flagged=1]     Authorization: Bearer <admin token>
//   POST /api/admin/flag {user_id, flagged: true | false | null}
//
// Safety. Every request is checked before it touches the database: the session cookie's HMAC (a
// forged or edited user id is 401), JSON bodies (Content-Type, size <= max_body else 413, strict
// parsing and field types else 400), show ids (404 unless the show exists and belongs to the caller;
// 409 when it already has a vote), image URLs (only /img/<32 hex digits>, looked up in the database;
// no URL is ever mapped onto a file path, so "../" leads nowhere), the admin token (401, compared in
// constant time). Values reach SQL only as bound parameters. Rate limits: votes and pairs per user,
// sign-ins per client address and per e-mail address, generations per user (429 with Retry-After).
// Cookies are HttpOnly and SameSite=Strict, and POSTs need a JSON content type (which a cross-site
// form cannot send), so other sites cannot vote in someone's name. Pages carry a strict
// Content-Security-Policy (no inline script, nothing from other origins). The server binds to
// 127.0.0.1 unless told otherwise.
//
// A vote is acknowledged (200) only after its transaction has committed (see sqlite.hpp on WAL and
// synchronous), so killing the server never loses an acknowledged vote.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../io/image_decode.hpp"
#include "../io/json.hpp"
#include "assets.hpp"
#include "pool.hpp"
#include "process.hpp"
#include "security.hpp"
#include "store.hpp"

namespace pickscore::collect {

// Scores a prompt's images (file paths); one number per image, NaN for an image it could not score.
// Higher is better; the page turns two scores into a probability with a softmax, so a predictor
// should return PickScore's scaled score (exp(logit_scale) * cosine). Called from one thread only.
using Predictor = std::function<std::vector<double>(const std::string& prompt, const std::vector<std::filesystem::path>& images)>;

struct ServerOptions {
    std::filesystem::path db;    // the SQLite file (created when absent)
    std::filesystem::path pool;  // the image pool folder (pool.hpp)
    std::string bind = "127.0.0.1";
    int port = 8080;          // 0: any free port (see port())
    std::string public_url;   // the base of verification links; default http://<bind>:<port>
    // The generator: a command line template (split_command_line) with {prompt} and {out} (a fresh
    // folder for the images); without {prompt} the prompt is appended as the last argument. The
    // environment also holds PICKSCORE_PROMPT and PICKSCORE_OUT. Empty: no generation.
    std::string generate;
    std::chrono::seconds generate_timeout{300};
    int generate_concurrency = 1;    // generations at once (more: 503)
    double generations_per_hour = 30;
    // The mailer: a command line template with {email}, {link} and {name}; without {link} the
    // e-mail address and the link are appended. Empty: the link is written to the log.
    std::string verify_command;
    std::string admin_token;         // empty: a random one, written to the log
    double votes_per_minute = 60;    // per user (a pair costs half a vote); <= 0: unlimited
    double vote_burst = 30;
    double signins_per_minute = 6;   // per client address and per e-mail address
    std::size_t max_body = 16 * 1024;
    int threads = 16;                // HTTP worker threads
    Synchronous synchronous = Synchronous::full;
    QualityRules quality;
    std::chrono::seconds session_lifetime{30 * 24 * 3600};
    std::chrono::seconds verification_lifetime{24 * 3600};
    bool validate_images = true;     // decode every new pool image once before using it
    Predictor predictor;             // --model: what PickScore would have chosen
    std::string model_name = "pickscore";
    bool log_requests = false;
    // Where log lines go (default: stderr, with a UTC time stamp). Called from several threads,
    // one line at a time.
    std::function<void(const std::string&)> log;
    // Also told every verification link (tests, or an embedding program with its own mailer).
    std::function<void(const std::string& email, const std::string& link)> on_verification_link;
};

namespace detail {

// One background thread running queued jobs in order.
class Worker {
public:
    Worker() : thread_([this] { loop(); }) {}
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;
    ~Worker() { stop(); }
    void post(std::function<void()> job) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (stopping_) return;
            jobs_.push_back(std::move(job));
        }
        cv_.notify_all();
    }
    // Blocks until every job posted so far has run.
    void wait_idle() {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return (jobs_.empty() && !busy_) || stopping_; });
    }
    void stop() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (stopping_) return;
            stopping_ = true;
            jobs_.clear();
        }
        cv_.notify_all();
        if (thread_.joinable()) thread_.join();
    }

private:
    void loop() {
        for (;;) {
            std::function<void()> job;
            {
                std::unique_lock<std::mutex> lock(mu_);
                cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
                if (stopping_) return;
                job = std::move(jobs_.front());
                jobs_.pop_front();
                busy_ = true;
            }
            job();
            {
                std::lock_guard<std::mutex> lock(mu_);
                busy_ = false;
            }
            cv_.notify_all();
        }
    }
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> jobs_;
    bool stopping_ = false, busy_ = false;
    std::thread thread_;
};

inline std::string lowercase_ascii(std::string s) {
    for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    return s;
}

inline bool is_hex(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// The value of cookie `name` in a Cookie header ("" when absent).
inline std::string cookie_value(std::string_view header, std::string_view name) {
    std::size_t i = 0;
    while (i < header.size()) {
        std::size_t end = header.find(';', i);
        if (end == std::string_view::npos) end = header.size();
        std::string_view part = header.substr(i, end - i);
        while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
        if (part.size() > name.size() && part.substr(0, name.size()) == name && part[name.size()] == '=')
            return std::string(part.substr(name.size() + 1));
        i = end + 1;
    }
    return {};
}

inline std::string html_escape(std::string_view s) {
    std::string o;
    for (char c : s) {
        switch (c) {
            case '&': o += "&amp;"; break;
            case '<': o += "&lt;"; break;
            case '>': o += "&gt;"; break;
            case '"': o += "&quot;"; break;
            case '\'': o += "&#39;"; break;
            default: o += c;
        }
    }
    return o;
}

// A request that is answered with an error status and {"error": message}.
struct HttpError {
    int status;
    std::string message;
};

}  // namespace detail

class CollectServer {
public:
    static constexpr const char* cookie_name = "pickscore_session";

    explicit CollectServer(ServerOptions opt)
        : opt_(std::move(opt)),
          store_(opt_.db, opt_.synchronous),
          vote_limit_(opt_.votes_per_minute / 60.0, opt_.vote_burst),
          pair_limit_(opt_.votes_per_minute / 30.0, 2 * opt_.vote_burst + 4),
          signin_limit_(opt_.signins_per_minute / 60.0, std::max(1.0, opt_.signins_per_minute)),
          generate_limit_(opt_.generations_per_hour / 3600.0, std::max(1.0, opt_.generations_per_hour / 6)) {
        if (!opt_.log) opt_.log = [mu = std::make_shared<std::mutex>()](const std::string& line) {
            std::lock_guard<std::mutex> lock(*mu);
            std::fprintf(stderr, "[%s] %s\n", format_time_ms(now_ms()).c_str(), line.c_str());
            std::fflush(stderr);
        };
        namespace fs = std::filesystem;
        require<IoError>(fs::is_directory(opt_.pool), "collect: the pool '", opt_.pool.string(), "' is not a folder");
        opt_.pool = fs::canonical(opt_.pool);
        if (!opt_.generate.empty()) {
            generate_words_ = split_command_line(opt_.generate);
            require(!generate_words_.empty(), "collect: --generate: empty command");
        }
        if (!opt_.verify_command.empty()) {
            verify_words_ = split_command_line(opt_.verify_command);
            require(!verify_words_.empty(), "collect: --verify-cmd: empty command");
        }
        admin_token_ = opt_.admin_token;
        if (admin_token_.empty()) {
            admin_token_ = random_hex(16);
            generated_admin_token_ = true;
        }
        require(admin_token_.size() >= 8, "collect: the admin token must have at least 8 characters");
        secret_ = store_.secret();
        store_.set_setting("pool_dir", opt_.pool.string());
        import_pool();
        setup_routes();
        if (opt_.predictor) {
            scorer_ = std::make_unique<detail::Worker>();
            schedule_scoring();
        }
        if (!verify_words_.empty()) mailer_ = std::make_unique<detail::Worker>();
    }
    CollectServer(const CollectServer&) = delete;
    CollectServer& operator=(const CollectServer&) = delete;
    ~CollectServer() { stop(); }

    // Binds the listening socket; returns the port (the chosen one when opt.port is 0).
    int bind() {
        if (port_ > 0) return port_;
        if (opt_.port == 0) {
            port_ = http_.bind_to_any_port(opt_.bind);
            if (port_ <= 0) fail<IoError>("collect: cannot listen on ", opt_.bind, " (any port)");
        } else {
            if (!http_.bind_to_port(opt_.bind, opt_.port))
                fail<IoError>("collect: cannot listen on ", opt_.bind, ":", opt_.port, " (in use, or not an address of this machine?)");
            port_ = opt_.port;
        }
        if (opt_.public_url.empty()) {
            const bool any = opt_.bind == "0.0.0.0" || opt_.bind == "::" || opt_.bind.empty();
            const bool v6 = opt_.bind.find(':') != std::string::npos;
            opt_.public_url = "http://" + (any ? std::string("localhost") : v6 ? "[" + opt_.bind + "]" : opt_.bind) + ":" + std::to_string(port_);
        }
        while (!opt_.public_url.empty() && opt_.public_url.back() == '/') opt_.public_url.pop_back();
        log("listening on " + url() + (opt_.bind == "127.0.0.1" || opt_.bind == "::1" || opt_.bind == "localhost" ? " (this machine only; --bind 0.0.0.0 for others)" : ""));
        log("admin page: " + url() + "/admin" + (generated_admin_token_ ? "  (admin token: " + admin_token_ + ")" : ""));
        return port_;
    }
    // Serves requests until stop(); binds first when needed.
    void listen() {
        bind();
        if (!http_.listen_after_bind() && !stopping_) fail<IoError>("collect: the HTTP server stopped unexpectedly");
    }
    // Serves on a background thread; returns the port once requests can be made.
    int start() {
        bind();
        listener_ = std::thread([this] { http_.listen_after_bind(); });
        for (int i = 0; i < 2000 && !http_.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        return port_;
    }
    void stop() {
        stopping_ = true;
        http_.stop();
        if (listener_.joinable()) listener_.join();
        if (scorer_) scorer_->stop();
        if (mailer_) mailer_->stop();
    }

    int port() const { return port_; }
    std::string url() const { return opt_.public_url; }
    const std::string& admin_token() const { return admin_token_; }
    const ServerOptions& options() const { return opt_; }
    // Runs fn with the store, under the server's database lock (tests, embedding programs).
    template <class F>
    auto with_store(F&& fn) {
        std::lock_guard<std::mutex> lock(db_mu_);
        return fn(store_);
    }
    // Blocks until the predictor has scored every image queued so far.
    void wait_for_scores() {
        if (scorer_) scorer_->wait_idle();
    }
    const ImportReport& pool_report() const { return pool_report_; }

private:
    using Request = httplib::Request;
    using Response = httplib::Response;
    using HttpError = detail::HttpError;

    void log(const std::string& line) const { opt_.log(line); }

    // ---- start-up --------------------------------------------------------------------------------

    ImageValidator validator() const {
        if (!opt_.validate_images) return {};
        return [](const std::filesystem::path& p) {
            const io::RgbImage img = io::load_image(p);
            return std::pair<std::int64_t, std::int64_t>{img.width, img.height};
        };
    }

    void import_pool() {
        const PoolScan scan = scan_pool(opt_.pool);
        pool_report_ = store_.import_pool(opt_.pool, scan, validator());
        for (const std::string& w : pool_report_.warnings) log("pool: " + w);
        log("pool " + opt_.pool.string() + (scan.from_manifest ? " (pool.jsonl)" : " (one folder per prompt)") + ": " +
            std::to_string(pool_report_.added) + " new images, " + std::to_string(pool_report_.known) + " known, " +
            std::to_string(pool_report_.rejected) + " rejected, " + std::to_string(pool_report_.deactivated) + " gone; " +
            std::to_string(pool_report_.prompts) + " prompts with pairs, " + std::to_string(pool_report_.pairs) + " pairs");
        if (pool_report_.pairs == 0)
            log(generate_words_.empty() ? "pool: no pairs to show: each prompt needs at least two images"
                                        : "pool: no pairs yet: people can generate images for their own prompts");
    }

    void schedule_scoring() {
        if (!scorer_) return;
        scorer_->post([this] {
            std::vector<std::pair<std::string, std::vector<std::pair<std::int64_t, std::filesystem::path>>>> unscored;
            {
                std::lock_guard<std::mutex> lock(db_mu_);
                unscored = store_.images_without_score();
            }
            std::size_t scored = 0;
            for (const auto& [prompt, images] : unscored) {
                if (stopping_) return;
                std::vector<std::filesystem::path> paths;
                for (const auto& im : images) paths.push_back(opt_.pool / im.second);
                std::vector<double> scores;
                try {
                    scores = opt_.predictor(prompt, paths);
                } catch (const std::exception& e) {
                    log(std::string("model: cannot score the images of \"") + prompt + "\": " + e.what());
                    continue;
                }
                std::lock_guard<std::mutex> lock(db_mu_);
                for (std::size_t i = 0; i < images.size() && i < scores.size(); ++i)
                    if (std::isfinite(scores[i])) {
                        store_.set_image_score(images[i].first, scores[i], opt_.model_name);
                        ++scored;
                    }
            }
            if (scored) log("model: scored " + std::to_string(scored) + " images");
        });
    }

    // ---- helpers -----------------------------------------------------------------------------------

    static void send_json(Response& res, const io::Json& j, int status = 200) {
        res.status = status;
        res.set_content(io::json::dump(j), "application/json");
    }
    static void send_error(Response& res, int status, const std::string& message) {
        io::Json j = io::Json::Object{};
        j.set("error", message);
        send_json(res, j, status);
    }

    io::Json parse_body(const Request& req) const {
        const std::string type = detail::lowercase_ascii(req.get_header_value("Content-Type"));
        if (type.rfind("application/json", 0) != 0) throw HttpError{415, "the body must be JSON (Content-Type: application/json)"};
        if (req.body.size() > opt_.max_body) throw HttpError{413, "the body is too large"};
        io::Json j;
        try {
            io::json::ParseOptions po;
            po.max_depth = 8;
            j = io::json::parse(req.body, po);
        } catch (const FormatError& e) {
            throw HttpError{400, std::string("malformed JSON: ") + e.what()};
        }
        if (!j.is_object()) throw HttpError{400, "the body must be a JSON object"};
        return j;
    }
    static std::string string_field(const io::Json& j, const char* key) {
        const io::Json* v = j.find(key);
        if (!v || !v->is_string()) throw HttpError{400, std::string("\"") + key + "\" must be a string"};
        return v->as_string();
    }
    static std::int64_t id_field(const io::Json& j, const char* key) {
        const io::Json* v = j.find(key);
        if (!v || !v->is_integer() || v->as_int64() <= 0) throw HttpError{400, std::string("\"") + key + "\" must be a positive integer"};
        return v->as_int64();
    }

    std::optional<User> session_user(const Request& req) {
        const std::string value = detail::cookie_value(req.get_header_value("Cookie"), cookie_name);
        if (value.empty() || value.size() > 200) return std::nullopt;
        const auto id = verify_session(secret_, value, now_ms() / 1000);
        if (!id) return std::nullopt;
        std::lock_guard<std::mutex> lock(db_mu_);
        auto u = store_.user(*id);
        if (!u || !u->verified) return std::nullopt;
        return u;
    }
    User require_user(const Request& req) {
        auto u = session_user(req);
        if (!u) throw HttpError{401, "not signed in (or the session is not valid)"};
        return *u;
    }
    void require_admin(const Request& req) const {
        const std::string h = req.get_header_value("Authorization");
        const std::string prefix = "Bearer ";
        if (h.size() <= prefix.size() || h.compare(0, prefix.size(), prefix) != 0 ||
            !constant_time_equal(std::string_view(h).substr(prefix.size()), admin_token_))
            throw HttpError{401, "the admin token is missing or wrong"};
    }
    void rate_limit(RateLimiter& limiter, const std::string& key, const char* what) {
        if (limiter.take(key)) return;
        throw HttpError{429, std::string("too many ") + what + "; wait " + std::to_string(int(std::ceil(limiter.wait_seconds(key)))) + " s"};
    }

    io::Json show_json(const Show& s) const {
        io::Json j = io::Json::Object{};
        j.set("show_id", s.id);
        j.set("prompt", s.prompt);
        j.set("left", "/img/" + s.left.uid);
        j.set("right", "/img/" + s.right.uid);
        return j;
    }
    io::Json done_json() const {
        io::Json j = io::Json::Object{};
        j.set("done", true);
        j.set("generate", !generate_words_.empty());
        return j;
    }

    // What PickScore says about a shown pair, when both images have scores.
    io::Json prediction(std::int64_t left, std::int64_t right) {
        std::optional<double> l, r;
        {
            std::lock_guard<std::mutex> lock(db_mu_);
            l = store_.image_score(left);
            r = store_.image_score(right);
        }
        if (!l || !r) return io::Json();
        io::Json j = io::Json::Object{};
        const double m = std::max(*l, *r);
        const double pl = std::exp(*l - m) / (std::exp(*l - m) + std::exp(*r - m));
        j.set("left", *l);
        j.set("right", *r);
        j.set("probability_left", pl);
        j.set("choice", *l > *r ? "left" : *r > *l ? "right" : "tie");
        j.set("model", opt_.model_name);
        return j;
    }

    // Wraps a handler: HttpError -> its status; anything else -> 500 (logged).
    template <class F>
    httplib::Server::Handler guarded(F f) {
        return [this, f](const Request& req, Response& res) {
            res.set_header("Cache-Control", "no-store");
            try {
                f(req, res);
            } catch (const HttpError& e) {
                if (e.status == 429) res.set_header("Retry-After", "1");
                send_error(res, e.status, e.message);
            } catch (const std::exception& e) {
                log(std::string("error: ") + req.method + " " + req.path + ": " + e.what());
                send_error(res, 500, "internal error");
            }
        };
    }

    // ---- routes ------------------------------------------------------------------------------------

    void setup_routes() {
        const int threads = std::max(2, opt_.threads);
        http_.new_task_queue = [threads] { return new httplib::ThreadPool(std::size_t(threads)); };
        http_.set_payload_max_length(opt_.max_body);
        http_.set_read_timeout(10);
        http_.set_write_timeout(10);
        http_.set_keep_alive_timeout(5);
        if (opt_.log_requests)
            http_.set_logger([this](const Request& req, const Response& res) {
                log(req.remote_addr + " " + req.method + " " + req.path + " " + std::to_string(res.status));
            });
        // Headers on every response (errors included): no sniffing, no framing, no referrer (the
        // verification link carries a token), and a CSP that allows only this origin's files.
        http_.set_post_routing_handler([](const Request&, Response& res) {
            res.set_header("X-Content-Type-Options", "nosniff");
            res.set_header("X-Frame-Options", "DENY");
            res.set_header("Referrer-Policy", "no-referrer");
            res.set_header("Content-Security-Policy",
                           "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
                           "form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
        });
        http_.set_error_handler(httplib::Server::HandlerWithResponse([](const Request&, Response& res) {
            if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
            const char* what = res.status == 404 ? "not found" : res.status == 413 ? "the body is too large"
                             : res.status == 405 ? "method not allowed" : "bad request";
            send_error(res, res.status, what);
            return httplib::Server::HandlerResponse::Handled;
        }));
        http_.set_exception_handler([this](const Request& req, Response& res, std::exception_ptr ep) {
            std::string what = "unknown";
            try {
                if (ep) std::rethrow_exception(ep);
            } catch (const std::exception& e) {
                what = e.what();
            } catch (...) {
            }
            log("error: " + req.method + " " + req.path + ": " + what);
            send_error(res, 500, "internal error");
        });

        auto asset = [](const char* body, const char* type) {
            return [body, type](const Request&, Response& res) {
                res.set_header("Cache-Control", "no-cache");
                res.set_content(body, type);
            };
        };
        http_.Get("/", asset(assets::index_html, "text/html; charset=utf-8"));
        http_.Get("/app.js", asset(assets::app_js, "text/javascript; charset=utf-8"));
        http_.Get("/app.css", asset(assets::app_css, "text/css; charset=utf-8"));
        http_.Get("/admin", asset(assets::admin_html, "text/html; charset=utf-8"));
        http_.Get("/admin.js", asset(assets::admin_js, "text/javascript; charset=utf-8"));
        http_.Get("/favicon.ico", [](const Request&, Response& res) { res.status = 204; });

        http_.Get("/api/me", guarded([this](const Request& req, Response& res) {
            io::Json j = io::Json::Object{};
            const auto u = session_user(req);
            j.set("signed_in", u.has_value());
            if (u) {
                j.set("name", u->name);
                j.set("email", u->email);
                j.set("votes", u->votes);
            }
            j.set("generate", !generate_words_.empty());
            j.set("pickscore", bool(opt_.predictor));
            send_json(res, j);
        }));

        http_.Post("/api/signin", guarded([this](const Request& req, Response& res) {
            const io::Json body = parse_body(req);
            std::string name = string_field(body, "name");
            const std::string email = detail::lowercase_ascii(string_field(body, "email"));
            if (!valid_name(name)) throw HttpError{400, "the name must have 1 to 100 characters"};
            if (!valid_email(email)) throw HttpError{400, "that does not look like an e-mail address"};
            rate_limit(signin_limit_, "addr:" + req.remote_addr, "sign-ins from this address");
            rate_limit(signin_limit_, "email:" + email, "sign-ins for this address");
            std::pair<std::int64_t, std::string> started;
            {
                std::lock_guard<std::mutex> lock(db_mu_);
                started = store_.begin_signin(name, email, std::int64_t(opt_.verification_lifetime.count()) * 1000);
            }
            const std::string link = url() + "/verify?token=" + started.second;
            send_verification(name, email, link);
            io::Json j = io::Json::Object{};
            j.set("ok", true);
            j.set("message", verify_words_.empty() ? "The sign-in link was written to the server's log: ask the person running it."
                                                   : "A sign-in link is on its way to " + email + ".");
            send_json(res, j);
        }));

        http_.Get("/verify", [this](const Request& req, Response& res) {
            res.set_header("Cache-Control", "no-store");
            const std::string token = req.get_param_value("token");
            std::optional<std::int64_t> user;
            if (token.size() == 64 && detail::is_hex(token)) {
                try {
                    std::lock_guard<std::mutex> lock(db_mu_);
                    user = store_.finish_signin(token);
                } catch (const std::exception& e) {
                    log(std::string("error: verify: ") + e.what());
                }
            }
            if (!user) {
                res.status = 400;
                res.set_content(
                    "<!doctype html><meta charset=utf-8><title>Sign-in link</title><p>This sign-in link is not valid: it was "
                    "used already, has expired, or is incomplete. <a href=\"/\">Sign in again</a>.</p>",
                    "text/html; charset=utf-8");
                return;
            }
            set_session_cookie(res, *user);
            res.status = 303;
            res.set_header("Location", "/");
        });

        http_.Post("/api/signout", guarded([this](const Request&, Response& res) {
            res.set_header("Set-Cookie", std::string(cookie_name) + "=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict" + secure_suffix());
            io::Json j = io::Json::Object{};
            j.set("ok", true);
            send_json(res, j);
        }));

        http_.Get("/api/pair", guarded([this](const Request& req, Response& res) {
            const User u = require_user(req);
            rate_limit(pair_limit_, "u" + std::to_string(u.id), "requests");
            std::optional<Show> s;
            {
                std::lock_guard<std::mutex> lock(db_mu_);
                s = store_.next_show(u.id, opt_.quality);
            }
            send_json(res, s ? show_json(*s) : done_json());
        }));

        http_.Post("/api/vote", guarded([this](const Request& req, Response& res) {
            const User u = require_user(req);
            const io::Json body = parse_body(req);
            const std::int64_t show = id_field(body, "show_id");
            const auto choice = parse_choice(string_field(body, "choice"));
            if (!choice) throw HttpError{400, "\"choice\" must be left, right, tie or skip"};
            rate_limit(vote_limit_, "u" + std::to_string(u.id), "votes");
            VoteResult r;
            {
                std::lock_guard<std::mutex> lock(db_mu_);
                r = store_.record_vote(u.id, show, *choice, opt_.quality);
            }
            if (r.status == VoteStatus::unknown_show) throw HttpError{404, "no such pair"};
            if (r.status == VoteStatus::duplicate) throw HttpError{409, "this pair already has your vote"};
            io::Json j = io::Json::Object{};
            j.set("ok", true);
            j.set("vote_id", r.vote_id);
            if (opt_.predictor) j.set("pickscore", prediction(r.left_image, r.right_image));
            send_json(res, j);
        }));

        http_.Post("/api/generate", guarded([this](const Request& req, Response& res) { handle_generate(req, res); }));

        http_.Get("/img/([0-9a-f]{32})", guarded([this](const Request& req, Response& res) {
            require_user(req);
            std::optional<ImageRow> im;
            {
                std::lock_guard<std::mutex> lock(db_mu_);
                im = store_.image_by_uid(req.matches[1].str());
            }
            if (!im || !is_safe_relative_path(im->path)) throw HttpError{404, "no such image"};
            std::ifstream f(opt_.pool / im->path, std::ios::binary);
            if (!f) throw HttpError{404, "the image file is gone"};
            std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
            const auto fmt = io::sniff_image_format(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
            const char* type = fmt == io::ImageFormat::png ? "image/png" : fmt == io::ImageFormat::jpeg ? "image/jpeg"
                             : fmt == io::ImageFormat::webp ? "image/webp" : "application/octet-stream";
            res.set_header("Cache-Control", "private, max-age=86400");
            res.set_content(std::move(bytes), type);
        }));

        http_.Get("/api/admin/stats", guarded([this](const Request& req, Response& res) {
            require_admin(req);
            const bool exclude = req.get_param_value("exclude_flagged") == "1";
            io::Json j;
            {
                std::lock_guard<std::mutex> lock(db_mu_);
                j = store_.stats(exclude);
            }
            j.set("model", opt_.predictor ? io::Json(opt_.model_name) : io::Json());
            send_json(res, j);
        }));

        http_.Post("/api/admin/flag", guarded([this](const Request& req, Response& res) {
            require_admin(req);
            const io::Json body = parse_body(req);
            const std::int64_t user = id_field(body, "user_id");
            const io::Json* f = body.find("flagged");
            if (!f || !(f->is_bool() || f->is_null())) throw HttpError{400, "\"flagged\" must be true, false or null"};
            bool found;
            {
                std::lock_guard<std::mutex> lock(db_mu_);
                found = store_.set_manual_flag(user, f->is_null() ? std::nullopt : std::optional<bool>(f->as_bool()), opt_.quality);
            }
            if (!found) throw HttpError{404, "no such user"};
            io::Json j = io::Json::Object{};
            j.set("ok", true);
            send_json(res, j);
        }));
    }

    std::string secure_suffix() const { return opt_.public_url.rfind("https://", 0) == 0 ? "; Secure" : ""; }

    void set_session_cookie(Response& res, std::int64_t user) {
        const std::int64_t life = std::int64_t(opt_.session_lifetime.count());
        const std::string value = sign_session(secret_, user, now_ms() / 1000 + life);
        res.set_header("Set-Cookie", std::string(cookie_name) + "=" + value + "; Path=/; Max-Age=" + std::to_string(life) +
                                         "; HttpOnly; SameSite=Strict" + secure_suffix());
    }

    void send_verification(const std::string& name, const std::string& email, const std::string& link) {
        if (opt_.on_verification_link) opt_.on_verification_link(email, link);
        if (verify_words_.empty()) {
            log("verification link for " + email + ": " + link);
            return;
        }
        std::vector<bool> used;
        std::vector<std::string> argv = expand_command(verify_words_, {{"email", email}, {"link", link}, {"name", name}}, &used);
        if (!used[1]) {
            argv.push_back(email);
            argv.push_back(link);
        }
        mailer_->post([this, argv, email] {
            try {
                RunOptions run;
                run.timeout = std::chrono::seconds(30);
                const ProcessResult r = run_process(argv, run);
                if (r.ok()) log("sent the verification link to " + email);
                else log("verify command for " + email + " failed (" + r.describe() + "): " + r.output.substr(0, 500));
            } catch (const std::exception& e) {
                log(std::string("verify command: ") + e.what());
            }
        });
    }

    void handle_generate(const Request& req, Response& res) {
        namespace fs = std::filesystem;
        const User u = require_user(req);
        if (generate_words_.empty()) throw HttpError{404, "this server does not generate images"};
        const io::Json body = parse_body(req);
        std::string prompt = detail::trim_spaces(string_field(body, "prompt"));
        if (!valid_prompt(prompt)) throw HttpError{400, "the prompt must have 1 to 500 characters, no control characters, and not start with '-'"};
        rate_limit(generate_limit_, "u" + std::to_string(u.id), "generations");
        struct Slot {
            std::atomic<int>& n;
            ~Slot() { --n; }
        };
        if (++generating_ > std::max(1, opt_.generate_concurrency)) {
            --generating_;
            throw HttpError{503, "the generator is busy; try again in a moment"};
        }
        Slot slot{generating_};
        const std::string name = format_time_ms(now_ms()).substr(0, 10) + "-" + random_hex(6);
        const fs::path rel = fs::path("generated") / name;
        const fs::path out = opt_.pool / rel;
        fs::create_directories(out);
        std::vector<bool> used;
        std::vector<std::string> argv = expand_command(generate_words_, {{"prompt", prompt}, {"out", out.string()}}, &used);
        if (!used[0]) argv.push_back(prompt);
        log("generate for user " + std::to_string(u.id) + " in " + out.string());
        RunOptions run;
        run.timeout = opt_.generate_timeout;
        run.cwd = out;
        run.env = {{"PICKSCORE_PROMPT", prompt}, {"PICKSCORE_OUT", out.string()}};
        const ProcessResult r = run_process(argv, run);
        std::error_code ec;
        if (!r.ok()) {
            log("generate: the command " + r.describe() + (r.output.empty() ? "" : ": " + r.output.substr(0, 2000)));
            fs::remove_all(out, ec);
            throw HttpError{r.timed_out ? 504 : 502, "the image generator " + r.describe()};
        }
        std::vector<PoolEntry> images;
        std::vector<fs::path> files;
        for (const auto& e : fs::directory_iterator(out, ec))
            if (e.is_regular_file() && is_image_file_name(e.path()) && e.path().filename().string()[0] != '.') files.push_back(e.path());
        std::sort(files.begin(), files.end());
        for (const fs::path& f : files) images.push_back({prompt, rel / f.filename(), generator_from_file_name(f)});
        if (images.size() < 2) {
            fs::remove_all(out, ec);
            throw HttpError{502, "the image generator wrote " + std::to_string(images.size()) + " images; a pair needs two"};
        }
        if (std::ofstream pf(out / "prompt.txt"); pf) pf << prompt << "\n";
        std::vector<std::string> warnings;
        std::optional<Show> s;
        {
            std::lock_guard<std::mutex> lock(db_mu_);
            const std::int64_t prompt_id = store_.add_generated(prompt, images, opt_.pool, validator(), &warnings);
            s = store_.next_show(u.id, opt_.quality, prompt_id);
        }
        for (const std::string& w : warnings) log("generate: " + w);
        schedule_scoring();
        send_json(res, s ? show_json(*s) : done_json());
    }

    ServerOptions opt_;
    Store store_;
    std::mutex db_mu_;  // guards store_
    std::string secret_, admin_token_;
    bool generated_admin_token_ = false;
    std::vector<std::string> generate_words_, verify_words_;
    RateLimiter vote_limit_, pair_limit_, signin_limit_, generate_limit_;
    std::atomic<int> generating_{0};
    ImportReport pool_report_;
    httplib::Server http_;
    std::thread listener_;
    std::atomic<bool> stopping_{false};
    int port_ = 0;
    std::unique_ptr<detail::Worker> scorer_, mailer_;
};

}  // namespace pickscore::collect

// pickscore collect (include/pickscore/collect/): the pieces on their own (pool scanning, command
// lines and processes, signed sessions, the schema), then the server in-process on a loopback
// ephemeral port, driven over HTTP: sign-in with the verification link, pairs, votes, the duplicate
// guard, the hidden repeat check and the flags, rate limits, the predictor hook, --generate (with
// prompts that would be shell injections, and a generator that hangs), the admin API, and every kind
// of bad request (unknown pair ids, forged cookies, oversized and malformed bodies, SQL injection
// attempts, path traversal) answered with a 4xx while the database stays intact; the export read
// back with the training manifest reader (data/dataset.hpp); a concurrent load test (many clients
// for a fixed time: every acknowledged vote in the database exactly once); and `pickscore collect`
// as a subprocess killed with SIGKILL in the middle of a load (the program's path comes from
// PICKSCORE_CLI_PATH in the CMake build, $PICKSCORE_CLI in meson's): no acknowledged vote lost.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <pickscore/collect.hpp>
#include <pickscore/data/dataset.hpp>
#include <pickscore/data/png.hpp>

using namespace pickscore;
namespace fs = std::filesystem;
using Json = io::Json;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "pickscore-collect-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

std::string read_text(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

void write_text(const fs::path& p, const std::string& s) {
    std::ofstream f(p, std::ios::binary);
    f << s;
}

// An 8x8 PNG of one colour.
void write_png(const fs::path& p, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
    io::RgbImage img;
    img.width = img.height = 8;
    img.pixels.resize(8 * 8 * 3);
    for (std::size_t i = 0; i < img.pixels.size(); i += 3) {
        img.pixels[i] = r;
        img.pixels[i + 1] = g;
        img.pixels[i + 2] = b;
    }
    const auto bytes = data::encode_png(img);
    std::ofstream f(p, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

// A pool with one folder per prompt, `per_prompt` images each named <generator>.png.
void make_pool(const fs::path& dir, int prompts, int per_prompt) {
    fs::create_directories(dir);
    for (int p = 0; p < prompts; ++p) {
        const fs::path sub = dir / ("prompt_" + std::to_string(p));
        fs::create_directories(sub);
        write_text(sub / "prompt.txt", "a picture number " + std::to_string(p) + "\n");
        for (int i = 0; i < per_prompt; ++i)
            write_png(sub / ("gen" + std::to_string(i % 3) + "-" + std::to_string(i) + ".png"), std::uint8_t(20 * p + 1),
                      std::uint8_t(9 * i + 3), 77);
    }
}

// A raw HTTP/1.1 request over a socket (the path is sent exactly as given); returns the status.
int raw_status(int port, const std::string& request_line, const std::string& extra_headers = "") {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(std::uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    const std::string req = request_line + "\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + extra_headers + "\r\n";
    REQUIRE(::send(fd, req.data(), req.size(), 0) == ssize_t(req.size()));
    std::string got;
    char buf[1024];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) got.append(buf, std::size_t(n));
    ::close(fd);
    if (got.size() < 12 || got.compare(0, 9, "HTTP/1.1 ") != 0) return -1;
    return std::atoi(got.substr(9, 3).c_str());
}

std::string cookie_from(const httplib::Result& r) {
    const std::string h = r->get_header_value("Set-Cookie");
    return h.substr(0, h.find(';'));
}

httplib::Headers with_cookie(const std::string& cookie) { return {{"Cookie", cookie}}; }

Json parse(const std::string& s) { return io::json::parse(s); }

// The server in-process on 127.0.0.1 and an ephemeral port, with the verification links and the log
// captured.
struct TestServer {
    TempDir dir;
    collect::ServerOptions opt;
    std::unique_ptr<collect::CollectServer> server;
    std::mutex mu;
    std::map<std::string, std::string> links;  // email -> latest link
    std::vector<std::string> log;

    explicit TestServer(int prompts = 2, int per_prompt = 4) {
        make_pool(dir.path / "pool", prompts, per_prompt);
        opt.db = dir.path / "votes.db";
        opt.pool = dir.path / "pool";
        opt.port = 0;
        opt.admin_token = "admin-secret-token";
        opt.votes_per_minute = 0;  // unlimited unless a test sets it
        opt.signins_per_minute = 100000;
        opt.quality.repeat_every = 0;
        opt.log = [this](const std::string& line) {
            std::lock_guard<std::mutex> lock(mu);
            log.push_back(line);
        };
        opt.on_verification_link = [this](const std::string& email, const std::string& link) {
            std::lock_guard<std::mutex> lock(mu);
            links[email] = link;
        };
    }
    ~TestServer() {
        if (server) server->stop();
    }
    void start() {
        server = std::make_unique<collect::CollectServer>(opt);
        server->start();
    }
    int port() const { return server->port(); }
    httplib::Client client() const {
        httplib::Client c("127.0.0.1", port());
        c.set_connection_timeout(5);
        c.set_read_timeout(20);
        return c;
    }
    std::string link_for(std::string email) {
        for (char& ch : email) ch = char(std::tolower(static_cast<unsigned char>(ch)));  // as the server keeps it
        std::lock_guard<std::mutex> lock(mu);
        return links.count(email) ? links[email] : std::string();
    }
    bool logged(const std::string& needle) {
        std::lock_guard<std::mutex> lock(mu);
        for (const auto& l : log)
            if (l.find(needle) != std::string::npos) return true;
        return false;
    }
    // Signs in through the API and the verification link; returns the cookie ("name=value").
    std::string sign_in(const std::string& name, const std::string& email) {
        auto c = client();
        Json body = Json::Object{};
        body.set("name", name);
        body.set("email", email);
        auto r = c.Post("/api/signin", io::json::dump(body), "application/json");
        REQUIRE(r);
        REQUIRE(r->status == 200);
        const std::string link = link_for(email);
        REQUIRE(link.find("/verify?token=") != std::string::npos);
        auto v = c.Get(link.substr(link.find("/verify")).c_str());
        REQUIRE(v);
        REQUIRE(v->status == 303);
        CHECK(v->get_header_value("Location") == "/");
        const std::string cookie = cookie_from(v);
        REQUIRE(cookie.rfind("pickscore_session=", 0) == 0);
        return cookie;
    }
    std::int64_t count(const char* sql) {
        collect::Database db(opt.db);
        return db.scalar(sql, -1);
    }
};

Json get_pair(httplib::Client& c, const std::string& cookie) {
    auto r = c.Get("/api/pair", with_cookie(cookie));
    REQUIRE(r);
    REQUIRE(r->status == 200);
    return parse(r->body);
}

int post_vote(httplib::Client& c, const std::string& cookie, std::int64_t show, const std::string& choice, Json* out = nullptr) {
    Json b = Json::Object{};
    b.set("show_id", show);
    b.set("choice", choice);
    auto r = c.Post("/api/vote", with_cookie(cookie), io::json::dump(b), "application/json");
    if (!r) return -1;
    if (out && !r->body.empty()) *out = parse(r->body);
    return r->status;
}

}  // namespace

TEST_CASE("collect: pool folders, manifests and generator names") {
    CHECK(collect::generator_from_file_name("sdxl.png") == "sdxl");
    CHECK(collect::generator_from_file_name("sdxl-2.png") == "sdxl");
    CHECK(collect::generator_from_file_name("sd_15_3.jpg") == "sd_15");
    CHECK(collect::generator_from_file_name("7.png") == "7");
    CHECK(collect::is_safe_relative_path("a/b.png"));
    CHECK_FALSE(collect::is_safe_relative_path("../b.png"));
    CHECK_FALSE(collect::is_safe_relative_path("a/../../b.png"));
    CHECK_FALSE(collect::is_safe_relative_path("/etc/passwd"));

    TempDir t;
    make_pool(t.path, 2, 3);
    write_png(t.path / "loose.png", 1, 2, 3);
    fs::create_directories(t.path / "generated" / "x");
    write_png(t.path / "generated" / "x" / "a.png", 1, 2, 3);
    const collect::PoolScan s = collect::scan_pool(t.path);
    CHECK_FALSE(s.from_manifest);
    REQUIRE(s.entries.size() == 6);
    CHECK(s.entries[0].prompt == "a picture number 0");
    CHECK(s.entries[0].image == fs::path("prompt_0/gen0-0.png"));
    CHECK(s.entries[0].generator == "gen0");
    REQUIRE(s.warnings.size() == 1);  // loose.png has no prompt
    CHECK(s.warnings[0].find("loose.png") != std::string::npos);

    write_text(t.path / "pool.jsonl",
               "{\"prompt\": \"a cat\", \"image\": \"prompt_0/gen0-0.png\", \"generator\": \"sdxl\"}\n\n"
               "{\"caption\": \"a cat\", \"image\": \"prompt_0/gen1-1.png\", \"model\": \"dalle\"}\n");
    const collect::PoolScan m = collect::scan_pool(t.path);
    CHECK(m.from_manifest);
    REQUIRE(m.entries.size() == 2);
    CHECK(m.entries[1].prompt == "a cat");
    CHECK(m.entries[1].generator == "dalle");
    for (const char* bad : {"{\"prompt\": \"a\", \"image\": \"../outside.png\"}", "{\"prompt\": \"a\", \"image\": \"/etc/passwd\"}",
                            "{\"prompt\": 3, \"image\": \"a.png\"}", "not json"}) {
        write_text(t.path / "pool.jsonl", std::string(bad) + "\n");
        try {
            collect::scan_pool(t.path);
            FAIL("accepted: " << bad);
        } catch (const FormatError& e) {
            CHECK(std::string(e.what()).find("line 1") != std::string::npos);
        }
    }
}

TEST_CASE("collect: command lines are split without a shell, processes time out") {
    using collect::split_command_line;
    CHECK(split_command_line("gen --n 2") == std::vector<std::string>{"gen", "--n", "2"});
    CHECK(split_command_line("a 'b c' \"d 'e'\" f\\ g") == std::vector<std::string>{"a", "b c", "d 'e'", "f g"});
    CHECK(split_command_line("x $(rm -rf /) `y` ; z") == std::vector<std::string>{"x", "$(rm", "-rf", "/)", "`y`", ";", "z"});
    CHECK_THROWS_AS(split_command_line("a 'b"), Error);
    std::vector<bool> used;
    const auto argv = collect::expand_command({"gen", "--prompt={prompt}", "{out}/x"}, {{"prompt", "a {out} b"}, {"out", "/o"}, {"name", "n"}}, &used);
    CHECK(argv == std::vector<std::string>{"gen", "--prompt=a {out} b", "/o/x"});  // a value is not expanded again
    CHECK(used == std::vector<bool>{true, true, false});

    TempDir t;
    const std::string evil = "x\"; touch " + (t.path / "pwned").string() + "; echo \"$(touch " + (t.path / "pwned2").string() + ")";
    collect::ProcessResult r = collect::run_process({"printf", "%s", evil});
    CHECK(r.ok());
    CHECK(r.output == evil);  // one argument, untouched
    CHECK_FALSE(fs::exists(t.path / "pwned"));
    CHECK_FALSE(fs::exists(t.path / "pwned2"));

    r = collect::run_process({"sh", "-c", "exit 3"});
    CHECK(r.exit_status == 3);
    CHECK_FALSE(r.ok());

    collect::RunOptions quick;
    quick.timeout = std::chrono::milliseconds(300);
    const auto t0 = std::chrono::steady_clock::now();
    r = collect::run_process({"sh", "-c", "sleep 30 & sleep 30"}, quick);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(r.timed_out);
    CHECK(secs < 10);  // killed, not waited for (30 s); generous for a loaded machine
    CHECK_THROWS_AS(collect::run_process({"/nonexistent/program"}), Error);

    collect::RunOptions env;
    env.env = {{"PICKSCORE_PROMPT", "hello there"}};
    env.cwd = t.path;
    r = collect::run_process({"sh", "-c", "printf '%s|%s' \"$PICKSCORE_PROMPT\" \"$(pwd)\""}, env);
    CHECK(r.output == "hello there|" + fs::canonical(t.path).string());
}

TEST_CASE("collect: signed sessions reject forged and expired values") {
    const std::string secret = collect::random_hex(32);
    const std::string v = collect::sign_session(secret, 42, 2000);
    CHECK(collect::verify_session(secret, v, 1000) == std::optional<std::int64_t>(42));
    CHECK_FALSE(collect::verify_session(secret, v, 2000));                         // expired
    CHECK_FALSE(collect::verify_session(collect::random_hex(32), v, 1000));        // another secret
    std::string forged = v;
    forged.replace(0, 2, "43");                                                      // another user id, same MAC
    CHECK_FALSE(collect::verify_session(secret, forged, 1000));
    CHECK_FALSE(collect::verify_session(secret, "42", 1000));
    CHECK_FALSE(collect::verify_session(secret, "42.2000.", 1000));
    CHECK_FALSE(collect::verify_session(secret, "-1.2000." + v.substr(v.rfind('.') + 1), 1000));
    CHECK(collect::valid_email("a.b@example.org"));
    CHECK_FALSE(collect::valid_email("a@b@c"));
    CHECK_FALSE(collect::valid_email("x' OR 1=1 --@e.com"));
    CHECK_FALSE(collect::valid_prompt("--output=/etc/passwd"));
    CHECK_FALSE(collect::valid_prompt("line\nbreak"));
    CHECK(collect::valid_prompt("a red cube; rm -rf /"));

    collect::RateLimiter lim(1.0, 2);  // 1 per second, burst 2
    const auto t0 = collect::RateLimiter::Clock::now();
    CHECK(lim.take("k", t0));
    CHECK(lim.take("k", t0));
    CHECK_FALSE(lim.take("k", t0));
    CHECK(lim.take("other", t0));
    CHECK(lim.take("k", t0 + std::chrono::milliseconds(1100)));
}

TEST_CASE("collect: the schema is versioned, foreign and newer databases are refused") {
    TempDir t;
    {
        collect::Store s(t.path / "a.db");
        CHECK(s.db().scalar("PRAGMA user_version", -1) == collect::schema_version);
        CHECK(s.db().scalar("PRAGMA application_id", -1) == collect::database_application_id);
        auto st = s.db().prepare("PRAGMA journal_mode");
        REQUIRE(st.step());
        CHECK(st.text(0) == "wal");
    }
    { collect::Store again(t.path / "a.db"); }  // opening twice is fine
    {
        collect::Database other(t.path / "other.db");
        other.exec("CREATE TABLE t(x)");
    }
    CHECK_THROWS_AS(collect::Store(t.path / "other.db"), FormatError);
    {
        collect::Database newer(t.path / "a.db");
        newer.exec("PRAGMA user_version = 99");
    }
    CHECK_THROWS_WITH_AS(collect::Store(t.path / "a.db"), doctest::Contains("newer"), FormatError);
}

TEST_CASE("collect: sign in, pairs, votes and the duplicate guard over HTTP") {
    TestServer ts(2, 3);  // 2 prompts x 3 images = 6 pairs
    ts.start();
    auto c = ts.client();

    // The page and its files, with the security headers.
    auto page = c.Get("/");
    REQUIRE(page);
    CHECK(page->status == 200);
    CHECK(page->body.find("<script src=\"/app.js\">") != std::string::npos);
    CHECK(page->get_header_value("Content-Security-Policy").find("script-src 'self'") != std::string::npos);
    CHECK(page->get_header_value("X-Content-Type-Options") == "nosniff");
    for (const char* p : {"/app.js", "/app.css", "/admin", "/admin.js"}) {
        auto r = c.Get(p);
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body.size() > 100);
    }
    auto me = c.Get("/api/me");
    REQUIRE(me);
    CHECK(parse(me->body)["signed_in"].as_bool() == false);
    auto nopair = c.Get("/api/pair");
    REQUIRE(nopair);
    CHECK(nopair->status == 401);

    const std::string alice = ts.sign_in("Alice", "Alice@Example.com");
    CHECK(ts.link_for("alice@example.com").size() > 0);  // e-mail addresses are lower-cased
    me = c.Get("/api/me", with_cookie(alice));
    REQUIRE(me);
    Json mj = parse(me->body);
    CHECK(mj["signed_in"].as_bool());
    CHECK(mj["name"].as_string() == "Alice");

    // A verification link works once.
    const std::string link = ts.link_for("alice@example.com");
    auto again = c.Get(link.substr(link.find("/verify")).c_str());
    REQUIRE(again);
    CHECK(again->status == 400);
    auto bogus = c.Get(("/verify?token=" + std::string(64, 'a')).c_str());
    REQUIRE(bogus);
    CHECK(bogus->status == 400);
    CHECK(c.Get("/verify?token=%27%20OR%201%3D1")->status == 400);

    // Pairs: a prompt and two image URLs; the images are served to signed-in users only.
    Json p1 = get_pair(c, alice);
    REQUIRE(p1.find("show_id"));
    CHECK(p1["prompt"].as_string().rfind("a picture number", 0) == 0);
    const std::string left_url = p1["left"].as_string();
    CHECK(left_url.rfind("/img/", 0) == 0);
    auto img = c.Get(left_url.c_str(), with_cookie(alice));
    REQUIRE(img);
    CHECK(img->status == 200);
    CHECK(img->get_header_value("Content-Type") == "image/png");
    CHECK(img->body.compare(1, 3, "PNG") == 0);
    CHECK(c.Get(left_url.c_str())->status == 401);

    Json resp;
    CHECK(post_vote(c, alice, p1["show_id"].as_int64(), "left", &resp) == 200);
    CHECK(resp["ok"].as_bool());
    CHECK(resp.find("pickscore") == nullptr);  // no predictor
    CHECK(post_vote(c, alice, p1["show_id"].as_int64(), "left") == 409);   // the duplicate guard
    CHECK(post_vote(c, alice, p1["show_id"].as_int64(), "right") == 409);  // no second opinion either
    CHECK(ts.count("SELECT COUNT(*) FROM votes") == 1);
    CHECK(ts.count("SELECT COUNT(*) FROM votes WHERE choice = 'left' AND chosen_image IS NOT NULL") == 1);

    // Another user cannot vote on Alice's pair, nor on a pair id that does not exist.
    const std::string bob = ts.sign_in("Bob", "bob@example.com");
    Json p2 = get_pair(c, alice);
    CHECK(post_vote(c, bob, p2["show_id"].as_int64(), "left") == 404);
    CHECK(post_vote(c, alice, 999999, "left") == 404);
    CHECK(post_vote(c, alice, p2["show_id"].as_int64(), "right") == 200);
    Json p3 = get_pair(c, alice);
    CHECK(post_vote(c, alice, p3["show_id"].as_int64(), "tie") == 200);
    Json p4 = get_pair(c, alice);
    CHECK(post_vote(c, alice, p4["show_id"].as_int64(), "skip") == 200);
    CHECK(ts.count("SELECT COUNT(*) FROM votes WHERE user_id = 1") == 4);
    CHECK(ts.count("SELECT COUNT(*) FROM votes WHERE choice = 'tie' AND chosen_image IS NULL") == 1);

    // A user sees each pair once; then the API says done.
    std::set<std::int64_t> pairs_seen;
    for (int i = 0; i < 6; ++i) {
        Json p = get_pair(c, bob);
        if (p.find("done")) break;
        pairs_seen.insert(ts.count(("SELECT pair_id FROM shows WHERE id = " + std::to_string(p["show_id"].as_int64())).c_str()));
        CHECK(post_vote(c, bob, p["show_id"].as_int64(), "left") == 200);
    }
    CHECK(pairs_seen.size() == 6);
    Json done = get_pair(c, bob);
    CHECK(done["done"].as_bool());
    CHECK(done["generate"].as_bool() == false);

    // Sign out clears the cookie.
    auto out = c.Post("/api/signout", with_cookie(bob), "{}", "application/json");
    REQUIRE(out);
    CHECK(out->get_header_value("Set-Cookie").find("Max-Age=0") != std::string::npos);
}

TEST_CASE("collect: bad requests get a 4xx and leave the database intact") {
    TestServer ts(1, 3);
    ts.opt.max_body = 4096;
    ts.start();
    auto c = ts.client();
    const std::string alice = ts.sign_in("Alice", "alice@example.com");
    Json p = get_pair(c, alice);
    const std::int64_t show = p["show_id"].as_int64();
    const std::int64_t users = ts.count("SELECT COUNT(*) FROM users");

    auto post = [&](const std::string& path, const std::string& body, const std::string& cookie,
                    const char* type = "application/json") {
        auto r = cookie.empty() ? c.Post(path.c_str(), body, type) : c.Post(path.c_str(), with_cookie(cookie), body, type);
        REQUIRE(r);
        return r->status;
    };
    // Malformed and mistyped JSON.
    for (const char* body : {"", "{", "{\"show_id\": 1,}", "[1, 2]", "{\"show_id\": \"1\", \"choice\": \"left\"}",
                             "{\"show_id\": 1.5, \"choice\": \"left\"}", "{\"show_id\": -3, \"choice\": \"left\"}",
                             "{\"show_id\": 1, \"choice\": \"LEFT\"}", "{\"show_id\": 1, \"choice\": \"left\", \"show_id\": 2}",
                             "{\"choice\": \"left\"}", "{\"show_id\": 1, \"choice\": \"left\\u0000\"}",
                             "{\"a\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}"})
        CHECK_MESSAGE(post("/api/vote", body, alice) == 400, body);
    CHECK(post("/api/vote", "show_id=1&choice=left", alice, "application/x-www-form-urlencoded") == 415);
    CHECK(post("/api/vote", "{\"show_id\": 1, \"choice\": \"left\"}", alice, "text/plain") == 415);
    // Oversized bodies.
    const std::string big = "{\"name\": \"" + std::string(10000, 'x') + "\", \"email\": \"a@b.c\"}";
    const int big_status = post("/api/signin", big, "");
    CHECK(big_status == 413);
    // Forged, edited and missing sessions.
    const std::string value = alice.substr(alice.find('=') + 1);
    const std::string mac = value.substr(value.rfind('.') + 1);
    const std::string expiry = value.substr(value.find('.') + 1, value.rfind('.') - value.find('.') - 1);
    const std::string vote = "{\"show_id\": " + std::to_string(show) + ", \"choice\": \"left\"}";
    for (const std::string& forged : {std::string("pickscore_session=2.") + expiry + "." + mac, std::string("pickscore_session=1"),
                                      std::string("pickscore_session=1.99999999999.") + mac, std::string("pickscore_session=") + value + "0",
                                      std::string("pickscore_session=' OR '1'='1"), std::string("user_id=1")})
        CHECK_MESSAGE(post("/api/vote", vote, forged) == 401, forged);
    CHECK(post("/api/vote", vote, "") == 401);
    // SQL injection attempts are data: rejected by validation or stored literally.
    CHECK(post("/api/signin", "{\"name\": \"x\", \"email\": \"x' OR 1=1; DROP TABLE votes; --@example.com\"}", "") == 400);
    CHECK(post("/api/vote", "{\"show_id\": \"1; DROP TABLE votes\", \"choice\": \"left\"}", alice) == 400);
    CHECK(post("/api/vote", "{\"show_id\": 1, \"choice\": \"left'); DROP TABLE votes; --\"}", alice) == 400);
    const std::string robert = "Robert'); DROP TABLE users; --";
    CHECK(post("/api/signin", "{\"name\": \"Robert'); DROP TABLE users; --\", \"email\": \"bobby@tables.org\"}", "") == 200);
    const std::string bobby = ts.sign_in(robert, "bobby@tables.org");
    auto me = c.Get("/api/me", with_cookie(bobby));
    REQUIRE(me);
    CHECK(parse(me->body)["name"].as_string() == robert);
    // Path traversal and other URLs that are not images.
    for (const char* line : {"GET /img/../../../../etc/passwd HTTP/1.1", "GET /img/..%2F..%2F..%2Fetc%2Fpasswd HTTP/1.1",
                             "GET /img/%2e%2e/%2e%2e/etc/passwd HTTP/1.1", "GET /../../etc/passwd HTTP/1.1",
                             "GET /app.js/../../../etc/passwd HTTP/1.1", "GET /img/0123456789abcdef0123456789abcdef HTTP/1.1",
                             "GET /img/0123456789ABCDEF0123456789ABCDEF HTTP/1.1", "GET /img/prompt_0%2Fgen0-0.png HTTP/1.1",
                             "GET /pool.jsonl HTTP/1.1", "GET /votes.db HTTP/1.1"}) {
        const int status = raw_status(ts.port(), line, "Cookie: " + alice + "\r\n");
        CHECK_MESSAGE((status >= 400 && status < 500), line << " -> " << status);
    }
    // Unknown pair ids.
    CHECK(post("/api/vote", "{\"show_id\": 123456789, \"choice\": \"left\"}", alice) == 404);
    // The admin API wants the token.
    CHECK(c.Get("/api/admin/stats")->status == 401);
    CHECK(c.Get("/api/admin/stats", {{"Authorization", "Bearer wrong-token-here"}})->status == 401);
    CHECK(c.Get("/api/admin/stats", {{"Authorization", "admin-secret-token"}})->status == 401);
    CHECK(c.Post("/api/admin/flag", "{\"user_id\": 1, \"flagged\": true}", "application/json")->status == 401);
    CHECK(c.Get("/api/admin/stats", {{"Authorization", "Bearer admin-secret-token"}})->status == 200);

    // Nothing above changed the data: the one real vote goes through, the tables are all there.
    CHECK(post("/api/vote", vote, alice) == 200);
    CHECK(ts.count("SELECT COUNT(*) FROM votes") == 1);
    CHECK(ts.count("SELECT COUNT(*) FROM users") == users + 1);  // bobby
    CHECK(ts.count("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'") == 9);
    collect::Database db(ts.opt.db);
    auto st = db.prepare("PRAGMA integrity_check");
    REQUIRE(st.step());
    CHECK(st.text(0) == "ok");
}

TEST_CASE("collect: the hidden repeat check and the fast-vote check flag users") {
    TestServer ts(1, 6);  // 15 pairs
    ts.opt.quality.repeat_every = 3;
    ts.opt.quality.repeat_gap = 1;
    ts.opt.quality.min_repeats = 2;
    ts.opt.quality.max_disagreement = 0.5;
    ts.opt.quality.fast_vote_ms = 0;  // no vote is "fast" in this part
    ts.start();
    auto c = ts.client();
    collect::Database db(ts.opt.db);
    // For a show, the choice that agrees (or, when `agree` is false, disagrees) with the earlier
    // vote it repeats; "left" for a show that is not a repeat.
    auto choose = [&](std::int64_t show, bool agree) -> std::string {
        auto st = db.prepare(
            "SELECT o.chosen_image, s.left_image, s.right_image FROM shows s JOIN votes o ON o.show_id = s.repeat_of WHERE s.id = ?1");
        st.bind(1, show);
        if (!st.step()) return "left";
        const std::int64_t before = st.int64(0);
        const bool was_left_now = before == st.int64(1);  // the image chosen before is now on the left
        return (was_left_now == agree) ? "left" : "right";
    };
    auto run_user = [&](const std::string& email, bool agree) {
        const std::string cookie = ts.sign_in("U", email);
        int repeats = 0;
        for (int i = 0; i < 9; ++i) {
            Json p = get_pair(c, cookie);
            REQUIRE(p.find("show_id"));
            const std::int64_t show = p["show_id"].as_int64();
            if (db.scalar("SELECT COUNT(*) FROM shows WHERE id = ?1 AND repeat_of IS NOT NULL", 0, show)) ++repeats;
            CHECK(post_vote(c, cookie, show, choose(show, agree)) == 200);
        }
        return repeats;
    };
    CHECK(run_user("steady@example.com", true) == 3);  // shows 3, 6, 9
    CHECK(run_user("random@example.com", false) == 3);
    // The repeats look like any other pair: the same pair, sides swapped.
    CHECK(db.scalar("SELECT COUNT(*) FROM shows r JOIN shows o ON o.id = r.repeat_of "
                    "WHERE r.pair_id = o.pair_id AND r.left_image = o.right_image AND r.right_image = o.left_image", 0) == 6);
    CHECK(db.scalar("SELECT flagged FROM users WHERE email = 'steady@example.com'", -1) == 0);
    CHECK(db.scalar("SELECT repeats FROM users WHERE email = 'steady@example.com'", -1) == 3);
    CHECK(db.scalar("SELECT flagged FROM users WHERE email = 'random@example.com'", -1) == 1);
    CHECK(db.scalar("SELECT repeat_disagreements FROM users WHERE email = 'random@example.com'", -1) == 3);

    // The admin can override the flag, and return it to the automatic rule.
    auto c2 = ts.client();
    const httplib::Headers admin = {{"Authorization", "Bearer admin-secret-token"}};
    const std::int64_t steady = db.scalar("SELECT id FROM users WHERE email = 'steady@example.com'", 0);
    auto flag = [&](const std::string& value) {
        auto r = c2.Post("/api/admin/flag", admin, "{\"user_id\": " + std::to_string(steady) + ", \"flagged\": " + value + "}",
                         "application/json");
        REQUIRE(r);
        return r->status;
    };
    CHECK(flag("true") == 200);
    CHECK(db.scalar("SELECT flagged FROM users WHERE id = ?1", -1, steady) == 1);
    CHECK(flag("null") == 200);
    CHECK(db.scalar("SELECT flagged FROM users WHERE id = ?1", -1, steady) == 0);
    CHECK(flag("\"yes\"") == 400);
    CHECK(c2.Post("/api/admin/flag", admin, "{\"user_id\": 4242, \"flagged\": true}", "application/json")->status == 404);

    auto stats = c2.Get("/api/admin/stats", admin);
    REQUIRE(stats);
    Json s = parse(stats->body);
    CHECK(s["totals"]["votes"].as_int64() == 12);  // repeats are not counted as votes
    CHECK(s["totals"]["flagged_users"].as_int64() == 1);
    CHECK(s["users"].size() == 2);
    // Both users voted "left" on the same first pairs? Not necessarily the same pairs; the numbers
    // must at least be consistent.
    CHECK(s["agreement"]["between_users"]["vote_pairs"].as_int64() >= 0);
    auto stats_clean = c2.Get("/api/admin/stats?exclude_flagged=1", admin);
    REQUIRE(stats_clean);
    CHECK(parse(stats_clean->body)["totals"]["votes"].as_int64() == 6);
}

TEST_CASE("collect: implausibly fast voters are flagged, rate limits answer 429") {
    TestServer ts(1, 6);
    ts.opt.quality.fast_vote_ms = 3600 * 1000;  // every vote counts as fast
    ts.opt.quality.min_votes_for_speed = 4;
    ts.opt.votes_per_minute = 6;  // 0.1 per second, burst 5
    ts.opt.vote_burst = 5;
    ts.start();
    auto c = ts.client();
    const std::string u = ts.sign_in("Speedy", "speedy@example.com");
    int ok = 0, limited = 0;
    for (int i = 0; i < 8; ++i) {
        Json p = get_pair(c, u);
        const int st = post_vote(c, u, p["show_id"].as_int64(), "right");
        ok += st == 200;
        limited += st == 429;
    }
    CHECK(ok == 5);  // the burst
    CHECK(limited == 3);
    CHECK(ts.count("SELECT flagged FROM users WHERE email = 'speedy@example.com'") == 1);
    collect::Database db(ts.opt.db);
    auto st = db.prepare("SELECT flag_reason FROM users WHERE email = 'speedy@example.com'");
    REQUIRE(st.step());
    CHECK(st.text(0).find("faster than") != std::string::npos);
}

TEST_CASE("collect: the predictor hook shows what PickScore would have chosen") {
    TestServer ts(1, 3);
    // A stand-in for PickScore: the image's green value (the pool's images differ in green).
    ts.opt.predictor = [](const std::string&, const std::vector<fs::path>& images) {
        std::vector<double> s;
        for (const auto& p : images) s.push_back(double(io::load_image(p).pixels[1]) / 10.0);
        return s;
    };
    ts.opt.model_name = "fake";
    ts.start();
    ts.server->wait_for_scores();
    CHECK(ts.count("SELECT COUNT(*) FROM image_scores") == 3);
    auto c = ts.client();
    const std::string u = ts.sign_in("P", "p@example.com");
    auto me = c.Get("/api/me", with_cookie(u));
    CHECK(parse(me->body)["pickscore"].as_bool());
    int agree = 0;
    for (int i = 0; i < 3; ++i) {
        Json p = get_pair(c, u);
        Json r;
        // Always vote for the image the stand-in prefers: agreement must come out 100%.
        collect::Database db(ts.opt.db);
        const double sl = db.scalar("SELECT CAST(score * 1000 AS INTEGER) FROM image_scores s JOIN shows w ON w.left_image = s.image_id WHERE w.id = ?1", 0, p["show_id"].as_int64());
        const double sr = db.scalar("SELECT CAST(score * 1000 AS INTEGER) FROM image_scores s JOIN shows w ON w.right_image = s.image_id WHERE w.id = ?1", 0, p["show_id"].as_int64());
        const std::string mine = sl > sr ? "left" : "right";
        REQUIRE(post_vote(c, u, p["show_id"].as_int64(), mine, &r) == 200);
        REQUIRE(r.find("pickscore"));
        const Json& ps = r["pickscore"];
        CHECK(ps["choice"].as_string() == mine);
        const double pl = ps["probability_left"].as_double();
        const double want = 1.0 / (1.0 + std::exp(ps["right"].as_double() - ps["left"].as_double()));
        CHECK(pl == doctest::Approx(want).epsilon(1e-12));  // the softmax of the two scores, in double
        agree += ps["choice"].as_string() == mine;
    }
    CHECK(agree == 3);
    auto stats = c.Get("/api/admin/stats", {{"Authorization", "Bearer admin-secret-token"}});
    Json s = parse(stats->body);
    CHECK(s["agreement"]["pickscore"]["votes"].as_int64() == 3);
    CHECK(s["agreement"]["pickscore"]["agreement"].as_double() == 1.0);
    CHECK(s["model"].as_string() == "fake");
}

TEST_CASE("collect: --generate runs the command without a shell and adds its images") {
    TestServer ts(0, 0);  // an empty pool: only generated images
    const fs::path fixture = ts.dir.path / "fixture";
    fs::create_directories(fixture);
    write_png(fixture / "a.png", 200, 10, 10);
    write_png(fixture / "b.png", 10, 200, 10);
    const fs::path script = ts.dir.path / "gen.sh";
    const fs::path args_file = ts.dir.path / "args.txt";
    // Writes its arguments (one per line) and two images named after two "generators".
    write_text(script, "for a in \"$@\"; do printf '%s\\n' \"$a\"; done > '" + args_file.string() + "'\n" +
                           "cp '" + (fixture / "a.png").string() + "' \"$PICKSCORE_OUT/modelx.png\"\n" +
                           "cp '" + (fixture / "b.png").string() + "' \"$2/modely.png\"\n");
    ts.opt.generate = "sh '" + script.string() + "' {prompt} {out}";
    ts.start();
    auto c = ts.client();
    const std::string u = ts.sign_in("G", "g@example.com");
    Json first = get_pair(c, u);
    CHECK(first["done"].as_bool());
    CHECK(first["generate"].as_bool());

    const std::string evil = "a cat\"; touch " + (ts.dir.path / "pwned").string() + "; echo \"$(touch " +
                             (ts.dir.path / "pwned2").string() + ") `id` 'x' \\";
    Json body = Json::Object{};
    body.set("prompt", evil);
    auto r = c.Post("/api/generate", with_cookie(u), io::json::dump(body), "application/json");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    Json p = parse(r->body);
    CHECK(p["prompt"].as_string() == evil);
    CHECK_FALSE(fs::exists(ts.dir.path / "pwned"));
    CHECK_FALSE(fs::exists(ts.dir.path / "pwned2"));
    const std::string args = read_text(args_file);
    CHECK(args.substr(0, args.find('\n')) == evil);  // the prompt arrived as one argument, untouched
    CHECK(post_vote(c, u, p["show_id"].as_int64(), "left") == 200);
    CHECK(ts.count("SELECT COUNT(*) FROM images WHERE origin = 'generated'") == 2);
    collect::Database db(ts.opt.db);
    auto gens = db.prepare("SELECT generator FROM images ORDER BY generator");
    std::vector<std::string> g;
    while (gens.step()) g.push_back(gens.text(0));
    CHECK(g == std::vector<std::string>{"modelx", "modely"});

    // Prompts that are not allowed.
    for (const char* bad : {"", "-rf /", "--help", "line\nbreak"}) {
        Json b = Json::Object{};
        b.set("prompt", bad);
        auto rr = c.Post("/api/generate", with_cookie(u), io::json::dump(b), "application/json");
        REQUIRE(rr);
        CHECK_MESSAGE(rr->status == 400, bad);
    }
    CHECK(c.Post("/api/generate", "{\"prompt\": \"x\"}", "application/json")->status == 401);
}

TEST_CASE("collect: a generator that hangs is killed; one that fails is reported") {
    TestServer ts(0, 0);
    ts.opt.generate = "sh -c 'sleep 30' sh";
    ts.opt.generate_timeout = std::chrono::seconds(1);
    ts.start();
    auto c = ts.client();
    const std::string u = ts.sign_in("H", "h@example.com");
    const auto t0 = std::chrono::steady_clock::now();
    auto r = c.Post("/api/generate", with_cookie(u), "{\"prompt\": \"a slow cube\"}", "application/json");
    REQUIRE(r);
    CHECK(r->status == 504);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(15));  // not the 30 s of sleep
    CHECK(ts.count("SELECT COUNT(*) FROM images") == 0);
    CHECK(ts.logged("timed out"));
}

TEST_CASE("collect: the export is the training manifest with Pick-a-Pic's columns") {
    TestServer ts(2, 3);
    ts.opt.quality.repeat_every = 4;
    ts.opt.quality.repeat_gap = 1;
    ts.start();
    auto c = ts.client();
    const std::string a = ts.sign_in("A", "a@example.com");
    const std::string b = ts.sign_in("B", "b@example.com");
    std::map<std::int64_t, std::string> choice_of;  // vote id -> choice
    const char* choices[] = {"left", "right", "tie", "skip", "left", "right"};
    int n = 0;
    for (const std::string& u : {a, b}) {
        for (int i = 0; i < 6; ++i) {
            Json p = get_pair(c, u);
            Json r;
            REQUIRE(post_vote(c, u, p["show_id"].as_int64(), choices[(i + n) % 6], &r) == 200);
            choice_of[r["vote_id"].as_int64()] = choices[(i + n) % 6];
        }
        ++n;
    }
    // Flag B by hand.
    const std::int64_t bid = ts.count("SELECT id FROM users WHERE email = 'b@example.com'");
    REQUIRE(c.Post("/api/admin/flag", {{"Authorization", "Bearer admin-secret-token"}},
                   "{\"user_id\": " + std::to_string(bid) + ", \"flagged\": true}", "application/json")
                ->status == 200);
    const std::int64_t expected = ts.count("SELECT COUNT(*) FROM votes WHERE is_repeat = 0 AND choice != 'skip'");
    const std::int64_t expected_a = ts.count("SELECT COUNT(*) FROM votes v JOIN users u ON u.id = v.user_id "
                                             "WHERE is_repeat = 0 AND choice != 'skip' AND u.flagged = 0");
    CHECK(ts.count("SELECT COUNT(*) FROM votes WHERE is_repeat = 1") == 2);  // one repeat each (4th show)
    const fs::path out = ts.dir.path / "export";
    collect::ExportOptions eo;
    eo.db = ts.opt.db;
    eo.out = out;
    const collect::ExportReport rep = collect::export_preferences(eo);  // while the server runs
    CHECK(rep.rows == expected);
    CHECK(rep.users == 2);

    const std::string text = read_text(rep.file);
    std::istringstream lines(text);
    std::string line;
    std::map<std::string, std::int64_t> per_prompt;
    std::vector<Json> rows;
    while (std::getline(lines, line)) rows.push_back(parse(line));
    REQUIRE(std::int64_t(rows.size()) == expected);
    for (const Json& j : rows) ++per_prompt[j["caption"].as_string()];
    for (const Json& j : rows) {
        const std::string ch = choice_of.at(j["ranking_id"].as_int64());
        const double l0 = ch == "left" ? 1.0 : ch == "right" ? 0.0 : 0.5;
        CHECK(j["label_0"].as_double() == l0);
        CHECK(j["label_1"].as_double() == 1.0 - l0);
        CHECK(j["labels"][0].as_double() == l0);
        CHECK(j["prompt"].as_string() == j["caption"].as_string());
        CHECK(j["num_example_per_prompt"].as_int64() == per_prompt[j["caption"].as_string()]);
        CHECK(j["best_image_uid"].as_string() ==
              (ch == "left" ? j["image_0_uid"].as_string() : ch == "right" ? j["image_1_uid"].as_string() : std::string()));
        CHECK(j["image_0"].as_string() == "images/" + j["image_0_uid"].as_string() + ".png");
        CHECK(fs::is_regular_file(out / j["image_0"].as_string()));
        CHECK(fs::is_regular_file(out / j["image_1"].as_string()));
        CHECK(j["model_0"].as_string().rfind("gen", 0) == 0);
        CHECK(j["has_label"].as_bool());
        CHECK(j["are_different"].as_bool());  // the pool's images all differ
        CHECK(j["created_at"].as_string().size() == 23);
        CHECK(j["user_id"].is_integer());
        CHECK(j["split"].as_string() == "train");
    }
    // The training side reads it: data::read_manifest (helper O's JSONL manifest reader).
    const std::vector<data::ManifestRow> m = data::read_manifest(rep.file);
    REQUIRE(std::int64_t(m.size()) == expected);
    for (std::size_t i = 0; i < m.size(); ++i) {
        CHECK(m[i].caption == rows[i]["caption"].as_string());
        CHECK(m[i].label[0] == float(rows[i]["label_0"].as_double()));
        CHECK(fs::is_regular_file(m[i].image[0]));
        CHECK(m[i].num_example_per_prompt == float(per_prompt[m[i].caption]));
        CHECK(m[i].user_id == rows[i]["user_id"].as_int64());
        CHECK(m[i].ranking_id == rows[i]["ranking_id"].as_int64());
    }
    // ... and the way `pickscore train --data OUT` opens it: the folder (every *.jsonl in it) as a
    // data set whose records carry the copied images' bytes.
    const data::Dataset ds = data::Dataset::open(out);
    REQUIRE(ds.size() == expected);
    for (std::int64_t i = 0; i < ds.size(); ++i) {
        const data::Record r = ds.get(i);
        const Json& j = rows[std::size_t(i)];
        CHECK(r.caption == j["caption"].as_string());
        CHECK(r.label[0] == float(j["label_0"].as_double()));
        CHECK(r.label[1] == float(j["label_1"].as_double()));
        CHECK(r.split == data::Split::train);
        CHECK(r.ranking_id == j["ranking_id"].as_int64());
        for (std::size_t k = 0; k < 2; ++k) {
            REQUIRE(r.image[k].size() > 8);
            CHECK(r.image[k][1] == 'P');  // a PNG, as in the pool ("\x89PNG")
            CHECK(r.image[k].size() == fs::file_size(out / j[k == 0 ? "image_0" : "image_1"].as_string()));
        }
    }

    eo.exclude_flagged = true;
    eo.out = ts.dir.path / "export_clean";
    const collect::ExportReport clean = collect::export_preferences(eo);
    CHECK(clean.rows == expected_a);
    CHECK(clean.flagged_votes_left_out == expected - expected_a);
    CHECK(clean.users == 1);
    CHECK(data::read_manifest(clean.file).size() == std::size_t(expected_a));
}

TEST_CASE("collect: concurrent clients for a fixed time: every acknowledged vote exactly once") {
    TestServer ts(1, 24);  // 276 pairs
    ts.opt.threads = 16;
    ts.start();
    constexpr int clients = 12;
    std::vector<std::string> cookies;
    for (int i = 0; i < clients; ++i) {
        const std::string n = std::to_string(i);  // (not "x" + std::to_string(i): GCC 12's -Wrestrict false positive)
        cookies.push_back(ts.sign_in(std::string("L").append(n), std::string("load").append(n).append("@example.com")));
    }

    struct Ack {
        std::int64_t show, vote;
        std::string choice;
    };
    std::mutex mu;
    std::vector<Ack> acks;
    std::atomic<int> unexpected{0}, duplicates_refused{0};
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(2500);
    std::vector<std::thread> threads;
    for (int i = 0; i < clients; ++i)
        threads.emplace_back([&, i] {
            std::mt19937 rng(std::uint32_t(i + 1));
            httplib::Client c("127.0.0.1", ts.port());
            c.set_read_timeout(30);
            const char* choices[] = {"left", "right", "tie", "skip"};
            while (std::chrono::steady_clock::now() < deadline) {
                auto pr = c.Get("/api/pair", with_cookie(cookies[std::size_t(i)]));
                if (!pr || pr->status != 200) {
                    ++unexpected;
                    continue;
                }
                const Json p = parse(pr->body);
                if (p.find("done")) break;
                const std::int64_t show = p["show_id"].as_int64();
                const std::string choice = choices[rng() % 4];
                Json r;
                const int st = post_vote(c, cookies[std::size_t(i)], show, choice, &r);
                if (st != 200) {
                    ++unexpected;
                    continue;
                }
                {
                    std::lock_guard<std::mutex> lock(mu);
                    acks.push_back({show, r["vote_id"].as_int64(), choice});
                }
                if (rng() % 4 == 0) {  // a double submission must be refused
                    if (post_vote(c, cookies[std::size_t(i)], show, choice) == 409) ++duplicates_refused;
                    else ++unexpected;
                }
            }
        });
    // Meanwhile, the same pair posted by two connections at once: exactly one wins.
    std::atomic<int> race_ok{0}, race_dup{0};
    {
        const std::string u = ts.sign_in("Racer", "racer@example.com");
        httplib::Client c("127.0.0.1", ts.port());
        for (int k = 0; k < 10; ++k) {
            const std::int64_t show = get_pair(c, u)["show_id"].as_int64();
            std::atomic<bool> go{false};
            std::vector<std::thread> two;
            for (int j = 0; j < 2; ++j)
                two.emplace_back([&] {
                    httplib::Client cj("127.0.0.1", ts.port());
                    while (!go) std::this_thread::yield();
                    const int st = post_vote(cj, u, show, "tie");
                    if (st == 200) ++race_ok;
                    else if (st == 409) ++race_dup;
                });
            go = true;
            for (auto& t : two) t.join();
        }
    }
    for (auto& t : threads) t.join();
    ts.server->stop();

    CHECK(unexpected == 0);
    CHECK(race_ok == 10);
    CHECK(race_dup == 10);
    MESSAGE(acks.size() << " votes acknowledged by " << clients << " clients in 2.5 s, " << duplicates_refused.load() << " duplicates refused");
    REQUIRE(acks.size() >= 20);  // the test means nothing without some load
    collect::Database db(ts.opt.db);
    std::int64_t missing = 0;
    for (const Ack& a : acks) {
        auto st = db.prepare("SELECT COUNT(*), MIN(choice), MIN(id) FROM votes WHERE show_id = ?1");
        st.bind(1, a.show);
        REQUIRE(st.step());
        if (st.int64(0) != 1 || st.text(1) != a.choice || st.int64(2) != a.vote) ++missing;
    }
    CHECK(missing == 0);
    // Nothing beyond the acknowledged votes (every request was answered here) and the race's ten.
    CHECK(db.scalar("SELECT COUNT(*) FROM votes", -1) == std::int64_t(acks.size()) + 10);
    CHECK(db.scalar("SELECT COUNT(*) FROM (SELECT show_id FROM votes GROUP BY show_id HAVING COUNT(*) > 1)", -1) == 0);
}

namespace {

// The pickscore program: PICKSCORE_CLI_PATH (the CMake build) or $PICKSCORE_CLI (meson's test());
// empty when the build has no examples (the SIGKILL test is then skipped).
std::string cli_path() {
#ifdef PICKSCORE_CLI_PATH
    return PICKSCORE_CLI_PATH;
#else
    const char* env = std::getenv("PICKSCORE_CLI");
    return env ? env : "";
#endif
}

// Starts `pickscore collect` with stderr into log; returns its pid.
pid_t spawn_cli(const std::vector<std::string>& args, const fs::path& log) {
    std::vector<std::string> all{cli_path(), "collect"};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    REQUIRE(rc == 0);
    return pid;
}

// Waits for a line containing `needle` in the log; returns the text after it.
std::string wait_for_log(const fs::path& log, const std::string& needle, double seconds = 20) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
        const std::string text = read_text(log);
        const std::size_t at = text.find(needle);
        if (at != std::string::npos) {
            const std::size_t eol = text.find('\n', at);
            if (eol != std::string::npos) return text.substr(at + needle.size(), eol - at - needle.size());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL("no '" << needle << "' in the log:\n" << read_text(log));
    return {};
}

}  // namespace

TEST_CASE("collect: SIGKILL in the middle of a load loses no acknowledged vote") {
    if (cli_path().empty()) {
        MESSAGE("skipped: no pickscore program (PICKSCORE_CLI_PATH / $PICKSCORE_CLI)");
        return;
    }
    TempDir t;
    make_pool(t.path / "pool", 1, 20);
    const fs::path db_path = t.path / "votes.db", log = t.path / "server.log";
    const std::vector<std::string> args = {"--db", db_path.string(), "--pool", (t.path / "pool").string(), "--port", "0",
                                           "--votes-per-minute", "0", "--signins-per-minute", "100000", "--admin-token", "crash-test-token"};
    pid_t pid = spawn_cli(args, log);
    const std::string where = wait_for_log(log, "listening on http://127.0.0.1:");
    const int port = std::atoi(where.c_str());
    REQUIRE(port > 0);

    constexpr int clients = 6;
    std::vector<std::string> cookies;
    {
        httplib::Client c("127.0.0.1", port);
        for (int i = 0; i < clients; ++i) {
            const std::string email = "crash" + std::to_string(i) + "@example.com";
            auto r = c.Post("/api/signin", "{\"name\": \"C\", \"email\": \"" + email + "\"}", "application/json");
            REQUIRE(r);
            REQUIRE(r->status == 200);
            const std::string link = wait_for_log(log, "verification link for " + email + ": ");
            auto v = c.Get(link.substr(link.find("/verify")).c_str());
            REQUIRE(v);
            REQUIRE(v->status == 303);
            cookies.push_back(cookie_from(v));
        }
    }
    std::mutex mu;
    std::vector<std::pair<std::int64_t, std::string>> acks;
    std::atomic<bool> killed{false};
    std::vector<std::thread> threads;
    for (int i = 0; i < clients; ++i)
        threads.emplace_back([&, i] {
            httplib::Client c("127.0.0.1", port);
            c.set_connection_timeout(2);
            c.set_read_timeout(5);
            const char* choices[] = {"left", "right", "tie"};
            for (int k = 0;; ++k) {  // until the server is gone
                auto pr = c.Get("/api/pair", with_cookie(cookies[std::size_t(i)]));
                if (!pr || pr->status != 200) break;
                const Json p = parse(pr->body);
                if (p.find("done")) break;
                const std::int64_t show = p["show_id"].as_int64();
                const std::string choice = choices[k % 3];
                if (post_vote(c, cookies[std::size_t(i)], show, choice) != 200) break;
                std::lock_guard<std::mutex> lock(mu);
                acks.push_back({show, choice});
            }
        });
    // Kill once a good number of votes are in (or after a while on a slow machine).
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
        {
            std::lock_guard<std::mutex> lock(mu);
            if (acks.size() >= 150 || std::chrono::steady_clock::now() > end) break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    REQUIRE(::kill(pid, SIGKILL) == 0);
    killed = true;
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status));
    for (auto& th : threads) th.join();
    MESSAGE(acks.size() << " votes acknowledged before SIGKILL");
    REQUIRE(acks.size() >= 10);

    std::int64_t counted = 0;
    {
        collect::Database db(db_path);  // recovers from the WAL
        auto ic = db.prepare("PRAGMA integrity_check");
        REQUIRE(ic.step());
        CHECK(ic.text(0) == "ok");
        std::int64_t missing = 0;
        for (const auto& [show, choice] : acks) {
            auto st = db.prepare("SELECT COUNT(*), MIN(choice) FROM votes WHERE show_id = ?1");
            st.bind(1, show);
            REQUIRE(st.step());
            if (st.int64(0) != 1 || st.text(1) != choice) ++missing;
        }
        CHECK(missing == 0);
        // At most the requests in flight at the kill (one per client) went in unacknowledged.
        const std::int64_t total = db.scalar("SELECT COUNT(*) FROM votes", -1);
        CHECK(total >= std::int64_t(acks.size()));
        CHECK(total <= std::int64_t(acks.size()) + clients);
        counted = db.scalar("SELECT COUNT(*) FROM votes WHERE is_repeat = 0", -1);  // what the admin page counts
    }
    // The server starts again on the same database, keeps the votes, and stops cleanly on SIGTERM.
    pid = spawn_cli(args, log);
    const int port2 = std::atoi(wait_for_log(log, "listening on http://127.0.0.1:").c_str());
    {
        httplib::Client c("127.0.0.1", port2);
        auto s = c.Get("/api/admin/stats", {{"Authorization", "Bearer crash-test-token"}});
        REQUIRE(s);
        CHECK(parse(s->body)["totals"]["votes"].as_int64() == counted);
    }
    REQUIRE(::kill(pid, SIGTERM) == 0);
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

#!/usr/bin/env python3
"""The voting page of `pickscore collect` in a real browser: headless Chromium (Debian's `chromium`
package), driven over the DevTools protocol with a WebSocket client written here on the standard
library (no pip packages, no downloaded browsers).

It builds a small image pool, starts `pickscore collect` on a free port, and then, through the page:
types a name and an e-mail address and clicks "send", opens the verification link that the server
wrote to its log, votes left (mouse click on the button), right (the → key) and tie (mouse click),
and checks the database rows: one vote per pair shown, with those choices and the right images. It
also looks at the page at a phone's size (both images side by side, inside the screen). Screenshots
go to --work (the build folder). Exits 0 on success, 1 on failure, 77 (skipped) when no Chromium is
installed.

    python3 tests/collect_browser_test.py --cli build/examples/pickscore --work build/tests/collect_browser
"""
import argparse
import base64
import json
import os
import re
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import time
import urllib.request
import zlib

SKIP = 77


class Failure(Exception):
    pass


def png_bytes(width, height, rgb):
    """A PNG of one colour."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


class WebSocket:
    """Just enough of RFC 6455 for the DevTools protocol: text frames, masked when sent."""

    def __init__(self, url, timeout=30):
        m = re.match(r"ws://([^/:]+):(\d+)(/.*)", url)
        if not m:
            raise Failure(f"unexpected WebSocket URL {url}")
        host, port, path = m.group(1), int(m.group(2)), m.group(3)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            got = self.sock.recv(4096)
            if not got:
                raise Failure("the DevTools WebSocket closed during the handshake")
            head += got
        head, self.buf = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise Failure(f"WebSocket handshake refused: {head[:200]!r}")

    def _read(self, n):
        while len(self.buf) < n:
            got = self.sock.recv(1 << 16)
            if not got:
                raise Failure("the DevTools WebSocket closed")
            self.buf += got
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, text):
        data = text.encode()
        header = bytes([0x81])
        n = len(data)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self):
        message = b""
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x8:
                raise Failure("the browser closed the DevTools connection")
            if opcode in (0x9, 0xA):  # ping / pong: not used by Chromium here
                continue
            message += payload
            if b0 & 0x80:
                return message.decode()


class DevTools:
    def __init__(self, ws_url):
        self.ws = WebSocket(ws_url)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise Failure(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def evaluate(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise Failure(f"JavaScript error in {expression!r}: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")

    def wait_for(self, expression, what, timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            try:
                value = self.evaluate(expression)
            except Failure:  # e.g. no document.body yet while a page loads
                value = None
            if value:
                return value
            time.sleep(0.05)
        raise Failure(f"timed out waiting for {what} ({expression}); page: {self.evaluate('document.documentElement.outerHTML')[:2000]}")

    def center(self, element_id):
        r = self.evaluate(f"(() => {{ const b = document.getElementById({json.dumps(element_id)}).getBoundingClientRect();"
                          f" return [b.left + b.width / 2, b.top + b.height / 2]; }})()")
        return r[0], r[1]

    def click(self, element_id):
        x, y = self.center(element_id)
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            extra = {"button": "left", "clickCount": 1} if kind != "mouseMoved" else {}
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, **extra)

    def key(self, key, code, keycode):
        self.call("Input.dispatchKeyEvent", type="rawKeyDown", key=key, code=code, windowsVirtualKeyCode=keycode)
        self.call("Input.dispatchKeyEvent", type="keyUp", key=key, code=code, windowsVirtualKeyCode=keycode)

    def type_into(self, element_id, text):
        self.evaluate(f"document.getElementById({json.dumps(element_id)}).focus()")
        self.call("Input.insertText", text=text)

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))


def wait_for_log(path, pattern, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        with open(path, encoding="utf-8", errors="replace") as f:
            m = re.search(pattern, f.read())
        if m:
            return m
        time.sleep(0.05)
    with open(path, encoding="utf-8", errors="replace") as f:
        raise Failure(f"no match for {pattern!r} in the server log:\n{f.read()}")


def run(args):
    chromium = args.chromium or next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    if not chromium:
        print("SKIP: no chromium installed (Debian: apt-get install chromium)")
        return SKIP
    work = os.path.abspath(args.work)
    shutil.rmtree(work, ignore_errors=True)
    pool = os.path.join(work, "pool")
    for p, prompt in enumerate(["a red cube on a table", "a blue bird in the snow"]):
        folder = os.path.join(pool, f"prompt_{p}")
        os.makedirs(folder)
        with open(os.path.join(folder, "prompt.txt"), "w") as f:
            f.write(prompt + "\n")
        for i, gen in enumerate(["alpha", "beta", "gamma"]):
            with open(os.path.join(folder, f"{gen}.png"), "wb") as f:
                f.write(png_bytes(64, 64, (60 + 80 * i, 40 + 100 * p, 200 - 60 * i)))
    db = os.path.join(work, "votes.db")
    log_path = os.path.join(work, "server.log")
    procs = []
    try:
        with open(log_path, "w") as log:
            server = subprocess.Popen([args.cli, "collect", "--db", db, "--pool", pool, "--port", "0",
                                       "--admin-token", "browser-test-token", "--repeat-every", "0"],
                                      stdout=log, stderr=subprocess.STDOUT)
        procs.append(server)
        url = wait_for_log(log_path, r"listening on (http://127\.0\.0\.1:\d+)").group(1)

        profile = os.path.join(work, "profile")
        cmd = [chromium, "--headless", "--remote-debugging-port=0", f"--user-data-dir={profile}", "--no-first-run",
               "--no-default-browser-check", "--disable-gpu", "--disable-extensions", "--disable-sync",
               "--disable-background-networking", "--disable-dev-shm-usage", "--mute-audio", "--window-size=1200,900",
               "about:blank"]
        if os.geteuid() == 0:
            cmd.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root (containers)
        browser = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "chromium.log"), "w"))
        procs.append(browser)
        port_file = os.path.join(profile, "DevToolsActivePort")
        end = time.time() + 60
        while not (os.path.exists(port_file) and open(port_file).read().count("\n") >= 1):
            if browser.poll() is not None or time.time() > end:
                raise Failure("chromium did not start; see " + os.path.join(work, "chromium.log"))
            time.sleep(0.1)
        devtools_port = int(open(port_file).read().split("\n")[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{devtools_port}/json/list", timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        dt = DevTools(page["webSocketDebuggerUrl"])
        dt.call("Page.enable")

        # Sign in: type the name and address, click the button.
        dt.call("Page.navigate", url=url + "/")
        dt.wait_for("document.body.dataset.view === 'signin'", "the sign-in form")
        dt.type_into("name", "Browser Tester")
        dt.type_into("email", "browser@example.com")
        dt.click("signin-button")
        dt.wait_for("document.body.dataset.signin === 'sent'", "the sign-in confirmation")
        link = wait_for_log(log_path, r"verification link for browser@example\.com: (\S+)").group(1)
        dt.call("Page.navigate", url=link)
        images_ready = ("document.body.dataset.view === 'vote' && document.getElementById('pair').dataset.showId &&"
                        " ['left', 'right'].every(id => { const i = document.getElementById(id);"
                        " return i.complete && i.naturalWidth === 64; })")
        dt.wait_for(images_ready, "the first pair")
        if dt.evaluate("document.getElementById('who').textContent") != "Browser Tester":
            raise Failure("the page does not show the signed-in name")

        shown = []
        for how in ("click btn-left", "key ArrowRight", "click btn-tie"):
            show_id = int(dt.evaluate("document.getElementById('pair').dataset.showId"))
            prompt = dt.evaluate("document.getElementById('prompt').textContent")
            if prompt not in ("a red cube on a table", "a blue bird in the snow"):
                raise Failure(f"unexpected prompt on the page: {prompt!r}")
            shown.append(show_id)
            kind, target = how.split()
            if kind == "click":
                dt.click(target)
            else:
                dt.key(target, target, 39)
            dt.wait_for(f"document.getElementById('pair').dataset.showId !== '{show_id}' && ({images_ready})",
                        f"the next pair after {how}")
        feedback = dt.evaluate("document.getElementById('feedback').textContent")
        if "tie" not in feedback:
            raise Failure(f"the feedback line after a tie says {feedback!r}")
        if "3 votes" not in dt.evaluate("document.getElementById('count').textContent"):
            raise Failure("the vote counter did not reach 3")
        dt.screenshot(os.path.join(work, "collect_page.png"))

        # A phone's screen: both images side by side and inside the screen.
        dt.call("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2, mobile=True)
        time.sleep(0.3)
        rects = dt.evaluate("['left', 'right', 'btn-tie'].map(id => { const b = document.getElementById(id)"
                            ".getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; })")
        (l, r, tie) = rects
        if not (abs(l[1] - r[1]) < 1 and l[2] <= r[0] and r[2] <= 390 and l[0] >= 0 and tie[3] <= 844):
            raise Failure(f"the phone layout is off: left {l}, right {r}, tie button {tie}")
        dt.screenshot(os.path.join(work, "collect_page_phone.png"))

        # The rows.
        con = sqlite3.connect(db)
        rows = con.execute(
            "SELECT v.show_id, v.choice, v.chosen_image, s.left_image, s.right_image FROM votes v "
            "JOIN shows s ON s.id = v.show_id JOIN users u ON u.id = v.user_id "
            "WHERE u.email = 'browser@example.com' ORDER BY v.id").fetchall()
        con.close()
        if [r[0] for r in rows] != shown:
            raise Failure(f"votes on shows {[r[0] for r in rows]}, the page showed {shown}")
        if [r[1] for r in rows] != ["left", "right", "tie"]:
            raise Failure(f"choices {[r[1] for r in rows]}, expected left, right, tie")
        if rows[0][2] != rows[0][3] or rows[1][2] != rows[1][4] or rows[2][2] is not None:
            raise Failure(f"chosen images do not match the sides: {rows}")

        server.terminate()
        if server.wait(timeout=20) != 0:
            raise Failure(f"the server exited with {server.returncode} on SIGTERM")
        print(f"ok: signed in and voted left, right and tie in {chromium}; screenshots in {work}")
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.kill()
                p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cli", required=True, help="the pickscore program")
    ap.add_argument("--work", required=True, help="a scratch folder (emptied first); screenshots are left there")
    ap.add_argument("--chromium", help="the browser (default: chromium on PATH)")
    args = ap.parse_args()
    try:
        return run(args)
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

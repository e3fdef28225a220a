#!/usr/bin/env python3
"""A soak of examples/axum_server under mixed load; run through benches/soak.sh.

    python3 benches/soak.py --binary PATH --mode axum|hyper [--secs 600] [--csv FILE]

Load, all on loopback, every loop bounded by the run's end:
  keep-alive     4 clients, GET / in a loop on one connection (well-behaved)
  short          2 clients, one request per connection with Connection: close (well-behaved)
  http2          1 client, 4 streams at a time on one connection, a new connection every 200
                 streams (well-behaved)
  half-close     1 client, shuts down its write side at a random moment of its request
  reset          1 client, resets (SO_LINGER 0) at a random moment of its request or response
  slow reader    1 client, asks for 4 MiB and reads 4 KiB a second for a few seconds, or nothing
Every second the server's RSS, open descriptors and live connections (from its /metrics) are
sampled. A well-behaved request that fails is counted as lost. The last line is JSON:
{"mode", "secs", "requests_ok", "lost", "rss_kb", "fds", "live"} with first-minute and
last-minute means of each sample.
"""
import os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rawhttp import PREFACE, frame, get_until_close, h2_get  # noqa: E402

import argparse, json, random, socket, struct, subprocess, threading, time

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.lost = 0
        self.errors = []

    def good(self, n=1):
        with self.lock:
            self.ok += n

    def bad(self, what):
        with self.lock:
            self.lost += 1
            if len(self.errors) < 10:
                self.errors.append(what)

def read_response(f):
    status = f.readline()
    if not status:
        return None
    length = 0
    while True:
        h = f.readline()
        if h in (b"\r\n", b""):
            break
        if h.lower().startswith(b"content-length:"):
            length = int(h.split(b":")[1])
    body = f.read(length)
    return status, body

def keep_alive(addr, end, stats):
    while time.time() < end:
        try:
            s = socket.create_connection(addr, timeout=10)
            f = s.makefile("rb")
            for _ in range(1000):
                if time.time() >= end:
                    break
                s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                r = read_response(f)
                if not r or b" 200 " not in r[0]:
                    stats.bad(f"keep-alive: {r!r}")
                    break
                stats.good()
            s.close()
        except OSError as e:
            stats.bad(f"keep-alive: {e}")

def short(addr, end, stats):
    while time.time() < end:
        try:
            out = get_until_close(addr, "/")
            if b" 200 OK\r\n" in out:
                stats.good()
            else:
                stats.bad(f"short: {out[:60]!r}")
        except OSError as e:
            stats.bad(f"short: {e}")

def read_frame(s):
    h = b""
    while len(h) < 9:
        b = s.recv(9 - len(h))
        if not b:
            return None
        h += b
    n = int.from_bytes(h[:3], "big")
    p = b""
    while len(p) < n:
        b = s.recv(n - len(p))
        if not b:
            return None
        p += b
    return h[3], h[4], int.from_bytes(h[5:9], "big") & 0x7FFFFFFF, p

def http2(addr, end, stats):
    while time.time() < end:
        try:
            s = socket.create_connection(addr, timeout=10)
            s.sendall(PREFACE + frame(4, 0, 0))
            stream = 1
            for _ in range(50):
                if time.time() >= end:
                    break
                ids = [stream + 2 * i for i in range(4)]
                stream += 8
                s.sendall(b"".join(h2_get(i, "/") for i in ids))
                pending = set(ids)
                while pending:
                    fr = read_frame(s)
                    if fr is None:
                        raise OSError("connection closed with streams open")
                    ty, flags, sid, payload = fr
                    if ty == 4 and not flags & 1:
                        s.sendall(frame(4, 1, 0))
                    elif ty == 6 and not flags & 1:
                        s.sendall(frame(6, 1, 0, payload))
                    elif ty in (0, 1) and flags & 1 and sid in pending:
                        pending.discard(sid)
                        stats.good()
                    elif ty == 3 and sid in pending:
                        raise OSError(f"stream {sid} reset")
                # Keep the connection-level window open for the DATA received.
                s.sendall(frame(8, 0, 0, struct.pack(">I", 1 << 20)))
            s.close()
        except OSError as e:
            stats.bad(f"http2: {e}")

def half_close(addr, end, rng):
    req = b"GET /slow?ms=20 HTTP/1.1\r\nHost: a\r\n\r\n"
    while time.time() < end:
        try:
            s = socket.create_connection(addr, timeout=5)
            cut = rng.randrange(len(req) + 1)
            s.sendall(req[:cut])
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
            s.close()
        except OSError:
            pass

def reset(addr, end, rng):
    req = b"GET /big?kb=256 HTTP/1.1\r\nHost: a\r\n\r\n"
    while time.time() < end:
        try:
            s = socket.create_connection(addr, timeout=5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.sendall(req[: rng.randrange(len(req) + 1)])
            if rng.random() < 0.5:
                s.recv(rng.randrange(1, 65536))
            s.close()
        except OSError:
            pass

def slow_reader(addr, end, rng):
    while time.time() < end:
        try:
            s = socket.create_connection(addr, timeout=5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /big?kb=4096 HTTP/1.1\r\nHost: a\r\n\r\n")
            reads = rng.choice([0, 3, 8])
            for _ in range(reads):
                s.recv(4096)
                time.sleep(1)
            if reads == 0:
                time.sleep(min(8, max(0, end - time.time())))
            s.close()
        except OSError:
            pass

def sample(pid, addr):
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    live = 0
    try:
        out = get_until_close(addr, "/metrics", timeout=5)
        for line in out.decode(errors="replace").splitlines():
            if line.startswith("conn_hygiene_server_connections{"):
                live += float(line.rsplit(" ", 1)[1])
    except OSError:
        live = -1
    return rss, fds, int(live)

def mean(xs):
    return round(sum(xs) / len(xs), 1) if xs else None

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--mode", choices=["axum", "hyper"], default="axum")
    ap.add_argument("--secs", type=int, default=600)
    ap.add_argument("--csv")
    a = ap.parse_args()
    args = [a.binary, "--listen", "127.0.0.1:0", "--write-timeout", "5", "--sample-interval", "1"]
    if a.mode == "hyper":
        args.append("--hyper-loop")
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    host, port = p.stdout.readline().split()[-1].rsplit(":", 1)
    addr = (host, int(port))
    end = time.time() + a.secs
    stats = Stats()
    rng = random.Random(7)
    threads = [threading.Thread(target=keep_alive, args=(addr, end, stats)) for _ in range(4)]
    threads += [threading.Thread(target=short, args=(addr, end, stats)) for _ in range(2)]
    threads.append(threading.Thread(target=http2, args=(addr, end, stats)))
    for fn in (half_close, reset, slow_reader):
        threads.append(threading.Thread(target=fn, args=(addr, end, random.Random(rng.random()))))
    for t in threads:
        t.daemon = True
        t.start()
    samples = []
    csv = open(a.csv, "w") if a.csv else None
    if csv:
        csv.write("t,rss_kb,fds,live,requests_ok,lost\n")
    t0 = time.time()
    while time.time() < end:
        time.sleep(1)
        rss, fds, live = sample(p.pid, addr)
        t = round(time.time() - t0)
        samples.append((t, rss, fds, live))
        if csv:
            csv.write(f"{t},{rss},{fds},{live},{stats.ok},{stats.lost}\n")
            csv.flush()
    for t in threads:
        t.join(timeout=15)
    p.terminate()
    p.wait(timeout=30)
    first = [s for s in samples if 10 <= s[0] < 70]
    last = [s for s in samples if s[0] >= samples[-1][0] - 60]
    summary = {
        "mode": a.mode,
        "secs": a.secs,
        "requests_ok": stats.ok,
        "lost": stats.lost,
        "errors": stats.errors,
    }
    for i, name in ((1, "rss_kb"), (2, "fds"), (3, "live")):
        summary[name] = {
            "first_minute": mean([s[i] for s in first]),
            "last_minute": mean([s[i] for s in last]),
            "max": max(s[i] for s in samples) if samples else None,
        }
    print(json.dumps(summary))

if __name__ == "__main__":
    main()

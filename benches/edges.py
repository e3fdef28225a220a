#!/usr/bin/env python3
"""The server's edges, measured from outside against examples/axum_server, in each serve mode.

    cargo build --release --example axum_server --all-features
    python3 benches/edges.py [--binary target/release/examples/axum_server] [--modes axum,hyper,bare]

Each figure is printed as one line `mode figure value`:
  half_close_<case>   responses delivered when the client shuts down its write side right after
                      the request(s) (20 connections per case; pipelined sends 3 requests each)
  sigterm             requests the clients saw answered, and the server's own `requests` and
                      `unanswered` totals, after SIGTERM under 8 keep-alive loops
  h2_stalled_fds      descriptors the server holds after 100 HTTP/2 connections whose stream
                      stalled on a zero window and whose client then closed (before -> after)
  preface_held_s      the longest a preface-only connection stayed open (header timeout 10 s)
  slow_readers_sendq  bytes the server's sockets hold in their send queues after 40 readers that
                      never read, once the write timeout (2 s here) has passed
Talks to loopback only; every loop is bounded in count and time.
"""
import os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rawhttp import PREFACE, frame, h2_get  # noqa: E402

import argparse, os, signal, socket, struct, subprocess, threading, time

def start(binary, mode, extra=()):
    args = [binary, "--listen", "127.0.0.1:0", "--no-metrics", *extra]
    if mode == "hyper":
        args.append("--hyper-loop")
    if mode == "bare":
        args = [binary, "--listen", "127.0.0.1:0", "--bare"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    host, port = line.split()[-1].rsplit(":", 1)
    return p, (host, int(port))

def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    return err

def read_all(s, limit=10):
    s.settimeout(limit)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except (socket.timeout, ConnectionResetError):
        pass
    return out

def half_close(addr, request, n=20):
    got = 0
    for _ in range(n):
        s = socket.create_connection(addr)
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        got += read_all(s).count(b" 200 OK\r\n")
        s.close()
    return got

def sigterm(binary, mode):
    p, addr = start(binary, mode)
    answered = [0]
    lock = threading.Lock()
    stop_at = time.time() + 10

    def loop():
        while time.time() < stop_at:
            try:
                s = socket.create_connection(addr, timeout=5)
            except OSError:
                return
            f = s.makefile("rb")
            try:
                while time.time() < stop_at:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                    status = f.readline()
                    if not status:
                        break
                    length = 0
                    while True:
                        h = f.readline()
                        if h in (b"\r\n", b""):
                            break
                        if h.lower().startswith(b"content-length:"):
                            length = int(h.split(b":")[1])
                    f.read(length)
                    with lock:
                        answered[0] += 1
            except OSError:
                pass
            finally:
                s.close()

    threads = [threading.Thread(target=loop) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # load runs; the signal then lands at an arbitrary moment
    err = stop(p)
    for t in threads:
        t.join()
    totals = [l for l in err.splitlines() if l.startswith("connections ")]
    return answered[0], totals[-1] if totals else err.strip()[-300:]

def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))

def h2_stalled(addr, pid, n=100):
    before = fds(pid)
    for i in range(n):
        s = socket.create_connection(addr)
        s.sendall(PREFACE + frame(4, 0, 0, struct.pack(">HI", 4, 0)) + h2_get(1, "/big?kb=64"))
        s.settimeout(5)
        try:
            s.recv(4096)
        except socket.timeout:
            pass
        if i % 2 == 0:
            s.shutdown(socket.SHUT_WR)
        s.close()
    deadline = time.time() + 5
    while fds(pid) > before and time.time() < deadline:
        time.sleep(0.1)
    return before, fds(pid)

def preface_held(addr):
    longest = 0.0
    for data in (b"", PREFACE[:10], PREFACE, PREFACE + frame(4, 0, 0)):
        s = socket.create_connection(addr)
        s.sendall(data)
        t0 = time.time()
        read_all(s, limit=30)
        longest = max(longest, time.time() - t0)
        s.close()
    return longest

def send_queue(port):
    out = subprocess.run(["ss", "-tnH", f"sport = :{port}"], capture_output=True, text=True).stdout
    return sum(int(l.split()[2]) for l in out.splitlines() if l.split())

def slow_readers(binary, mode, n=40):
    p, addr = start(binary, mode, ["--write-timeout", "2"])
    socks = []
    for _ in range(n):
        s = socket.create_connection(addr)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /big?kb=1024 HTTP/1.1\r\nHost: a\r\n\r\n" * 8)
        socks.append(s)
    time.sleep(1.0)
    held = send_queue(addr[1])
    time.sleep(3.5)
    after = send_queue(addr[1])
    for s in socks:
        s.close()
    stop(p)
    return held, after

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/examples/axum_server")
    ap.add_argument("--modes", default="axum,hyper,bare")
    a = ap.parse_args()
    cases = {
        "http10": (b"GET / HTTP/1.0\r\n\r\n", 20),
        "http11": (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 20),
        "http11_close": (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 20),
        "pipelined3": (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * 3, 60),
    }
    for mode in a.modes.split(","):
        p, addr = start(a.binary, mode)
        for name, (req, expected) in cases.items():
            print(f"{mode} half_close_{name} {half_close(addr, req)}/{expected}", flush=True)
        if mode != "bare":
            b, af = h2_stalled(addr, p.pid)
            print(f"{mode} h2_stalled_fds {b}->{af}", flush=True)
            print(f"{mode} preface_held_s {preface_held(addr):.2f}", flush=True)
        stop(p)
        answered, totals = sigterm(a.binary, mode)
        print(f"{mode} sigterm answered={answered} server: {totals}", flush=True)
        if mode != "bare":
            held, after = slow_readers(a.binary, mode)
            print(f"{mode} slow_readers_sendq before={held} after={after}", flush=True)

if __name__ == "__main__":
    main()

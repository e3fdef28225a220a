#!/usr/bin/env python3
"""An HTTP/1.1 upstream that answers each request in a random unusual but legal way, to try
the pooled client against it by hand (not in CI):

    python3 benches/hostile_upstream.py PORT [SEED] [SECONDS] &
    cargo run --release --example pooled_client -- --url http://127.0.0.1:PORT/ --requests 3000 --concurrency 8

Over TLS: set HOSTILE_TLS_CERT and HOSTILE_TLS_KEY (PEM files) and use an https:// URL with
--ca-file; it then also closes some connections without a TLS close_notify ("no_notify").

Prints "ready" when listening, and the count of each behaviour to stderr at exit."""
import asyncio, os, random, socket, ssl, struct, sys
TLS = None
if os.environ.get("HOSTILE_TLS_CERT"):
    TLS = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    TLS.load_cert_chain(os.environ["HOSTILE_TLS_CERT"], os.environ["HOSTILE_TLS_KEY"])
    TLS.set_alpn_protocols(["http/1.1"])
MODES = ["plain", "chunked", "trickle", "close", "http10", "continue", "rst_after", "idle_close", "split_head"]
if TLS:
    MODES.append("no_notify")
random.seed(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
counts = {}
async def handle(r, w):
    try:
        while True:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await r.read(4096)
                if not chunk:
                    w.close(); return
                head += chunk
            mode = random.choice(MODES)
            counts[mode] = counts.get(mode, 0) + 1
            if mode == "plain":
                w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
            elif mode == "chunked":
                w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n")
            elif mode == "trickle":
                for b in b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello":
                    w.write(bytes([b])); await w.drain(); await asyncio.sleep(0.001)
            elif mode == "close":
                w.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello")
                await w.drain(); w.close(); return
            elif mode == "http10":
                w.write(b"HTTP/1.0 200 OK\r\n\r\nhello"); await w.drain(); w.close(); return
            elif mode == "continue":
                w.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
            elif mode == "rst_after":
                w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"); await w.drain()
                await asyncio.sleep(0.05)
                s = w.get_extra_info("socket")
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                w.close(); return
            elif mode == "idle_close":
                w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"); await w.drain()
                await asyncio.sleep(random.random() * 0.02); w.close(); return
            elif mode == "no_notify":
                # The response, then FIN without close_notify: the TCP socket closed under TLS.
                w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"); await w.drain()
                await asyncio.sleep(random.random() * 0.02)
                w.get_extra_info("socket").shutdown(socket.SHUT_RDWR); w.transport.abort(); return
            elif mode == "split_head":
                w.write(b"HTTP/1.1 200 OK\r\ncont"); await w.drain(); await asyncio.sleep(0.002)
                w.write(b"ent-length: 5\r\n\r\nhel"); await w.drain(); await asyncio.sleep(0.002)
                w.write(b"lo")
            await w.drain()
    except (ConnectionError, OSError):
        pass
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), ssl=TLS)
    print("ready", flush=True)
    async with srv:
        try:
            await asyncio.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 120)
        finally:
            print(counts, file=sys.stderr, flush=True)
asyncio.run(main())

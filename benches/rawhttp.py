"""Raw HTTP/1 and HTTP/2 bytes for the bench scripts (edges.py, soak.py): loopback only."""
import socket
import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ty, flags, stream, payload=b""):
    """One HTTP/2 frame."""
    return struct.pack(">I", len(payload))[1:] + bytes([ty, flags]) + struct.pack(">I", stream) + payload


def h2_get(stream, path):
    """HEADERS for GET `path` ending `stream` (HPACK without Huffman)."""
    block = bytes([0x82, 0x86, 0x41, 1]) + b"a" + bytes([0x44, len(path)]) + path.encode()
    return frame(1, 0x5, stream, block)


def get_until_close(addr, path, timeout=10):
    """GET `path` with Connection: close; everything the server sends until it closes."""
    s = socket.create_connection(addr, timeout=timeout)
    try:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                return out
            out += b
    finally:
        s.close()

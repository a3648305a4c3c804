#!/usr/bin/env python3
"""kchat client: python3 kchat.py [HOST [PORT]], then type lines or /nick NAME, /join #room,
/part, /rooms, /who, /msg NICK TEXT (sent as typed, the server answers); Ctrl-D quits."""
import os, socket, struct, sys, threading

sock = socket.create_connection((sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1",
                                 int(sys.argv[2]) if len(sys.argv) > 2 else 10106))

def recv_exact(n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            print("* disconnected"); os._exit(1)
        data += chunk
    return data

def reader():
    while True:
        (length,) = struct.unpack("<I", recv_exact(4))
        print(recv_exact(length).decode(errors="replace"), flush=True)

threading.Thread(target=reader, daemon=True).start()
for line in sys.stdin:
    data = line.rstrip("\n").encode()
    sock.sendall(struct.pack("<I", len(data)) + data)

# SPDX-License-Identifier: GPL-2.0-or-later
"""A raw control-protocol client for tests that must speak from another process's context
(e.g. `nsenter -t PID -p python3 rawclient.py ...`: a process in a container's pid namespace,
which is what the peer check of a container's socket looks at).

Usage: rawclient.py SOCKET JSON [COUNT], JSON a list of [body_field, hex of the body message]; prints a
JSON list with one entry per request: {"error": [code, message]} or {"fields": {num: hex}} of
the final response (Progress messages are skipped)."""
import json
import socket
import struct
import sys

from pb import field_bytes, field_varint, frame, parse


def recv_frame(s):
    def exact(n):
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            if not chunk:
                raise EOFError("closed")
            data += chunk
        return data
    (n,) = struct.unpack(">I", exact(4))
    return parse(exact(n))


def flood(path, body, sub, count):
    """count copies of one request, pipelined (a reader thread takes the replies); prints
    {"replies": n, "errors": {code: n}}."""
    import threading
    msg = field_varint(1, 1) + field_varint(2, 7) + field_bytes(body, sub)
    errors, replies = {}, [0]
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(120)
        s.connect(path)

        def reader():
            while replies[0] < count:
                resp = recv_frame(s)
                replies[0] += 1
                if 10 in resp:
                    code = parse(resp[10][0]).get(1, [0])[0]
                    errors[code] = errors.get(code, 0) + 1
        t = threading.Thread(target=reader)
        t.start()
        s.sendall(frame(msg) * count)
        t.join()
    print(json.dumps({"replies": replies[0], "errors": errors}))


def main():
    path, reqs = sys.argv[1], json.loads(sys.argv[2])
    if len(sys.argv) > 3:
        (body, hexsub), = reqs
        return flood(path, body, bytes.fromhex(hexsub), int(sys.argv[3]))
    out = []
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(60)
        s.connect(path)
        for i, (body, hexsub) in enumerate(reqs):
            msg = field_varint(1, 1) + field_varint(2, 100 + i) + field_bytes(body, bytes.fromhex(hexsub))
            s.sendall(frame(msg))
            while True:
                resp = recv_frame(s)
                if 11 not in resp:  # Progress
                    break
            if 10 in resp:
                err = parse(resp[10][0])
                out.append({"error": [err.get(1, [0])[0], err.get(2, [b""])[0].decode(errors="replace")]})
            else:
                body = next(k for k in resp if k not in (1, 2))
                sub = parse(resp[body][0])
                out.append({"fields": {str(k): (v[0].hex() if isinstance(v[0], bytes) else v[0])
                                       for k, v in sub.items()}, "body": body})
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""Events per second the stand-in delivers to one raw client: `python -m yangyang_rec.standin.bench [CALLS]`.

The stand-in runs in a child process (as in a benchmark of the daemon); this process only reads.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    calls = int(argv[0]) if argv else 2000
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    child = subprocess.Popen(
        [sys.executable, "-m", "yangyang_rec", "simulate", "--lines", "config/lines.yaml", "--calls", str(calls),
         "--rate", "100000", "--time-scale", "100000", "--port", str(port), "--wait-for-client", "20",
         "--hold", "0"], stdout=subprocess.DEVNULL)
    for _ in range(100):
        try:
            sock = socket.create_connection(("127.0.0.1", port))
            break
        except OSError:
            time.sleep(0.1)
    sock.recv(100)
    sock.sendall(b"auth ClueCon\n\n")
    sock.recv(100)
    sock.sendall(b"event plain ALL\n\n")
    events, tail, nbytes, first, last = 0, b"", 0, None, None
    marker = b"Content-Type: text/event-plain\n"
    while True:
        data = sock.recv(1 << 20)
        if not data:
            break
        now = time.time()
        first = first or now
        last = now
        buf = tail + data
        events += buf.count(marker) - tail.count(marker)
        tail = buf[-len(marker):]
        nbytes += len(data)
    child.wait()
    elapsed = max(1e-9, (last or 0) - (first or 0))
    print(f"{events} events, {nbytes / 1e6:.1f} MB in {elapsed:.2f} s: {events / elapsed:,.0f} events/s to one client")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

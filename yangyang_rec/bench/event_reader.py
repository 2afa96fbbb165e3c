"""A client of the event socket run as its own process by the bench: `raw` counts frames as fast as
bytes arrive (the stand-in's speed); `greenswitch` is a bare greenswitch `InboundESL` with no-op
handlers (the baseline for the daemon). Prints one JSON line of counts and times when stopped
(SIGTERM) or when the socket closes.

    python -m yangyang_rec.bench.event_reader raw|greenswitch PORT PASSWORD EVENT...
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import time

from yangyang_rec.esl.frames import FrameReader


def ready() -> None:
    print("ready", flush=True)


def read_raw(port: int, password: str, names: list[str]) -> dict:
    sock = socket.create_connection(("127.0.0.1", port))
    reader = FrameReader()
    sock.sendall(f"auth {password}\n\nevent plain {' '.join(names)}\n\n".encode())
    ready()
    count, first, last = 0, None, None
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    sock.settimeout(0.2)
    while not stop:
        try:
            data = sock.recv(1 << 20)
        except (TimeoutError, InterruptedError):
            continue
        if not data:
            break
        for frame in reader.feed(data):
            if frame.content_type == "text/event-plain":
                now = time.time()
                first = first or now
                last = now
                count += 1
    return {"events": count, "first": first, "last": last}


def read_greenswitch(port: int, password: str, names: list[str]) -> dict:
    import gevent
    import gevent.event
    from greenswitch import InboundESL

    state = {"events": 0, "first": None, "last": None}

    def noop(event) -> None:
        now = time.time()
        state["first"] = state["first"] or now
        state["last"] = now
        state["events"] += 1

    esl = InboundESL(host="127.0.0.1", port=port, password=password)
    esl.connect()
    for name in names:
        esl.register_handle(name, noop)
    esl.send(f"event plain {' '.join(names)}")
    ready()
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set() and esl.connected:
        stop.wait(0.2)
    return state


def main(argv: list[str]) -> int:
    mode, port, password, *names = argv
    read = read_raw if mode == "raw" else read_greenswitch
    stats = read(int(port), password, names)
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

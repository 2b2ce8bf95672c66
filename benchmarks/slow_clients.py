"""The slow clients of the serving benchmark: SLOW connections from three loopback source addresses that trickle
one more byte of their headers or body at random instants and never complete, in a process of their own so their
trickling does not slow the probing client down (`bench_serving.py` part 1).

Not a benchmark itself (`benchmarks/run.py` runs only `bench_*.py`).
"""

from __future__ import annotations

import subprocess
import sys
import time

#: The slow clients, in their own process so their trickling does not slow the probing client down. Commands on
#: stdin: "open PORT" opens the connections and starts trickling ("open N REFUSED": connects refused and tried
#: again, each also named on stderr); "close" counts the connections still open with no answer from the server,
#: closes all ("closed N").
SLOW_CLIENTS = """
import random, select, socket, sys, time
count = int(sys.argv[1])
socks, due, nxt, refused = [], 0.0, 0, 0

def connect(port, source):
    global refused
    for attempt in range(5):
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
            return s
        except ConnectionRefusedError:
            refused += 1
            print("slow clients: connect from %s:%d refused" % s.getsockname(), file=sys.stderr, flush=True)
            s.close()
            time.sleep(0.1)
    raise ConnectionRefusedError(port)

def unanswered(s):
    s.setblocking(False)
    try:
        s.recv(1, socket.MSG_PEEK)  # data (an error answer) or b"" (closed): the server gave up on it
    except BlockingIOError:
        return True
    except OSError:
        pass
    return False

while True:
    if not socks or select.select([sys.stdin], [], [], max(0.0, due - time.monotonic()))[0]:
        command = sys.stdin.readline().split()
        if not command:
            break
        if command[0] == "open":
            refused = 0
            for i in range(count):
                s = connect(int(command[1]), f"127.0.0.{2 + i % 3}")
                s.sendall(b"GET /healthz HTTP/1.1\\r\\nHost: x\\r\\n" if i % 2 else
                          b"POST /authn/tokenreviews HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 100000\\r\\n\\r\\n")
                socks.append(s)
            due, nxt = time.monotonic(), 0
            print("open", len(socks), refused, flush=True)
        else:
            waiting = sum(unanswered(s) for s in socks)
            for s in socks:
                s.close()
            socks = []
            print("closed", waiting, flush=True)
        continue
    try:  # the connections take turns, one byte each per 0.5 s on average, at random (Poisson) instants
        socks[nxt].sendall(b"X" if nxt % 2 else b" ")
    except OSError:
        pass
    nxt = (nxt + 1) % len(socks)
    due += random.expovariate(len(socks) / 0.5)
"""


class SlowClients:
    """The slow-clients process, up for the whole of part 1; `open(port)` and `close()` switch its connections."""

    def __init__(self, count: int, settle: float) -> None:
        self.count, self.settle = count, settle
        self.proc = subprocess.Popen([sys.executable, "-c", SLOW_CLIENTS, str(count)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.refused: dict[int, int] = {}  # connects refused (and tried again), by server port

    def _command(self, line: str) -> list[int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().split()
        if not answer:
            raise RuntimeError(f"slow clients: no answer to {line!r} (exit {self.proc.poll()})")
        return [int(n) for n in answer[1:]]

    def open(self, port: int) -> None:
        opened, refused = self._command(f"open {port}")
        self.refused[port] = self.refused.get(port, 0) + refused
        if opened != self.count:
            raise RuntimeError("slow clients: not all connections opened")
        time.sleep(self.settle)

    def close(self) -> int:
        """Close the connections; return how many were still open and unanswered."""
        (waiting,) = self._command("close")
        time.sleep(self.settle)
        return waiting

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # end of input: the process closes its connections and exits
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

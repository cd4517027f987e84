"""A heartbeat for steps that run long without output of their own (a Verilator build, decoding a data
set, the golden model over a test split): a line every few seconds saying what is still running."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

HEARTBEAT_SECONDS = 15.0


@contextlib.contextmanager
def heartbeat(log: Callable[[str], None], what: str, every: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """Within the block, ``log("  ... <what>: <n> s")`` every ``every`` seconds (from a daemon thread)."""
    stop = threading.Event()
    t0 = time.perf_counter()

    def beat() -> None:
        while not stop.wait(every):
            log(f"  ... {what}: {time.perf_counter() - t0:.0f} s")

    thread = threading.Thread(target=beat, name="apotflow-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def epoch_logger(log: Callable[[str], None], prefix: str,
                 keys: tuple[str, ...] = ("phase", "epoch", "loss", "test_acc")) -> Callable[[dict], None]:
    """The trainer's per-epoch progress callback for a CPU run: ``log("<prefix> phase=.. epoch=.. loss=..")``
    with ``keys`` of each epoch's record, floats to 4 decimals."""
    def progress(rec: dict) -> None:
        log(prefix + " " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                    for k, v in rec.items() if k in keys))
    return progress

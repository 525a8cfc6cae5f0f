#!/usr/bin/env python3
"""How long an append + fdatasync takes on a disk, in the two ways a log can write.

    python3 scripts/fsync-probe.py [DIR] [COUNT] [SIZE]

"grow": every write makes the file longer, so every fdatasync also makes the new size durable
(on ext4, a journal commit, or without a journal a synchronous write of the inode's block).
"overwrite": the file was written with zeros first, so fdatasync only flushes data. txmq's Raft
log writes the second way (zeros 256 KiB ahead of the last frame, see docs/performance.md). Prints latency percentiles and the kernel CPU time per sync.
"""

import os
import resource
import sys
import tempfile
import time


def probe(directory: str, mode: str, count: int, size: int) -> None:
    fd, path = tempfile.mkstemp(dir=directory, prefix="fsync-probe-")
    try:
        if mode == "overwrite":
            os.write(fd, b"\0" * (count * size))
            os.fsync(fd)
        payload = b"x" * size
        latencies = []
        before = resource.getrusage(resource.RUSAGE_SELF)
        for i in range(count):
            started = time.perf_counter()
            os.pwrite(fd, payload, i * size)
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        os.close(fd)
        os.unlink(path)
    latencies.sort()

    def ms(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1e3

    kernel_us = (after.ru_stime - before.ru_stime) / count * 1e6
    print(
        f"{mode:9s} {count} x {size} B: mean {sum(latencies) / count * 1e3:.3f} ms, "
        f"p50 {ms(0.5):.2f}, p90 {ms(0.9):.2f}, p99 {ms(0.99):.2f} ms, "
        f"kernel CPU {kernel_us:.0f} us per sync"
    )


def main() -> None:
    directory = sys.argv[1] if len(sys.argv) > 1 else "."
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 2048
    for _ in range(2):
        for mode in ("grow", "overwrite"):
            probe(directory, mode, count, size)


if __name__ == "__main__":
    main()

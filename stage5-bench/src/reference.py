"""The article's sleep benchmark in Python: the reference rows of stage 5's table.

    python3 reference.py MODEL TOTAL CONCURRENCY SLEEP_MS      (MODEL: asyncio or threads)

The `table` binary passes this file to `python3 -c`; nothing outside the standard library
is needed. It prints one cell line, as the Rust cells do: `ok elapsed_s=S
[per_worker_bytes=B]`, `refused LIMIT: why` or `failed WHAT: why`.
"""

import asyncio
import sys
import threading
import time


def resident_bytes():
    """VmRSS, as shared::memory::resident_bytes reads it; 0 where there is no /proc."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# ANCHOR: asyncio
async def asyncio_bench(total, concurrency, sleep, probe):
    """`concurrency` tasks take job numbers under an asyncio.Lock and sleep for each."""
    lock = asyncio.Lock()
    next_job = 0

    async def worker():
        nonlocal next_job
        while True:
            async with lock:
                if next_job == total:
                    return
                job = next_job
                next_job += 1
            if job == total - 1:
                probe(concurrency)  # the last task to start: all the others are asleep
            await asyncio.sleep(sleep)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start
# ANCHOR_END: asyncio


def threads_bench(total, concurrency, sleep, probe):
    """The same with `concurrency` OS threads and a threading.Lock."""
    lock = threading.Lock()
    state = {"next": 0, "in_job": 0, "stop": False}

    def worker():
        while True:
            with lock:
                if state["stop"] or state["next"] == total:
                    return
                job = state["next"]
                state["next"] += 1
                state["in_job"] += 1
                alive = state["in_job"]
            if job == total - 1:
                probe(alive)  # a thread runs at once: the first may be gone already
            time.sleep(sleep)
            with lock:
                state["in_job"] -= 1

    start = time.perf_counter()
    threads = []
    refused = None
    for _ in range(concurrency):
        thread = threading.Thread(target=worker)
        try:
            thread.start()
        except RuntimeError as error:  # "can't start new thread"
            with lock:
                state["stop"] = True
            refused = f"{error} after {len(threads)} of {concurrency} threads"
            break
        threads.append(thread)
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, refused


def map_budget_refusal(threads):
    """Like stage 0's check: a glibc thread costs 2 mappings (stack and guard page)."""
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            limit = int(f.read())
        with open("/proc/self/maps") as f:
            used = sum(1 for _ in f)
    except OSError:
        return None
    needed = 2 * threads + 2000
    if needed <= limit - used:
        return None
    return (f"{threads} Python threads need about {needed} memory mappings (2 per thread), "
            f"more than the memory-mapping limit (vm.max_map_count = {limit}, {used} in use) "
            f"allows; checked before starting any")


def main():
    model, total, concurrency, sleep_ms = sys.argv[1], *map(int, sys.argv[2:5])
    workers = max(1, min(concurrency, total))
    sleep = sleep_ms / 1000
    baseline = resident_bytes()
    sample = {}

    def probe(alive):
        sample["rss"], sample["alive"] = resident_bytes(), alive

    if model == "asyncio":
        elapsed, refused = asyncio.run(asyncio_bench(total, workers, sleep, probe)), None
    elif model == "threads":
        refused = map_budget_refusal(workers)
        if refused:
            print(f"refused vm.max_map_count: {refused}")
            return
        elapsed, refused = threads_bench(total, workers, sleep, probe)
    else:
        print(f"failed usage: unknown model {model!r}")
        return
    if refused:
        print(f"refused thread start: {refused}")
        return
    line = f"ok elapsed_s={elapsed:.6f}"
    # Only when each worker ran one job, and the sample saw all of them alive.
    if concurrency >= total and sample.get("alive") == workers and sample["rss"] > baseline:
        line += f" per_worker_bytes={(sample['rss'] - baseline) / workers:.1f}"
    print(line)


if __name__ == "__main__":
    try:
        main()
    except MemoryError:
        print("refused memory: MemoryError")
    except Exception as error:  # one line for the table, whatever went wrong
        print(f"failed {type(error).__name__}: {error or 'no message'}")

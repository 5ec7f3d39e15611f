"""Copy-on-read: how much memory each forked worker copies from a dataset of Python strings.

    PYTHONPATH=src .venv/bin/python benchmarks/copy_on_read.py [--quick] [--n N] [--epochs E]

A map-style dataset holds N strings (default 5,000,000, ~30 characters each; ``--quick``:
500,000) and returns one per ``__getitem__``; a loader with 2 forked workers (batch 256,
shuffled, persistent workers) runs E epochs (default 1) over it. Every variant runs in a fresh
child process of its own, whose main thread samples its workers' USS (Private_Clean +
Private_Dirty of /proc/<pid>/smaps_rollup: the pages a worker no longer shares) every 0.2 s and
after each epoch; the table shows the peak, per worker, beside the dataset's size in the parent
(the strings' and the list's ``sys.getsizeof``, or the StringArray's ``nbytes``): what there is
to copy.

- ``list``: a plain list of str, ladle with ``LADLE_GC_FREEZE=0`` (no gc.freeze before fork);
- ``list, gc.freeze``: the same, as ladle ships (the parent's heap frozen while workers fork);
- ``StringArray``: the strings in a ``ladle.StringArray`` (two NumPy arrays);
- ``torch list`` / ``torch StringArray``: ``torch.utils.data.DataLoader`` over the same
  datasets, when torch is importable.

A second part shows what gc.freeze is for: the dataset is a StringArray, the parent also holds
N/2 small lists that the workers never read (a training script's other Python objects), and
``worker_init_fn`` runs ``gc.collect()`` (as libraries and user code do): a full collection
writes into every tracked object's header, unless the objects are frozen.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

WORKERS = 2
BATCH = 256
VARIANTS = {
    # name: (library, data, LADLE_GC_FREEZE, extra tracked objects + gc.collect in workers)
    "list": ("ladle", "list", "0", False),
    "list, gc.freeze": ("ladle", "list", "1", False),
    "StringArray": ("ladle", "strings", "1", False),
    "torch list": ("torch", "list", "1", False),
    "torch StringArray": ("torch", "strings", "1", False),
    "gc.collect": ("ladle", "strings", "0", True),
    "gc.collect, gc.freeze": ("ladle", "strings", "1", True),
    "torch gc.collect": ("torch", "strings", "1", True),
}


class Items:
    """``items[i]``, for both libraries (neither needs a Dataset subclass)."""

    def __init__(self, items: Any) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


def _collect(worker_id: int) -> None:
    gc.collect()


def _rollup(pid: int) -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup", "rb") as file:
        for line in file.read().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                fields[parts[0].decode().rstrip(":")] = int(parts[1]) * 1024
    return fields


def _uss(pid: int) -> int | None:
    try:
        fields = _rollup(pid)
    except OSError:
        return None
    return fields["Private_Clean"] + fields["Private_Dirty"]


def _children() -> list[int]:
    pids = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as file:
                pids += [int(p) for p in file.read().split()]
        except OSError:
            continue
    workers = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                if b"resource_tracker" in file.read():
                    continue
        except OSError:
            continue
        workers.append(pid)
    return workers


class Peaks:
    """The peak USS of each child process, sampled by a thread and on demand."""

    def __init__(self) -> None:
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> None:
        for pid in _children():
            uss = _uss(pid)
            if uss is not None:
                self.peak[pid] = max(self.peak.get(pid, 0), uss)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join()
        return sorted(self.peak.values())


def _strings(n: int) -> list[str]:
    words = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")
    return [
        f"sample {i}: {words[i % 8]} {words[(i // 8) % 8]} {i * 7919 % 100003}" for i in range(n)
    ]


def child(name: str, n: int, epochs: int) -> dict[str, Any]:
    library, data, _, collect = VARIANTS[name]
    items: Any = _strings(n)
    size = sys.getsizeof(items) + sum(map(sys.getsizeof, items))
    if data == "strings":
        from ladle import StringArray

        items = StringArray(items)  # the list is dropped: only the arrays stay
        size = items.nbytes
    other = [[i] for i in range(n // 2)] if collect else None
    gc.collect()
    options: dict[str, Any] = {
        "batch_size": BATCH,
        "shuffle": True,
        "num_workers": WORKERS,
        "persistent_workers": True,
        "worker_init_fn": _collect if collect else None,
    }
    if library == "torch":
        import torch.utils.data as tud

        loader: Any = tud.DataLoader(Items(items), multiprocessing_context="fork", **options)
    else:
        import ladle

        loader = ladle.DataLoader(Items(items), seed=0, **options)
    peaks = Peaks()
    started = time.perf_counter()
    samples = 0
    for _ in range(epochs):
        for batch in loader:
            samples += len(batch)
        peaks.sample()  # persistent workers: still alive after the epoch
    seconds = time.perf_counter() - started
    workers = peaks.stop()
    del loader
    assert samples == n * epochs, (samples, n * epochs)
    del other
    return {"dataset_bytes": size, "workers": workers, "seconds": seconds}


def run(name: str, n: int, epochs: int) -> dict[str, Any] | None:
    freeze = VARIANTS[name][2]
    env = dict(os.environ, LADLE_GC_FREEZE=freeze)
    command = [sys.executable, __file__, "--child", name, "--n", str(n), "--epochs", str(epochs)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        sys.stderr.write(f"{name} failed:\n{result.stderr}\n")
        return None
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def _has_torch() -> bool:
    try:
        import torch.utils.data  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="strings (default 5,000,000)")
    parser.add_argument("--quick", action="store_true", help="500,000 strings")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--json", default=None, help="write every figure here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.n or (500_000 if args.quick else 5_000_000)
    if args.child is not None:
        print(json.dumps(child(args.child, n, args.epochs)))
        return
    torch = _has_torch()
    mib = 2**20
    print(f"{n:,} strings, {WORKERS} fork workers, batch {BATCH}, {args.epochs} epoch(s)")
    print(f"{'variant':<24} {'dataset (MiB)':>13} {'USS per worker, peak (MiB)':>28} {'s':>7}")
    figures = {}
    for name, (library, *_) in VARIANTS.items():
        if name == "gc.collect":
            print(f"-- the parent also holds {n // 2:,} lists; worker_init_fn runs gc.collect()")
        if library == "torch" and not torch:
            print(f"{name:<24} skipped: torch is not installed")
            continue
        result = run(name, n, args.epochs)
        if result is None:
            continue
        figures[name] = result
        workers = " ".join(f"{w / mib:7.1f}" for w in result["workers"])
        size = result["dataset_bytes"] / mib
        print(f"{name:<24} {size:>13.1f} {workers:>28} {result['seconds']:>7.1f}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"n": n, "epochs": args.epochs, "variants": figures}, file, indent=1)


if __name__ == "__main__":
    main()

"""The ``s3`` scenario: shards from an S3 API server on 127.0.0.1 (moto, started here).

    .venv/bin/python benchmarks/run.py --scenario s3          # in the harness, with the others
    PYTHONPATH=src .venv/bin/python benchmarks/s3.py [--quick] [--rounds N] [--json PATH]

It starts ``moto_server`` in a child process on a free port, uploads the same samples twice —
as ladle shards (``write_shards`` to ``s3://``) and as one object per sample — and measures
full epochs, the contenders taking turns in rounds (median over rounds):

``warm``
    ladle reading the shards from a warm node cache, against ladle reading the same shards
    from local disk (the same ``ShardWindowSampler`` order, 2 workers): target >= 0.90.
``cold``
    ladle with an empty node cache at the start of every epoch (a quarter of the dataset: the
    windowed shuffle, shards fetched ahead), against a torch DataLoader whose map-style dataset
    does one ``boto3`` ``get_object`` per sample (the "S3 dataset" users write), shuffled, both
    with 2 workers: target >= 3x.

MosaicML Streaming is not measured: installing it (0.13.0) would replace the test gate's CPU
torch 2.13 with torch 2.14.1 and CUDA packages (``pip install --dry-run``). moto is a Python
server, slower per request than S3 or MinIO, which favours the side that makes fewer requests
(ladle's); the ratio on a real store depends on its latency per GET.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

SAMPLES, SAMPLES_QUICK = 2048, 768
SAMPLE_BYTES = 32 * 1024  # one uint8 array a sample, and an int64 label
SHARD_BYTES = 2 * 2**20
BATCH, WORKERS = 64, 2
BUCKET, REGION = "ladle-bench", "us-east-1"
KEYS = {"key": "bench", "secret": "bench"}
WARM_TARGET, COLD_TARGET = 0.90, 3.0


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


_SERVE = "import sys; from moto.server import main; main(sys.argv[1:])"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def moto() -> Iterator[str]:
    """``moto_server`` in a child process; yields its endpoint; stops it."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVE, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto_server did not start within 30 s") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def options(endpoint: str) -> dict[str, Any]:
    return {**KEYS, "endpoint_url": endpoint, "client_kwargs": {"region_name": REGION}}


def boto3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=KEYS["key"],
        aws_secret_access_key=KEYS["secret"],
    )


def make_samples(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(12)
    return rng.integers(0, 256, (n, SAMPLE_BYTES), dtype=np.uint8), np.arange(n, dtype=np.int64)


def upload(endpoint: str, local: Path, n: int) -> str:
    """The samples as shards (locally, and at s3://BUCKET/shards) and one object per sample."""
    from ladle.formats import write_shards

    x, y = make_samples(n)
    rows = [(x[i], y[i]) for i in range(n)]
    write_shards(rows, local, shard_bytes=SHARD_BYTES)
    client = boto3_client(endpoint)
    client.create_bucket(Bucket=BUCKET)
    url = f"s3://{BUCKET}/shards"
    write_shards(rows, url, shard_bytes=SHARD_BYTES, storage_options=options(endpoint))

    def put(i: int) -> None:
        body = x[i].tobytes() + y[i].tobytes()
        client.put_object(Bucket=BUCKET, Key=f"samples/{i:07d}.bin", Body=body)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(n)))
    return url


class GetPerSample:
    """The torch side: a map-style dataset that GETs one object per sample with boto3 (a
    client per worker process, made on first use: boto3 clients do not survive fork)."""

    def __init__(self, endpoint: str, n: int) -> None:
        self.endpoint, self.n = endpoint, n
        self._client: tuple[int, Any] | None = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        if self._client is None or self._client[0] != os.getpid():
            self._client = (os.getpid(), boto3_client(self.endpoint))
        body = self._client[1].get_object(Bucket=BUCKET, Key=f"samples/{i:07d}.bin")["Body"]
        data = body.read()
        x = np.frombuffer(data, np.uint8, SAMPLE_BYTES).copy()  # writable, as torch wants
        return x, int(np.frombuffer(data, np.int64, 1, SAMPLE_BYTES)[0])


def epoch(loader: Iterable[Any], expected: int, before: Callable[[], None] | None = None) -> float:
    """Samples per second of one full epoch of ``loader`` (``before`` runs untimed first)."""
    if before is not None:
        before()
    started = time.perf_counter()
    count = 0
    for batch in loader:
        count += len(batch[1])
    elapsed = time.perf_counter() - started
    if count != expected:
        raise AssertionError(f"an epoch gave {count} samples, expected {expected}")
    return count / elapsed


def run(rounds: int, quick: bool) -> dict[str, Any]:
    import ladle
    from ladle.formats import ShardDataset, ShardWindowSampler

    n = SAMPLES_QUICK if quick else SAMPLES
    work = Path(tempfile.mkdtemp(prefix="ladle-s3-bench-"))
    try:
        with moto() as endpoint:
            say(f"s3: uploading {n} samples of {SAMPLE_BYTES // 1024} KiB to {endpoint}")
            url = upload(endpoint, work / "local", n)
            local = ShardDataset(work / "local")
            shards = len(local.shard_sizes)
            warm_cache, cold_cache = work / "warm-cache", work / "cold-cache"
            warm = ShardDataset(url, storage_options=options(endpoint), cache_dir=warm_cache)
            limit = max(sum(warm.shard_bytes) // 4, 2 * max(warm.shard_bytes))
            cold = ShardDataset(
                url, storage_options=options(endpoint), cache_dir=cold_cache, cache_limit=limit
            )
            filler = ShardDataset(url, storage_options=options(endpoint), cache_dir=warm_cache)
            for i in range(shards):
                filler.shard(i)  # warm: every shard in the cache (not mapped by ``warm``)

            def ladle_loader(dataset: Any, window: int | None) -> Any:
                sampler = ShardWindowSampler(dataset, window, seed=0)
                return ladle.DataLoader(
                    dataset, batch_size=BATCH, sampler=sampler, num_workers=WORKERS
                )

            def empty_cache() -> None:
                shutil.rmtree(cold_cache, ignore_errors=True)

            import torch.utils.data

            torch_loader = torch.utils.data.DataLoader(
                GetPerSample(endpoint, n), batch_size=BATCH, shuffle=True, num_workers=WORKERS
            )
            contenders: dict[str, tuple[Any, Callable[[], None] | None]] = {
                "ladle, local disk": (ladle_loader(local, shards), None),
                "ladle, s3 warm cache": (ladle_loader(warm, shards), None),
                "ladle, s3 cold (cache 1/4)": (ladle_loader(cold, None), empty_cache),
                "torch, GET per sample": (torch_loader, None),
            }
            results: dict[str, list[float]] = {name: [] for name in contenders}
            for loader, before in contenders.values():  # an untimed warm-up epoch each
                epoch(loader, n, before)
            names = list(contenders)
            for r in range(rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    loader, before = contenders[name]
                    results[name].append(epoch(loader, n, before))
                say(f"s3: round {r + 1}/{rounds} done")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    median = {name: statistics.median(values) for name, values in results.items()}
    warm_ratio = median["ladle, s3 warm cache"] / median["ladle, local disk"]
    cold_ratio = median["ladle, s3 cold (cache 1/4)"] / median["torch, GET per sample"]
    return {
        "samples": n,
        "sample_bytes": SAMPLE_BYTES,
        "shards": shards,
        "workers": WORKERS,
        "batch_size": BATCH,
        "rounds": results,
        "median_samples_per_s": median,
        "checks": {
            "warm cache / local disk": {"ratio": warm_ratio, "target": WARM_TARGET},
            "cold / torch GET per sample": {"ratio": cold_ratio, "target": COLD_TARGET},
        },
    }


class EmptiedFirst:
    """``loader``, its node cache emptied at the start of every epoch: a cold read each time."""

    def __init__(self, loader: Any, cache: Path) -> None:
        self.loader, self.cache = loader, cache

    def __iter__(self) -> Iterator[Any]:
        shutil.rmtree(self.cache, ignore_errors=True)
        return iter(self.loader)

    def close(self) -> None:
        self.loader.close()


class FirstBatches:
    """The first ``count`` batches of each epoch of ``loader`` (a GET per sample is slow: a full
    epoch would take most of the run)."""

    def __init__(self, loader: Any, count: int) -> None:
        self.loader, self.count = loader, count

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self.loader), self.count)


def scenario(setup: Any) -> Any:
    """The harness's ``s3`` scenario (``run.py --scenario s3``); its ``close`` stops moto."""
    from scenarios import Contender, Scenario, Target

    import ladle
    from ladle.formats import ShardDataset, ShardWindowSampler

    n = SAMPLES_QUICK if setup.quick else SAMPLES
    stack = contextlib.ExitStack()
    try:
        endpoint = stack.enter_context(moto())
        work = Path(tempfile.mkdtemp(prefix="ladle-s3-bench-"))
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        say(f"  s3: uploading {n} samples of {SAMPLE_BYTES // 1024} KiB to moto at {endpoint}")
        url = upload(endpoint, work / "local", n)
    except BaseException:
        stack.close()
        raise
    local = ShardDataset(work / "local")
    shards = len(local.shard_sizes)
    warm_cache, cold_cache = work / "warm-cache", work / "cold-cache"
    filler = ShardDataset(url, storage_options=options(endpoint), cache_dir=warm_cache)
    for i in range(shards):
        filler.shard(i)  # every shard in the warm cache, not mapped by the measured dataset
    warm = ShardDataset(url, storage_options=options(endpoint), cache_dir=warm_cache)
    limit = max(sum(warm.shard_bytes) // 4, 2 * max(warm.shard_bytes))
    cold = ShardDataset(
        url, storage_options=options(endpoint), cache_dir=cold_cache, cache_limit=limit
    )
    extra = {"persistent_workers": True} if setup.persistent_workers else {}

    def loader(dataset: Any, window: int | None) -> Any:
        sampler = ShardWindowSampler(dataset, window, seed=0)
        return ladle.DataLoader(
            dataset, batch_size=BATCH, sampler=sampler, num_workers=WORKERS, **extra
        )

    torch_batches = 8
    contenders = [
        Contender(
            "ladle",
            "ladle",
            lambda: loader(local, shards),
            f"ladle.DataLoader(ShardDataset(local dir)), ShardWindowSampler over all {shards} "
            f"shards, {WORKERS} workers",
        ),
        Contender(
            "ladle s3 warm cache",
            "ladle",
            lambda: loader(warm, shards),
            "the same shards from s3:// with every shard in the node cache",
        ),
        Contender(
            "ladle s3 cold",
            "ladle",
            lambda: EmptiedFirst(loader(cold, None), cold_cache),
            f"from s3:// with the node cache emptied before each epoch ({limit // 2**20} MiB, a "
            f"quarter of the data), ShardWindowSampler's default window",
        ),
    ]
    if setup.torch is not None:
        tud = setup.torch.utils.data
        contenders.append(
            Contender(
                "torch GET per sample",
                "torch",
                lambda: FirstBatches(
                    tud.DataLoader(
                        GetPerSample(endpoint, n),
                        batch_size=BATCH,
                        shuffle=True,
                        num_workers=WORKERS,
                        **extra,
                    ),
                    torch_batches,
                ),
                f"torch.utils.data.DataLoader over a map-style dataset doing one boto3 get_object "
                f"per sample (one object a sample), shuffle=True, {WORKERS} workers; the first "
                f"{torch_batches} batches of each epoch",
                samples_per_epoch=torch_batches * BATCH,
            )
        )
    return Scenario(
        "s3",
        f"{n:,} samples of {SAMPLE_BYTES // 1024} KiB in {shards} shards on a local moto S3 "
        f"server; batch {BATCH}",
        n,
        BATCH,
        contenders,
        targets=[
            Target("ladle s3 warm cache", "ladle", WARM_TARGET),
            Target("ladle s3 cold", "torch", COLD_TARGET),
        ],
        num_workers=WORKERS,
        persistent_workers=setup.persistent_workers,
        rounds=3,
        bytes_per_sample=SAMPLE_BYTES,
        close=stack.close,
    )


def main(argv: list[str] | None = None) -> int:
    import warnings

    # torch warns once per worker that the arrays it wraps are read-only (boto3's bytes)
    warnings.filterwarnings("ignore", "The given NumPy array is not writable")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{SAMPLES_QUICK} samples")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    report = run(args.rounds, args.quick)
    for name, value in report["median_samples_per_s"].items():
        print(f"{name:30s} {value:10,.0f} samples/s")
    verdicts = []
    for name, check in report["checks"].items():
        ok = check["ratio"] >= check["target"]
        verdicts.append(ok)
        print(
            f"{name:30s} {check['ratio']:6.2f}x  (target >= {check['target']})  "
            f"{'PASS' if ok else 'MISS'}"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())

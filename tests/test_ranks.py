"""Sharding across ranks: ``DataLoader(distributed=...)``, the ranks it finds, and the global
stream that stays the same on any number of ranks, through a resume on another number."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ladle
from ladle.ranks import detect_ranks, resolve_ranks

TESTS = os.path.dirname(os.path.abspath(__file__))


class Named(ladle.Dataset[np.ndarray]):
    """Each sample names its index, and a sample_rng() draw."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> np.ndarray:
        return np.array([index, ladle.sample_rng().integers(1 << 30)])


def rank_loaders(world: int, n: int = 50, **options: Any) -> list[ladle.DataLoader]:
    options = {"global_batch_size": 12, "shuffle": True, "seed": 7, **options}
    return [
        ladle.DataLoader(Named(n), distributed=ladle.Ranks(rank, world), **options)
        for rank in range(world)
    ]


def epoch(loaders: list[ladle.DataLoader]) -> list[list[list[int]]]:
    """One pass of every rank: per rank, its batches as lists of rows."""
    return [[batch.tolist() for batch in loader] for loader in loaders]


def global_steps(per_rank: list[list[Any]]) -> list[list[tuple[int, ...]]]:
    """The global batches: each step's rows over all ranks, sorted."""
    counts = {len(batches) for batches in per_rank}
    assert len(counts) == 1, f"ranks yielded {counts} batches"
    return [
        sorted(tuple(row) for batches in per_rank for row in batches[step])
        for step in range(counts.pop())
    ]


def real(steps: list[list[tuple[int, ...]]]) -> list[list[tuple[int, ...]]]:
    """``steps`` without the padding of the last one: the repeats of indices the epoch has
    already given."""
    if not steps:
        return steps
    seen = {row[0] for step in steps[:-1] for row in step}
    last = []
    for row in steps[-1]:  # a repeat is the very sample: the same index, the same draws
        if row[0] not in seen:
            seen.add(row[0])
            last.append(row)
    return [*steps[:-1], last]


# -- the ranks ---------------------------------------------------------------------------------


def test_ranks_from_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert detect_ranks() == ladle.Ranks(2, 4, 0, "environment")
    assert resolve_ranks(True) == ladle.Ranks(2, 4, 0, "environment")


def test_ranks_half_set_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ValueError, match="sets RANK but not WORLD_SIZE"):
        detect_ranks()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer"):
        detect_ranks()
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(ValueError, match="RANK=1 and WORLD_SIZE=1 name no rank"):
        detect_ranks()


@pytest.mark.parametrize("initialized", [True, False])
def test_ranks_from_jax_once_its_processes_are_initialised(
    monkeypatch: pytest.MonkeyPatch, initialized: bool
) -> None:
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    fake = types.SimpleNamespace(
        process_index=lambda: 1,
        process_count=lambda: 3,
        distributed=types.SimpleNamespace(is_initialized=lambda: initialized),
    )
    monkeypatch.setitem(sys.modules, "jax", fake)
    if initialized:
        assert detect_ranks() == ladle.Ranks(1, 3, None, "jax")
    else:  # imported (by a dependency, say) is not a job of many processes
        with pytest.raises(RuntimeError, match=r"jax\.distributed is not initialised"):
            detect_ranks()


def test_no_ranks_found_says_how_to_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    with pytest.raises(RuntimeError, match=r"distributed=True found no ranks.*torchrun"):
        ladle.DataLoader(Named(10), batch_size=2, distributed=True)


def test_distributed_argument_is_checked() -> None:
    with pytest.raises(TypeError, match="distributed should be True"):
        ladle.DataLoader(Named(10), batch_size=2, distributed="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rank=3 names no rank of world_size=2"):
        ladle.Ranks(3, 2)
    with pytest.raises(ValueError, match="world_size"):
        ladle.Ranks(0, 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"global_batch_size": 3, "world": 4}, "smaller than the world size 4"),
        ({"batch_size": 4, "global_batch_size": 12, "world": 2}, "global batch of 8"),
        ({"batch_size": None}, "batch_size=None is not allowed"),
        ({"generator": np.random.default_rng(0)}, "pass seed=<int> instead of generator="),
        ({"sampler": ladle.RandomSampler(range(10))}, "has no seed"),
        ({"sampler": [0, 1, 2]}, "an order every rank computes alike"),
        ({"sampler": ladle.DistributedSampler(range(10), 2, 0)}, "would share that again"),
        ({"batch_sampler": [[0, 1]], "batch_size": 1}, "mutually exclusive with distributed"),
        ({"global_batch_size": 0}, "global_batch_size should be a positive integer"),
        ({"global_batch_size": 2.5}, "global_batch_size should be a positive integer"),
    ],
)
def test_distributed_refuses_what_ranks_cannot_agree_on(
    options: dict[str, Any], message: str
) -> None:
    world = options.pop("world", 2)
    with pytest.raises(ValueError, match=message):
        ladle.DataLoader(Named(10), distributed=ladle.Ranks(0, world), **options)


def test_distributed_refuses_an_iterable_dataset() -> None:
    class Stream(ladle.IterableDataset[int]):
        def __iter__(self) -> Iterator[int]:
            yield from range(4)

    with pytest.raises(ValueError, match="is an IterableDataset, which decides its own"):
        ladle.DataLoader(Stream(), batch_size=2, distributed=ladle.Ranks(0, 2))


def test_the_batch_sampler_alone_checks_the_order_and_records_the_global_batch() -> None:
    ranks = ladle.Ranks(0, 2)
    with pytest.raises(ValueError, match="has no seed"):
        ladle.DistributedBatchSampler(ladle.RandomSampler(range(10)), 4, False, ranks)
    with pytest.raises(ValueError, match="would share that again"):
        ladle.DistributedBatchSampler(ladle.DistributedSampler(range(10), 2, 0), 4, False, ranks)

    def loader(size: int) -> ladle.DataLoader:
        sampler = ladle.RandomSampler(range(20), seed=1)
        batches = ladle.DistributedBatchSampler(sampler, size, False, ranks)
        return ladle.DataLoader(Named(20), batch_sampler=batches)

    six = loader(6)
    next(iter(six))
    with pytest.raises(ValueError, match=r"global_batch_size=6, but this loader has .*=5"):
        loader(5).load_state_dict(six.state_dict())


def test_a_state_moves_between_plain_and_distributed_loaders_never() -> None:
    plain = ladle.DataLoader(Named(50), batch_size=12, shuffle=True, seed=7)
    shared = rank_loaders(1)[0]
    with pytest.raises(ValueError, match="made by a DataLoader without distributed="):
        shared.load_state_dict(plain.state_dict())
    with pytest.raises(ValueError, match="made by a DataLoader with distributed="):
        plain.load_state_dict(shared.state_dict())


def test_a_seed_mismatch_across_ranks_gives_advice_that_works() -> None:
    state = rank_loaders(2, seed=5)[0].state_dict()
    loader = rank_loaders(2, seed=None)[0]
    with pytest.raises(ValueError, match=r"build it with seed=5$"):
        loader.load_state_dict(state)


def test_each_rank_seeds_its_workers_own_global_generators() -> None:
    """np.random inside __getitem__ differs between ranks (as under torch, where each rank
    draws its own base seed), while sample_rng() gives the same draws on any world size."""

    class Globals(ladle.Dataset[np.ndarray]):
        def __len__(self) -> int:
            return 8

        def __getitem__(self, index: int) -> np.ndarray:
            info = ladle.get_worker_info()
            assert info is not None
            draw = ladle.sample_rng().integers(1 << 30)
            return np.array([index, np.random.randint(1 << 30), draw, info.seed])

    def rows(rank: int) -> np.ndarray:
        loader = ladle.DataLoader(
            Globals(), batch_size=2, seed=3, num_workers=1, distributed=ladle.Ranks(rank, 2)
        )
        return np.concatenate(list(loader))

    zero, one = rows(0), rows(1)
    assert zero[0, 3] != one[0, 3]  # the workers' seeds
    assert not np.array_equal(zero[:, 1], one[:, 1])
    single = ladle.DataLoader(
        Globals(), batch_size=4, seed=3, num_workers=1, distributed=ladle.Ranks(0, 1)
    )
    by_index = {int(row[0]): int(row[2]) for row in np.concatenate(list(single))}
    assert all(by_index[int(row[0])] == int(row[2]) for row in np.concatenate([zero, one]))


def test_global_batch_size_without_distributed_is_refused() -> None:
    with pytest.raises(ValueError, match="but distributed is off"):
        ladle.DataLoader(Named(10), global_batch_size=4)


def test_without_seed_every_rank_draws_seed_zero() -> None:
    loaders = [
        ladle.DataLoader(Named(30), batch_size=3, shuffle=True, distributed=ladle.Ranks(r, 2))
        for r in range(2)
    ]
    assert [loader.seed for loader in loaders] == [0, 0]
    steps = global_steps(epoch(loaders))
    indices = [row[0] for step in steps for row in step]
    assert sorted(indices) == list(range(30))


# -- the global stream ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    size=st.integers(1, 9),
    world=st.integers(1, 4),
    drop_last=st.booleans(),
    shuffle=st.booleans(),
)
def test_shares_are_disjoint_complete_and_the_same_for_any_world(
    n: int, size: int, world: int, drop_last: bool, shuffle: bool
) -> None:
    if size < world:
        return
    options = {"global_batch_size": size, "drop_last": drop_last, "shuffle": shuffle}
    reference = global_steps(epoch(rank_loaders(1, n, **options)))
    per_rank = epoch(rank_loaders(world, n, **options))
    steps = global_steps(per_rank)
    assert len(steps) == (n // size if drop_last else -(-n // size))
    assert real(steps) == reference
    for step in steps:  # every rank has a share, the shares differ by at most one
        sizes = [len(batches[steps.index(step)]) for batches in per_rank]
        assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
        assert len(step) % world == 0 or len(step) == size
    indices = [row[0] for step in real(steps) for row in step]
    assert len(indices) == len(set(indices))
    expected = n // size * size if drop_last else n
    assert len(indices) == expected


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("n", [24, 23, 2])
def test_same_batches_as_torchs_distributed_sampler(world: int, drop_last: bool, n: int) -> None:
    """With a global batch of world x b, rank r gets what torch's DistributedSampler gives
    rank r under a DataLoader of batch_size=b (without shuffling: the same order)."""
    torch_data = pytest.importorskip("torch.utils.data")
    batch = 3
    for rank in range(world):
        sampler = torch_data.DistributedSampler(
            range(n), num_replicas=world, rank=rank, shuffle=False, drop_last=drop_last
        )
        expected = list(torch_data.BatchSampler(sampler, batch, drop_last))
        loader = ladle.DataLoader(
            ladle.TensorDataset(np.arange(n)),
            batch_size=batch,
            drop_last=drop_last,
            distributed=ladle.Ranks(rank, world),
        )
        assert [b[0].tolist() for b in loader] == expected
        assert len(loader) == len(expected)


def test_epochs_differ_and_repeat_with_the_seed() -> None:
    first = global_steps(epoch(rank_loaders(2)))
    loaders = rank_loaders(2)
    one, two = global_steps(epoch(loaders)), global_steps(epoch(loaders))
    assert one == first and one != two


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("world", [1, 3, 4])
def test_a_state_saved_on_two_ranks_resumes_on_another_number(workers: int, world: int) -> None:
    uninterrupted = rank_loaders(1)
    reference = [real(global_steps(epoch(uninterrupted))) for _ in range(2)]
    two = rank_loaders(2, num_workers=workers)
    iterators = [iter(loader) for loader in two]
    prefix = [[next(iterator).tolist() for _ in range(2)] for iterator in iterators]
    states = [json.loads(json.dumps(loader.state_dict())) for loader in two]
    assert states[0] == states[1]  # any rank's copy restores the job
    del iterators
    resumed = rank_loaders(world, num_workers=workers)
    for loader in resumed:
        loader.load_state_dict(states[0])
    rest = epoch(resumed)
    following = epoch(resumed)
    epoch0 = global_steps(prefix) + global_steps(rest)
    assert real(epoch0) == reference[0]
    assert real(global_steps(following)) == reference[1]
    for loader in two + resumed:
        loader.close()


def test_resume_with_another_global_batch_is_refused() -> None:
    state = rank_loaders(2)[0].state_dict()
    loader = ladle.DataLoader(
        Named(50), batch_size=4, shuffle=True, seed=7, distributed=ladle.Ranks(0, 2)
    )
    with pytest.raises(ValueError, match=r"global_batch_size=12, but this loader has .*=8"):
        loader.load_state_dict(state)


# -- a real torchrun job -------------------------------------------------------------------------


def torchrun(world: int, out: str, mode: str) -> None:
    """``torchrun --nproc_per_node=world ranks_job.py out mode``, in its own process group,
    killed whole if it outlives the limit."""
    os.makedirs(out, exist_ok=True)
    command = [
        os.path.join(os.path.dirname(sys.executable), "torchrun"),
        "--standalone",
        f"--nproc_per_node={world}",
        os.path.join(TESTS, "ranks_job.py"),
        out,
        mode,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError(f"torchrun {mode} on {world} ranks hung:\n{output.decode()}") from None
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, output.decode()


def job_epochs(out: str, world: int) -> list[list[Any]]:
    """Per epoch, per rank, the batches the job's ranks wrote."""
    ranks = []
    for rank in range(world):
        with open(os.path.join(out, f"rank{rank}.json")) as file:
            written = json.load(file)
        assert written["world"] == world
        ranks.append(written["epochs"])
    return [[ranks[rank][e] for rank in range(world)] for e in range(len(ranks[0]))]


def test_torchrun_ranks_share_the_stream_and_resume_on_other_world_sizes(
    tmp_path: Any,
) -> None:
    pytest.importorskip("torch.distributed")
    sys.path.insert(0, TESTS)
    try:
        import ranks_job
    finally:
        sys.path.remove(TESTS)
    one = [
        ladle.DataLoader(
            ranks_job.Named(),
            global_batch_size=ranks_job.GLOBAL,
            shuffle=True,
            seed=11,
            distributed=ladle.Ranks(0, 1),
        )
    ]
    reference = [real(global_steps(epoch(one))) for _ in range(2)]

    full = str(tmp_path / "full")
    torchrun(2, full, "full")
    for e, per_rank in enumerate(job_epochs(full, 2)):
        assert real(global_steps(per_rank)) == reference[e]
        for step in range(len(per_rank[0])):
            first, second = ({row[0] for row in batches[step]} for batches in per_rank)
            assert not (first & second) or step == len(per_rank[0]) - 1

    states = []
    for rank in range(2):  # the checkpoint taken after CUT steps of epoch 0
        with open(os.path.join(full, f"state{rank}.json")) as file:
            states.append(json.load(file))
    assert states[0] == states[1]
    prefix = [batches[: ranks_job.CUT] for batches in job_epochs(full, 2)[0]]
    out = os.path.join(full, "resume3")
    torchrun(3, out, "resume")
    rest, following = job_epochs(out, 3)
    assert real(global_steps(prefix) + global_steps(rest)) == reference[0]
    assert real(global_steps(following)) == reference[1]
    # on 1 rank, the job's state in this process (torchrun for one rank would add 7 s)
    alone = one[0]
    alone.load_state_dict(states[0])
    rest, following = epoch(one), epoch(one)
    assert real(global_steps(prefix) + global_steps(rest)) == reference[0]
    assert real(global_steps(following)) == reference[1]


def test_a_jax_multi_process_job_shards_by_its_process_index(tmp_path: Any) -> None:
    # two real processes of one JAX job, with no torchrun environment: each loader finds its
    # rank from jax.process_index() / process_count() and the ranks share the global stream
    pytest.importorskip("jax")
    from storage_support import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    job = os.path.join(TESTS, "jax_ranks_job.py")
    outs = [str(tmp_path / f"process{i}.json") for i in range(2)]
    processes = [
        subprocess.Popen(
            [sys.executable, job, str(port), str(i), outs[i]],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for i in range(2)
    ]
    try:
        outputs = [process.communicate(timeout=120)[0].decode() for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output
    written = []
    for out in outs:
        with open(out) as file:
            written.append(json.load(file))
    assert [w["rank"] for w in written] == [[0, 2, "jax"], [1, 2, "jax"]]
    one = [
        ladle.DataLoader(
            Named(50), batch_size=8, shuffle=True, seed=3, distributed=ladle.Ranks(0, 1)
        )
    ]
    for e in range(2):
        per_rank = [w["epochs"][e] for w in written]
        assert real(global_steps(per_rank)) == real(global_steps(epoch(one)))
        firsts = [{row[0] for batch in batches for row in batch} for batches in per_rank]
        assert firsts[0] | firsts[1] == set(range(50))

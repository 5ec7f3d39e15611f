"""How much memory the transport holds: slabs sized to the batch, no more free slabs than the
in-flight window needs, sparse slabs whose pages are taken only as arrays are written (and
released after writing where that is cheap), and the first batches in a slab, not pickled."""

from __future__ import annotations

import gc
import mmap
import os
import re
import time

import numpy as np
import pytest
from workers_support import Pairs

import ladle
from ladle._runtime import shm, slab_writer
from ladle._runtime.shm import UNSIZED, SlabPool, sparse_slabs
from ladle._runtime.slab_writer import SlabWriter

MIB = 1 << 20
sparse_only = pytest.mark.skipif(not sparse_slabs(), reason="needs MADV_POPULATE_WRITE")


def pages(nbytes: int) -> int:
    return -(-nbytes // mmap.PAGESIZE) * mmap.PAGESIZE


def allocated(directory: str) -> int:
    """Bytes of memory the slab files in ``directory`` take (not their sizes)."""
    return sum(
        os.stat(os.path.join(directory, name)).st_blocks * 512
        for name in os.listdir(directory)
        if not name.endswith(".lock")
    )


def our_mappings() -> list[int]:
    """Sizes of this process's mappings of its own slabs, unlinked ones too: one per slab a
    pool holds, or a batch still views."""
    pattern = re.compile(rf"^([0-9a-f]+)-([0-9a-f]+) .*/ladle-{os.getpid()}-[0-9a-f]+-\d+")
    with open("/proc/self/maps") as maps:
        found = [pattern.match(line) for line in maps]
    return [int(m.group(2), 16) - int(m.group(1), 16) for m in found if m is not None]


# -- the pool --------------------------------------------------------------------------------


def test_slabs_fit_the_batch_and_leave_room_only_once_batches_differ(directory: str) -> None:
    pool = SlabPool(directory, 1, 2)
    pool.need(3 * MIB + 100)
    assert pool.size == pages(3 * MIB + 100), "the first size exactly, in whole pages"
    pool.need(MIB)  # a short last batch
    assert pool.size == pages(3 * MIB + 100)
    pool.need(4 * MIB)  # sizes differ: the next slab leaves room to grow
    assert pool.size == pages(5 * MIB)
    ref = pool.lend(0)
    assert ref is not None and ref.size == pool.size
    assert os.path.getsize(os.path.join(directory, ref.name)) == ref.size
    pool.close()


def test_a_pool_keeps_no_more_free_slabs_than_keep_per_worker(directory: str) -> None:
    workers, keep = 2, 3
    pool = SlabPool(directory, workers, keep)
    pool.need(MIB)
    refs = [pool.lend(w) for w in (0, 1) for _ in range(7)]  # a user holding many batches
    assert pool.footprint() == (14, 14 * MIB)
    for ref in refs:
        pool.give_back(ref)
    assert pool.footprint() == (workers * keep, workers * keep * MIB)
    assert len(os.listdir(directory)) == workers * keep + 1  # and the lock
    pool.close()
    assert pool.footprint() == (0, 0)


@sparse_only
def test_before_any_batch_has_a_size_a_sparse_slab_is_lent(directory: str) -> None:
    pool = SlabPool(directory, 1, 2)
    ref = pool.lend(0)
    assert ref is not None and ref.size == UNSIZED
    assert allocated(directory) == 0, "sizing the file takes no memory"
    writer = SlabWriter(directory)
    writer.begin(ref)
    batch = np.arange(MIB // 8, dtype=np.float64)
    payload, used, needed = writer.encode({"x": batch})
    assert used and needed == MIB and isinstance(payload["x"], shm.ShmArray)
    assert allocated(directory) == MIB, "only the pages written"
    pool.need(needed)
    assert pool.size == MIB
    writer.close()
    pool.close()


@sparse_only
def test_batches_that_need_no_slab_are_lent_none_once_one_has_said_so(directory: str) -> None:
    pool = SlabPool(directory, 1, 2)
    first = pool.lend(0)
    assert first is not None and first.size == UNSIZED
    pool.give_back(first)
    pool.need(0)  # small arrays only: everything travelled in the pickle
    assert pool.lend(0) is None
    pool.close()


@sparse_only
def test_sized_slabs_take_only_the_pages_written_too(directory: str) -> None:
    pool = SlabPool(directory, 1, 2)
    pool.need(4 * MIB)
    ref = pool.lend(0)
    assert ref is not None and allocated(directory) == 0
    writer = SlabWriter(directory)
    writer.begin(ref)
    writer.encode(np.ones(MIB, np.uint8))
    assert allocated(directory) == MIB
    writer.close()
    pool.close()


# -- the writer ------------------------------------------------------------------------------


def deleted_mappings() -> int:
    """This process's mappings of slab files that are gone from the directory (destroyed)."""
    with open("/proc/self/maps") as maps:
        return sum("/ladle-" in line and line.endswith("(deleted)\n") for line in maps)


def test_a_worker_unmaps_the_slabs_the_main_process_destroyed(directory: str) -> None:
    # A pass abandoned with tasks in flight (break, with persistent workers): the next pass is
    # lent new slabs, and the old ones, back past ``keep``, are destroyed. The worker had
    # mapped them: kept in its LRU they kept their memory, counted in /dev/shm's use, 32
    # batches' worth a worker.
    pool = SlabPool(directory, 1, 1)
    pool.need(MIB)
    writer = SlabWriter(directory)
    for _ in range(6):
        refs = [pool.lend(0) for _ in range(3)]  # all new but the free one
        for ref in refs:
            writer.begin(ref)
            writer.encode(np.ones(MIB, np.uint8))
        for ref in refs:
            pool.give_back(ref)  # one is kept, two destroyed
    gc.collect()
    assert deleted_mappings() <= 2, "only the slabs destroyed since the last new one"
    writer.close()
    pool.close()


def test_an_array_whose_pages_cannot_be_had_travels_pickled(
    directory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = SlabPool(directory, 1, 2)
    pool.need(2 * MIB)
    writer = SlabWriter(directory)
    writer.begin(pool.lend(0))
    monkeypatch.setattr(slab_writer, "reserve_pages", lambda buffer, offset, nbytes: False)
    big = np.arange(MIB // 8, dtype=np.float64)
    payload, used, needed = writer.encode([big])
    assert not used and needed == big.nbytes
    np.testing.assert_array_equal(payload[0], big)
    writer.close()
    pool.close()


@sparse_only
def test_pages_are_released_after_writing_only_where_mapping_them_again_is_cheap(
    directory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = SlabPool(directory, 1, 2)
    pool.need(4 * MIB)
    writer = SlabWriter(directory)
    batch = np.ones(4 * MIB, np.uint8)
    names = set()

    def load(seconds: float, fill: int = 1) -> bool:
        batch[:] = fill
        ref = pool.lend(0)  # the one slab, back each time its view has died
        assert ref is not None
        names.add(ref.name)
        writer.begin(ref)
        time.sleep(seconds)  # the dataset's work
        payload, used, _ = writer.encode(batch)
        assert used
        view = pool.views(ref, payload)  # the main process's view: the data stayed
        assert (view == fill).all()
        return writer.released()

    assert load(0.0), "not measured yet: released, so that the next write measures it"
    assert load(0.2, fill=7), "4 MiB mapped again in far less than 5% of 0.2 s"
    monkeypatch.setattr(slab_writer, "_RELEASE_SHARE", 0.0)  # any cost is too much
    kept = [load(0.0) for _ in range(slab_writer._REMEASURE)]
    assert not any(kept[:-1]) and kept[-1], "kept mapped, but measured again now and then"
    assert len(names) == 1
    writer.close()
    pool.close()


@sparse_only
def test_small_batches_stay_mapped(directory: str) -> None:
    pool = SlabPool(directory, 1, 2)
    size = slab_writer._RELEASE_MIN_BYTES // 2
    pool.need(size)
    writer = SlabWriter(directory)
    for fill in range(3):
        ref = pool.lend(0)
        assert ref is not None
        writer.begin(ref)
        time.sleep(0.05)  # slow enough that mapping the pages again would look cheap
        payload, used, _ = writer.encode(np.full(size, fill, np.uint8))
        assert used and not writer.released()
        assert (pool.views(ref, payload) == fill).all()
    writer.close()
    pool.close()


# -- a loader --------------------------------------------------------------------------------


def our_files() -> list[str]:
    directory = shm.shm_directory()
    names = os.listdir(directory)
    ours = [n for n in names if n.startswith(f"ladle-{os.getpid()}-") and "." not in n]
    return [os.path.join(directory, n) for n in ours]


def test_a_loader_holds_no_more_slabs_than_its_in_flight_window() -> None:
    workers, prefetch = 2, 2
    shape = (64, 64, 16)  # 256 KiB a sample in float32, 2 MiB a batch of 8
    batch_bytes = pages(8 * int(np.prod(shape)) * 4)
    loader = ladle.DataLoader(
        Pairs(160, shape), batch_size=8, num_workers=workers, prefetch_factor=prefetch
    )
    window = workers * (prefetch + 1)  # each worker's prefetched batches and the one held
    held = []
    for batch in loader:  # the user keeps a whole epoch: 20 slabs, viewed
        held.append(batch)
        files = our_files()  # named while the pass runs
        taken = sum(os.stat(path).st_blocks * 512 for path in files)
        assert taken <= len(files) * batch_bytes, "memory for the batch, not more"
    assert len(our_mappings()) >= 20
    del held, batch
    gc.collect()
    most = 0
    for batch in loader:  # the 20 came back: each worker keeps prefetch + 1 of them
        assert batch[0].shape == (8, *shape)
        most = max(most, len(our_mappings()))
        for size in our_mappings():
            assert size in (batch_bytes, UNSIZED), (size, batch_bytes)
    del batch
    assert most <= window, (most, window)
    loader.close()
    gc.collect()
    assert our_mappings() == []


def test_the_first_batches_arrive_in_slabs_not_pickled() -> None:
    loader = ladle.DataLoader(Pairs(64, (64, 64, 16)), batch_size=8, num_workers=2)
    for batch in loader:
        base = batch[0]
        while isinstance(base, np.ndarray):
            base = base.base
        in_slab = isinstance(base.obj if isinstance(base, memoryview) else base, mmap.mmap)
        assert in_slab == sparse_slabs()
    loader.close()

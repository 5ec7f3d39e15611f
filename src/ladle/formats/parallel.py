"""``write_shards(..., jobs=N)``: a map-style dataset written by N local processes as parts.

The dataset is cut on its shard grid (``records.grid_rule``), which does not depend on N, into
a few contiguous ranges per job; each range is one part (``parts.write_attempt``), and the
parts are committed in order. So the files are those of ``jobs=1``, byte for byte. If anything
fails, every job is stopped and the parts of this write are removed; what ``out_dir`` held
before is left as it was.
"""

from __future__ import annotations

import itertools
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladle._runtime.jobs import run_jobs
from ladle.formats.parts import PARTS, PartManifest, commit_parts, committed_shards, write_attempt
from ladle.formats.progress import Progress
from ladle.formats.records import ShardRule, grid_rule, is_map_style, samples

__all__ = ["TASKS_PER_JOB", "write_parallel"]

#: ranges per job: smaller ones show progress sooner and even out jobs that run at other speeds
TASKS_PER_JOB = 4


@dataclass(frozen=True)
class _Range:
    """Part ``part``: records ``start`` to ``stop`` of ``dataset`` (a list is sliced to them
    before it travels: ``offset`` is where the slice starts)."""

    part: int
    dataset: Any
    offset: int
    start: int
    stop: int
    directory: str
    rule: ShardRule
    token: str


def _write_range(task: _Range) -> PartManifest:
    items = samples(task.dataset, task.start - task.offset, task.stop - task.offset)
    return write_attempt(
        items, Path(task.directory), task.part, task.rule, task.start, token=task.token
    )


def plan(records: int, step: int, jobs: int) -> list[tuple[int, int]]:
    """Contiguous ranges covering ``records``, each a whole number of ``step``-record shards
    (the last may end short), about TASKS_PER_JOB per job."""
    shards = -(-records // step)
    count = max(1, min(shards, jobs * TASKS_PER_JOB))
    cuts = [min(records, (i * shards // count) * step) for i in range(count + 1)]
    cuts[-1] = records
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a] or [(0, records)]


def write_parallel(
    dataset: Any,
    directory: Path,
    *,
    jobs: int,
    shard_bytes: int,
    samples_per_shard: int | None,
    metadata: dict[str, Any],
    progress: bool,
    overwrite: bool,
) -> Path:
    if not is_map_style(dataset):
        raise ValueError(
            f"jobs={jobs} splits a dataset into ranges of indices, so it needs a map-style "
            f"dataset (len and [i]), but got {type(dataset).__name__}; pass jobs=1 to write an "
            f"iterable, or write its pieces with ladle.formats.write_part"
        )
    committed_shards(directory, overwrite)  # refuse before any work is done
    rule = grid_rule(dataset, shard_bytes, samples_per_shard)
    n = len(dataset)
    step = rule.step or max(n, 1)
    token = f"jobs-{secrets.token_hex(6)}"
    tasks = []
    for part, (start, stop) in enumerate(plan(n, step, jobs)):
        piece, offset = dataset, 0
        if isinstance(dataset, list | tuple):
            piece, offset = dataset[start:stop], start
        tasks.append(_Range(part, piece, offset, start, stop, str(directory), rule, token))
    try:
        with Progress(n, f"writing {directory} ({jobs} jobs)", progress) as bar:
            manifests = run_jobs(
                _write_range, tasks, jobs, lambda _, manifest: bar.update(manifest.records)
            )
        return commit_parts(
            directory, manifests, parts=len(tasks), metadata=metadata, overwrite=overwrite
        )
    finally:
        staging = directory / PARTS
        for path in staging.glob(f"*{token}"):
            shutil.rmtree(path, ignore_errors=True)
        if staging.is_dir() and not any(staging.iterdir()):
            staging.rmdir()

"""A Ray Data job writes a shard set: each task one part, the driver commits (runs with Ray)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

RAY_JOB = """
import json, shutil, sys, tempfile
import numpy as np
import ray
from ladle.formats import ShardDataset, commit_parts, write_part

OUT, N, BATCH = sys.argv[1], 1000, 100

def sample(i):
    return {"x": np.full(i % 7 + 1, i, np.int64), "label": int(i % 10), "name": f"n{i}"}

def write(batch):
    ids = batch["id"].tolist()
    # one block, so one task, per part: batches that spanned blocks would start anywhere, and
    # two tasks would write the same part number (commit_parts refuses that)
    assert ids == list(range(ids[0], ids[0] + BATCH)) and ids[0] % BATCH == 0, ids[:3]
    manifest = write_part((sample(i) for i in ids), OUT, part=ids[0] // BATCH, shard_bytes=2000)
    return {"manifest": [json.dumps(manifest.to_json())]}

scratch = tempfile.mkdtemp(prefix="ladle-ray-")  # short: Ray's socket paths must fit
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=scratch)
try:
    blocks = ray.data.range(N, override_num_blocks=N // BATCH)
    rows = blocks.map_batches(write, batch_size=None).take_all()
finally:
    ray.shutdown()
    shutil.rmtree(scratch, ignore_errors=True)
manifests = [json.loads(row["manifest"]) for row in rows]
commit_parts(OUT, manifests, parts=N // BATCH)
dataset = ShardDataset(OUT)
assert len(dataset) == N
for i in range(N):
    got, want = dataset[i], sample(i)
    assert got["label"] == want["label"] and got["name"] == want["name"]
    assert got["x"].dtype == want["x"].dtype and np.array_equal(got["x"], want["x"])
print(json.dumps({"parts": len(manifests), "shards": len(dataset.shard_files)}))
"""


def test_a_ray_data_job_writes_parts_and_the_driver_commits(tmp_path: Path) -> None:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", RAY_JOB, str(tmp_path / "shards")],
        capture_output=True,
        text=True,
        timeout=180,  # Ray starts its own processes: a hang fails this test, not the suite
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["parts"] == 10 and report["shards"] > 10

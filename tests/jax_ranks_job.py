"""One process of a 2-process JAX job (``jax.distributed`` on CPU, coordinator on
127.0.0.1): ``python jax_ranks_job.py PORT PROCESS_ID OUT``. Its loader finds its rank from JAX
alone (no torchrun environment), and writes what it read to OUT as JSON."""

from __future__ import annotations

import json
import os
import sys

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_ranks import Named

import ladle

port, process_id, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
jax.distributed.initialize(
    coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id
)
try:
    loader = ladle.DataLoader(Named(50), batch_size=4, shuffle=True, seed=3, distributed=True)
    ranks = loader.ranks
    assert ranks is not None
    with open(out, "w") as file:
        json.dump(
            {
                "rank": [ranks.rank, ranks.world_size, ranks.source],
                "epochs": [[batch.tolist() for batch in loader] for _ in range(2)],
            },
            file,
        )
finally:
    jax.distributed.shutdown()

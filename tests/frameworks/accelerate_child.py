"""accelerate scenarios, one rank of a 2-process gloo job: ``accelerate_child.py TMPDIR LOADER...``.

LOADER is ``torch``, ``ladle`` (ladle.torch.DataLoader handed to ``prepare`` as it is) or
``ladle-recipe`` (the same after ``fw_common.keep_ladle_engine``; it must come last, as the recipe
stays in force). For each, on 40 samples in batches of 4, shuffled (5 batches a rank an epoch):

- shard: ``Accelerator().prepare(loader)``, 2 epochs, 2 workers: the indices each rank sees;
- accumulate: ``Accelerator(gradient_accumulation_steps=2)``, 2 epochs: ``sync_gradients``
  at every batch inside ``accelerator.accumulate(model)``;
- resume-e0 / resume-e1: accelerate's documented pattern with ``use_seedable_sampler=True``:
  an interrupted run saves ``save_state`` after 2 batches of epoch 0 (after 3 of epoch 1); a
  fresh run (new objects, ``set_seed``) calls ``load_state`` and trains on
  ``skip_first_batches(loader, n)`` for that epoch, then on the loader for the next;
- stateful: ``DataLoaderConfiguration(use_stateful_dataloader=True)`` (needs torchdata);
- state-e0 / state-e1 (not for the plain ladle route, whose prepared loader wraps a torch one):
  the same resumes through the prepared loader's own ``state_dict()`` / ``load_state_dict()``
  (accelerate's ``DataLoaderAdapter`` hands them to the loader it wraps) instead of
  ``skip_first_batches``.

Each run reports ``[epoch, sample indices]`` per batch; "engine" names the base loader the
prepared one wraps and the iterator it makes.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Iterable
from typing import Any

import fw_common as fw
import torch

warnings.filterwarnings("ignore")

from accelerate import Accelerator  # noqa: E402
from accelerate.utils import DataLoaderConfiguration, set_seed  # noqa: E402

N, BATCH, EPOCHS, ACCUMULATE = 40, 4, 2, 2
RESUMES = {"e0": (0, 2), "e1": (1, 3)}  # (epoch, batches already trained in it)


def setup(
    loader: type, workers: int = 0, **config: Any
) -> tuple[Accelerator, torch.nn.Module, Any, Any]:
    set_seed(0)
    acc = Accelerator(cpu=True, **config)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    data = loader(fw.Indexed(N), batch_size=BATCH, shuffle=True, num_workers=workers)
    model, opt, prepared = acc.prepare(model, opt, data)
    return acc, model, opt, prepared


def step(acc: Accelerator, model: Any, opt: Any, batch: Any) -> None:
    _, features = batch
    acc.backward(model(features).pow(2).mean())
    opt.step()
    opt.zero_grad()


def shard(loader: type) -> dict[str, Any]:
    *_, prepared = setup(loader, workers=2)
    seen, types = [], set()
    for epoch in range(EPOCHS):
        for batch in prepared:
            types.add(fw.describe(batch))
            seen.append([epoch, batch[0].tolist()])
    return {"seen": seen, "types": sorted(types), "engine": fw.engine(prepared)}


def accumulate(loader: type) -> dict[str, Any]:
    acc, model, opt, prepared = setup(loader, gradient_accumulation_steps=ACCUMULATE)
    syncs = []
    for _ in range(EPOCHS):
        for batch in prepared:
            with acc.accumulate(model):
                step(acc, model, opt, batch)
                syncs.append(acc.sync_gradients)
    return {"syncs": syncs, "engine": fw.engine(prepared)}


SEEDABLE = {"dataloader_config": DataLoaderConfiguration(use_seedable_sampler=True)}


def train(
    acc: Accelerator, model: Any, opt: Any, prepared: Any, epochs: Iterable[int], stop: Any = None
) -> list[list[Any]]:
    """Trains over ``epochs``; ``stop(epoch, batches_done)`` ends the run when true."""
    seen = []
    for epoch in epochs:
        prepared.set_epoch(epoch)
        for done, batch in enumerate(prepared, 1):
            step(acc, model, opt, batch)
            seen.append([epoch, batch[0].tolist()])
            if stop is not None and stop(epoch, done):
                return seen
    return seen


def resume(loader: type, root: str, epoch: int, done: int, own_state: bool) -> dict[str, Any]:
    """The uninterrupted run, the interrupted one (saving), the resumed one."""
    acc, model, opt, prepared = setup(loader, **SEEDABLE)
    full = train(acc, model, opt, prepared, range(EPOCHS))
    folder = os.path.join(root, f"state-{epoch}-{done}-{own_state}")
    acc, model, opt, prepared = setup(loader, **SEEDABLE)
    head = train(acc, model, opt, prepared, range(EPOCHS), lambda e, d: (e, d) == (epoch, done))
    acc.save_state(folder)
    state = json.dumps(prepared.state_dict()) if own_state else None
    acc.wait_for_everyone()

    acc, model, opt, prepared = setup(loader, **SEEDABLE)
    acc.load_state(folder)
    engines = {}
    if own_state:
        prepared.load_state_dict(json.loads(state or "null"))
        tail = train(acc, model, opt, prepared, range(epoch, EPOCHS))
    else:
        skipped = acc.skip_first_batches(prepared, done)
        tail = train(acc, model, opt, skipped, [epoch])
        tail += train(acc, model, opt, prepared, range(epoch + 1, EPOCHS))
        engines["skipped"] = fw.engine(skipped)
    engines["prepared"] = fw.engine(prepared)
    return {"full": full, "head": head, "tail": tail, "engine": engines}


def stateful(loader: type) -> str:
    acc = Accelerator(
        cpu=True, dataloader_config=DataLoaderConfiguration(use_stateful_dataloader=True)
    )
    try:
        acc.prepare(loader(fw.Indexed(N), batch_size=BATCH))
    except ImportError as exc:
        return f"ImportError: {exc}"
    return "prepared"


def scenarios(name: str, root: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if name == "ladle-recipe":
        fw.keep_ladle_engine()
    loader = fw.loader_class(name.removesuffix("-recipe"))
    fw.attempt(results, "shard", lambda: shard(loader))
    fw.attempt(results, "accumulate", lambda: accumulate(loader))
    for key, (epoch, done) in RESUMES.items():
        fw.attempt(results, f"resume-{key}", lambda: resume(loader, root, epoch, done, False))  # noqa: B023
        if name != "ladle":  # the plain route wraps a torch DataLoader: no state to save
            fw.attempt(results, f"state-{key}", lambda: resume(loader, root, epoch, done, True))  # noqa: B023
    fw.attempt(results, "stateful", lambda: stateful(loader))
    return results


def main() -> None:
    root, *loaders = sys.argv[1:]
    results: dict[str, Any] = {
        "rank": int(os.environ["RANK"]),
        "config": {"n": N, "batch": BATCH, "epochs": EPOCHS, "accumulate": ACCUMULATE},
    }
    for name in loaders:
        fw.attempt(results, name, lambda: scenarios(name, os.path.join(root, name)))  # noqa: B023
    fw.emit(results)


if __name__ == "__main__":
    main()

"""A DataLoader's configuration: its arguments, validated once at construction and again on
every assignment, held in frozen dataclasses.

The arguments take torch's meaning, and the combinations torch rejects raise ``ValueError``
with a message that names the argument and the fix. What decides the batches (dataset, sampler,
batch sampler, batch size, drop_last) is fixed at construction, as in torch; the rest may be
reassigned, and is checked again when it is.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ladle.callers import outside_ladle
from ladle.collate import default_collate, default_convert
from ladle.dataset import is_iterable_dataset
from ladle.distributed import DistributedBatchSampler, check_agreed_order
from ladle.errors import ArgumentError
from ladle.interop import converter
from ladle.random_sampler import RandomSampler
from ladle.ranks import Ranks, resolve_ranks
from ladle.sampler import BatchSampler, Sampler, SequentialSampler, check_positive_int
from ladle.seeding import check_generator, check_loader_seed, check_seed
from ladle.validation import check_bool, check_callable, check_choice, check_int, check_number

__all__ = [
    "FROZEN",
    "SETTINGS",
    "LoaderConfig",
    "Sampling",
    "Settings",
    "configure",
    "reconfigure",
    "reconfigure_all",
    "with_workers",
]

WORKER_TYPES = ("process", "thread")
#: Set at construction only: torch refuses to reassign these too.
FROZEN = frozenset(
    {"dataset", "batch_size", "shuffle", "sampler", "batch_sampler", "drop_last"}
    | {"persistent_workers", "seed", "distributed", "global_batch_size"}
)
#: May be reassigned; the whole configuration is checked again when one is.
SETTINGS = (
    "num_workers",
    "collate_fn",
    "pin_memory",
    "timeout",
    "worker_init_fn",
    "multiprocessing_context",
    "generator",
    "prefetch_factor",
    "pin_memory_device",
    "in_order",
    "worker_type",
    "output",
    "memory_budget",
)


@dataclass(frozen=True)
class Sampling:
    """What decides the batches: fixed for the loader's life."""

    dataset: Any
    is_iterable: bool
    shuffle: bool
    sampler: Any
    batch_sampler: Any
    batch_size: int | None
    drop_last: bool
    auto_collation: bool
    persistent_workers: bool
    ranks: Ranks | None = None  # distributed=: the ranks the batches are shared across
    global_batch_size: int | None = None  # distributed=: the batch summed over the ranks


@dataclass(frozen=True)
class Settings:
    """How the batches are made; ``given`` holds the arguments as passed, for re-checking."""

    given: Mapping[str, Any]
    num_workers: int
    collate_fn: Callable[[Any], Any]
    pin_memory: bool
    timeout: float
    worker_init_fn: Callable[[int], Any] | None
    context: Any  # a multiprocessing context, or None for the default
    generator: Any
    prefetch_factor: int | None  # None without workers; 2 when workers were given none
    pin_memory_device: str
    in_order: bool
    seed: int | None
    worker_type: str
    output: str | None
    convert: Callable[[Any], Any] | None
    # num_workers="auto" / prefetch_factor="auto": measured and chosen during the first pass
    # (see autotune.py); num_workers and prefetch_factor above are then the pass's start
    auto_workers: bool = False
    auto_prefetch: bool = False
    memory_budget: int | None = None  # bytes the workers may take, for "auto"; None: default


@dataclass(frozen=True)
class LoaderConfig:
    sampling: Sampling
    settings: Settings


def _check_context(context: Any, num_workers: int, worker_type: str) -> Any:
    if context is None:
        return None
    if num_workers == 0:
        raise ValueError(
            f"multiprocessing_context can only be used with multi-process loading "
            f"(num_workers > 0), but got num_workers={num_workers}; drop the argument or raise "
            f"num_workers"
        )
    if worker_type == "thread":
        raise ValueError(
            f"multiprocessing_context={context!r} has no meaning with worker_type='thread'; "
            f"drop it, or use worker_type='process'"
        )
    if isinstance(context, str):
        methods = multiprocessing.get_all_start_methods()
        if context not in methods:
            raise ValueError(
                f"multiprocessing_context option should specify a valid start method in "
                f"{methods!r}, but got multiprocessing_context={context!r}"
            )
        return multiprocessing.get_context(context)
    if not isinstance(context, multiprocessing.context.BaseContext):
        raise TypeError(
            f"multiprocessing_context option should be a valid context object or a string "
            f"naming the start method, but got multiprocessing_context={context!r}"
        )
    return context


def _is_auto(value: Any) -> bool:
    return isinstance(value, str) and value == "auto"


def _settings(given: Mapping[str, Any], sampling: Sampling) -> Settings:
    auto_workers = _is_auto(given["num_workers"])
    if auto_workers and sampling.is_iterable:
        raise ValueError(
            "num_workers='auto' needs a map-style dataset: an iterable dataset's batches depend "
            "on the number of workers (each runs its own stream), so it cannot be changed while "
            "a pass runs; pass an int"
        )
    num_workers = 0
    if not auto_workers:
        num_workers = check_int(
            given["num_workers"],
            "num_workers",
            minimum=0,
            fix="use num_workers=0 to load in the main process, or 'auto' to have it measured",
        )
    workers_possible = auto_workers or num_workers > 0
    timeout = check_number(
        given["timeout"],
        "timeout",
        minimum=0,
        fix="give a non-negative number of seconds; timeout=0 waits forever",
    )
    if isinstance(given["timeout"], int):
        timeout = given["timeout"]  # as given: messages say "after 1 seconds", as torch's do
    if timeout > 0 and not workers_possible:
        raise ArgumentError(  # torch asserts it (when the pass starts)
            f"timeout={timeout} applies to worker loading only, but num_workers=0; set "
            f"num_workers > 0 or leave timeout=0"
        )
    prefetch_factor = given["prefetch_factor"]
    auto_prefetch = _is_auto(prefetch_factor)
    if auto_prefetch and not auto_workers:
        raise ValueError(
            f"prefetch_factor='auto' is tuned along with num_workers='auto', but "
            f"num_workers={given['num_workers']!r}; pass num_workers='auto' too, or an int "
            f"prefetch_factor (the default is 2)"
        )
    if auto_prefetch:
        prefetch_factor = None  # the start: 2 once there are workers
    if not workers_possible and given["prefetch_factor"] is not None:
        prefetch_factor = given["prefetch_factor"]
        raise ValueError(
            f"prefetch_factor option could only be specified in multiprocessing, but got "
            f"prefetch_factor={prefetch_factor!r} with num_workers=0; set num_workers > 0 or "
            f"prefetch_factor=None"
        )
    if prefetch_factor is not None:
        prefetch_factor = check_int(
            prefetch_factor,
            "prefetch_factor",
            minimum=1,
            fix="each worker keeps this many batches in flight; the default is 2",
        )
    elif num_workers > 0:
        prefetch_factor = 2
    if sampling.persistent_workers and not workers_possible:
        raise ValueError(
            "persistent_workers option needs num_workers > 0; set num_workers > 0 or "
            "persistent_workers=False"
        )
    worker_type = check_choice(
        given["worker_type"], "worker_type", WORKER_TYPES, fix="processes are the default"
    )
    context = _check_context(
        given["multiprocessing_context"], 1 if auto_workers else num_workers, worker_type
    )
    memory_budget = given.get("memory_budget")
    if memory_budget is not None:
        memory_budget = check_int(
            memory_budget,
            "memory_budget",
            minimum=1,
            fix="give the bytes the workers may use, e.g. 8 << 30, or None for half the "
            "memory available",
        )
        if not auto_workers:
            raise ValueError(
                f"memory_budget={memory_budget} bounds what num_workers='auto' may choose, but "
                f"num_workers={given['num_workers']!r}; pass num_workers='auto' or drop "
                f"memory_budget"
            )
    generator = given["generator"]
    seed = check_loader_seed(given["seed"], generator)
    if generator is not None:
        check_generator(generator)
    output = given["output"]
    convert = converter(output)
    pin_memory = check_bool(given["pin_memory"], "pin_memory")
    if pin_memory and output in ("numpy", "jax"):
        raise ValueError(
            f"pin_memory=True makes pinned torch tensors, which contradicts "
            f"output={output!r}; use output='torch' (or None) or pin_memory=False"
        )
    device = given["pin_memory_device"]
    if not isinstance(device, str):
        raise TypeError(
            f"pin_memory_device should be a device name such as 'cuda', or '' for the "
            f"default, but got pin_memory_device={device!r}"
        )
    collate_fn = check_callable(given["collate_fn"], "collate_fn", optional=True)
    if collate_fn is None:
        collate_fn = default_collate if sampling.auto_collation else default_convert
    return Settings(
        given=dict(given),
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        timeout=timeout,
        worker_init_fn=check_callable(given["worker_init_fn"], "worker_init_fn", optional=True),
        context=context,
        generator=generator,
        prefetch_factor=prefetch_factor,
        pin_memory_device=device,
        in_order=check_bool(given["in_order"], "in_order"),
        seed=seed,
        worker_type=worker_type,
        output=output,
        convert=convert,
        auto_workers=auto_workers,
        auto_prefetch=auto_prefetch,
        memory_budget=memory_budget,
    )


def _sampling(
    dataset: Any,
    batch_size: int | None,
    shuffle: bool | None,
    sampler: Sampler[Any] | Iterable[Any] | None,
    batch_sampler: Sampler[Any] | Iterable[Any] | None,
    drop_last: bool,
    persistent_workers: bool,
    generator: Any,
    seed: int | None,
    ranks: Ranks | None = None,
    global_batch_size: int | None = None,
) -> Sampling:
    is_iterable = is_iterable_dataset(dataset)
    if not is_iterable and not hasattr(dataset, "__getitem__"):
        raise TypeError(
            f"dataset should be a map-style dataset (with __getitem__ and __len__) or a "
            f"ladle.IterableDataset, but got dataset={dataset!r} ({type(dataset).__name__}); "
            f"wrap a stream of samples in an IterableDataset whose __iter__ yields them"
        )
    for name, value, items in (
        ("sampler", sampler, "indices"),
        ("batch_sampler", batch_sampler, "lists of indices"),
    ):
        if value is not None and not hasattr(value, "__iter__"):
            raise TypeError(
                f"{name} should be an iterable of {items} (a ladle Sampler, a list, ...), but "
                f"got {name}={value!r}"
            )
    drop_last = check_bool(drop_last, "drop_last", type_error=ValueError)
    persistent_workers = check_bool(persistent_workers, "persistent_workers")
    if is_iterable:
        if shuffle not in (False, None):
            raise ValueError(
                f"DataLoader with IterableDataset: expected unspecified shuffle option, but "
                f"got shuffle={shuffle!r}; an iterable dataset decides its own order, so "
                f"shuffle inside its __iter__ (or use a map-style Dataset)"
            )
        if sampler is not None:
            raise ValueError(
                f"DataLoader with IterableDataset: expected unspecified sampler option, but "
                f"got sampler={sampler!r}; an iterable dataset yields its own samples"
            )
        if batch_sampler is not None:
            raise ValueError(
                f"DataLoader with IterableDataset: expected unspecified batch_sampler "
                f"option, but got batch_sampler={batch_sampler!r}; use batch_size="
            )
    shuffle = bool(shuffle)
    if sampler is not None and shuffle:
        raise ValueError(
            "sampler option is mutually exclusive with shuffle; pass shuffle=False and let "
            "the sampler decide the order (e.g. RandomSampler)"
        )
    if batch_sampler is not None:
        if batch_size != 1 or shuffle or sampler is not None or drop_last:
            raise ValueError(
                "batch_sampler option is mutually exclusive with batch_size, shuffle, "
                "sampler, and drop_last; the batch sampler alone decides the batches, so "
                "leave those at their defaults"
            )
        batch_size = None
        drop_last = False
    elif batch_size is None and drop_last:
        raise ValueError(
            "batch_size=None option disables auto-batching and is mutually exclusive with "
            "drop_last; set a batch_size or drop_last=False"
        )
    if sampler is None and not is_iterable:
        if shuffle:
            sampler = RandomSampler(dataset, generator=generator, seed=seed)
        else:
            sampler = SequentialSampler(dataset)
    if ranks is not None:
        batch_sampler, batch_size, global_batch_size = _distributed(
            dataset,
            is_iterable,
            sampler,
            batch_sampler,
            batch_size,
            drop_last,
            ranks,
            global_batch_size,
        )
    elif global_batch_size is not None:
        raise ValueError(
            f"global_batch_size={global_batch_size!r} is the batch summed over the ranks of a "
            f"distributed job, but distributed is off; pass distributed=True, or use batch_size="
        )
    _warn_if_cache_thrashes(dataset, batch_sampler if batch_sampler is not None else sampler)
    if batch_size is not None and batch_sampler is None:
        # BatchSampler validates batch_size and drop_last, with torch's messages.
        checked = BatchSampler(sampler if sampler is not None else [], batch_size, drop_last)
        batch_size = checked.batch_size
        if not is_iterable:
            batch_sampler = checked
    return Sampling(
        dataset=dataset,
        is_iterable=is_iterable,
        shuffle=shuffle,
        sampler=sampler,
        batch_sampler=batch_sampler,
        batch_size=batch_size,
        drop_last=drop_last,
        auto_collation=batch_sampler is not None or (is_iterable and batch_size is not None),
        persistent_workers=persistent_workers,
        ranks=ranks,
        global_batch_size=global_batch_size,
    )


def _warn_if_cache_thrashes(dataset: Any, sampler: Any) -> None:
    """A full shuffle of a dataset whose node cache holds only some of its shards (a
    ShardDataset at a URL) reads them in random order: every few records another shard is
    fetched, each many times an epoch, correctly but slowly and without a word otherwise."""
    for _ in range(3):  # inside a batch sampler (ladle.torch hands over torch's, wrapped)
        if isinstance(sampler, RandomSampler) or getattr(sampler, "sampler", None) is None:
            break
        sampler = sampler.sampler
    kind = type(sampler)
    torch_random = kind.__name__ == "RandomSampler" and kind.__module__.startswith("torch.")
    if not (isinstance(sampler, RandomSampler) or torch_random):  # ladle.torch's is torch's
        return
    capacity = getattr(dataset, "cache_capacity", None)
    sizes = getattr(dataset, "shard_sizes", None)
    if isinstance(capacity, int) and isinstance(sizes, list) and capacity < len(sizes):
        warnings.warn(
            f"{dataset!r:.80} reads through a node cache that holds {capacity} of its "
            f"{len(sizes)} shards, and a full shuffle (shuffle=True, RandomSampler) reads them "
            f"in random order, so each shard is downloaded many times an epoch; pass "
            f"sampler=ShardWindowSampler(dataset, seed=...) (a shuffle within windows of cached "
            f"shards), or a cache_limit that holds the dataset",
            UserWarning,
            stacklevel=outside_ladle(),
        )


def _distributed(
    dataset: Any,
    is_iterable: bool,
    sampler: Any,
    batch_sampler: Any,
    batch_size: int | None,
    drop_last: bool,
    ranks: Ranks,
    global_batch_size: int | None,
) -> tuple[DistributedBatchSampler, int, int]:
    """The batches of ``distributed=``, each rank's share of every global batch: the batch
    sampler, this rank's batch size and the global batch size."""
    if is_iterable:
        raise ValueError(
            f"distributed=True shards a map-style dataset's batches across the ranks, but "
            f"dataset={dataset!r:.60} is an IterableDataset, which decides its own stream; "
            f"split the stream by rank inside its __iter__ (ladle.detect_ranks()), or use a "
            f"map-style dataset (ShardDataset with shuffle=False reads shards in order, as "
            f"ShardStream does)"
        )
    if batch_sampler is not None:
        raise ValueError(
            "batch_sampler option is mutually exclusive with distributed=True, which makes "
            "the batches itself from the global batch; pass sampler= (a seeded ladle sampler) "
            "or shuffle= instead"
        )
    check_agreed_order(sampler)
    world = ranks.world_size
    if global_batch_size is None:
        if batch_size is None:
            raise ValueError(
                "distributed=True batches the epoch, so batch_size=None is not allowed; give "
                "batch_size= (per rank) or global_batch_size= (summed over the ranks)"
            )
        batch_size = BatchSampler([], batch_size, drop_last).batch_size
        global_batch_size = batch_size * world
    else:
        global_batch_size = check_positive_int(global_batch_size, "global_batch_size")
        if batch_size not in (1, None) and batch_size * world != global_batch_size:
            raise ValueError(
                f"batch_size={batch_size} on {world} ranks makes a global batch of "
                f"{batch_size * world}, but global_batch_size={global_batch_size}; give one of "
                f"them (batch_size is per rank)"
            )
    batches = DistributedBatchSampler(sampler, global_batch_size, drop_last, ranks)
    return batches, batches.batch_size, global_batch_size


def configure(arguments: Mapping[str, Any]) -> LoaderConfig:
    """The configuration of a new DataLoader from its constructor's arguments."""
    # The seed and generator are checked before they reach a sampler.
    given = {name: arguments.get(name) for name in (*SETTINGS, "seed")}
    if given["seed"] is not None:
        given["seed"] = check_seed(given["seed"])
    if given["generator"] is not None:
        check_generator(given["generator"])
    ranks = resolve_ranks(arguments.get("distributed", False))
    if ranks is not None:
        if given["generator"] is not None:
            raise ValueError(
                "distributed=True needs an order every rank computes alike, which a "
                "generator's draws are not; pass seed=<int> instead of generator="
            )
        if given["seed"] is None:
            given["seed"] = 0  # as torch's DistributedSampler: every rank the same order
    sampling = _sampling(
        arguments["dataset"],
        arguments["batch_size"],
        arguments["shuffle"],
        arguments["sampler"],
        arguments["batch_sampler"],
        arguments["drop_last"],
        arguments["persistent_workers"],
        given["generator"] if given["seed"] is None else None,
        given["seed"],
        ranks,
        arguments.get("global_batch_size"),
    )
    return LoaderConfig(sampling, _settings(given, sampling))


def with_workers(
    config: LoaderConfig, num_workers: int, prefetch_factor: int | None
) -> LoaderConfig:
    """``config`` running ``num_workers`` workers: what num_workers="auto" chose (valid by
    construction, so not checked again)."""
    settings = dataclasses.replace(
        config.settings,
        num_workers=num_workers,
        prefetch_factor=prefetch_factor if num_workers else None,
    )
    return dataclasses.replace(config, settings=settings)


def reconfigure(config: LoaderConfig, name: str, value: Any) -> LoaderConfig:
    """``config`` with setting ``name`` reassigned, checked with the others."""
    return reconfigure_all(config, {name: value})


def reconfigure_all(config: LoaderConfig, changes: Mapping[str, Any]) -> LoaderConfig:
    """``config`` with several settings reassigned at once, checked together."""
    for name, value in changes.items():
        if name in FROZEN:
            raise ValueError(
                f"{name} attribute should not be set after DataLoader is initialized; build a "
                f"new DataLoader with {name}={value!r}"
            )
        if name not in SETTINGS:
            raise TypeError(
                f"{name!r} is not a DataLoader setting; the settings are {', '.join(SETTINGS)}"
            )
    given = {**config.settings.given, **changes}
    return LoaderConfig(config.sampling, _settings(given, config.sampling))

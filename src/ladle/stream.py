"""A loader's place in its stream of passes: the next epoch, a loaded state waiting for the
next pass, and the progress of the latest pass. Only this module writes them, under one lock.

A pass counts from its first outcome on (a batch, an error, or its end): that is when it is
*committed*. An ``iter(loader)`` thrown away before its first batch, as frameworks do to probe a
loader, therefore changes nothing: not the epoch, not the sampler's epoch, not a loaded state
waiting to be resumed, not what ``state_dict()`` says. A pass abandoned after it started
(``break``) did consume its epoch: the next pass is the next epoch, and until then
``state_dict()`` describes where the abandoned one stood.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import warnings
from typing import Any

from ladle.config import Sampling
from ladle.passplan import PassStart, epoch_sampler, plan_start
from ladle.resume import Progress, state_of
from ladle.seeding import draw_seed, is_global_generator, pass_seed

__all__ = ["StreamPosition"]


class StreamPosition:
    def __init__(self, seed: int | None) -> None:
        self.lock = threading.RLock()
        self.seed = seed  # the stream's seed; None when each pass draws from a generator
        self._next_epoch = 0
        self._pending: dict[str, Any] | None = None  # loaded, for the next pass
        self._latest: Progress | None = None  # the latest committed pass
        self._started: PassStart | None = None  # the newest pass begun and not committed
        self._kept: int | None = None  # the seed drawn for persistent workers' first pass

    def start(self, sampling: Sampling, generator: Any, streams: int) -> tuple[PassStart, int]:
        """The next pass's start and its seed (the workers' base seed, sample_rng's root)."""
        with self.lock:
            if is_global_generator(generator):
                return self._start_global(sampling, generator, streams)
            start = plan_start(sampling, generator, self._next_epoch, streams, self._pending)
            # After the start's snapshot: the draw moves the generator.
            seed = draw_seed(generator) if self.seed is None else pass_seed(self.seed, start.epoch)
            self._started = start
            return start, seed

    def _start_global(
        self, sampling: Sampling, generator: Any, streams: int
    ) -> tuple[PassStart, int]:
        """A pass drawing from torch's default generator, whose state is the program's: the
        drawn seed is saved instead, and a resumed pass reuses it without drawing. The draw
        comes before the sampler's state is taken, as torch draws its base seed before its
        sampler draws (a sampler adapter may snapshot the generator then)."""
        pending = self._pending
        saved = pending["generator"] if pending is not None else None
        if saved is not None:
            seed = int(saved["drawn"])
        elif sampling.persistent_workers and self._kept is not None:
            seed = self._kept  # torch draws a persistent loader's base seed once, as we do
        else:
            seed = draw_seed(generator)
        if sampling.persistent_workers:
            self._kept = seed
        start = plan_start(sampling, None, self._next_epoch, streams, pending)
        start = dataclasses.replace(start, generator={"drawn": seed})
        self._started = start
        return start, seed

    def commit(self, progress: Progress, sampling: Sampling) -> None:
        """``progress``'s pass has started for real: the stream moves past its epoch."""
        start = progress.start
        with self.lock:
            loaded = start.resumes if start.resumes is not None else start.supersedes
            if loaded is not None:
                if loaded is not self._pending:
                    return  # a newer state was loaded since this pass began: that one counts
                self._pending = None
                # the loaded state places the stream: passes this loader ran before it do not
                # count (they would renumber the following passes, and their sample_rng draws)
                self._next_epoch = start.epoch
            if start.abandoned:
                saved = start.supersedes["sampler"]["epoch"]  # type: ignore[index]
                warnings.warn(
                    f"the loaded state resumes epoch {saved} with {start.abandoned} batches "
                    f"to go, but sampler.set_epoch({start.sampler_epoch}) came after "
                    f"load_state_dict(), so this pass is epoch {start.sampler_epoch} from its "
                    f"start and the rest of epoch {saved} is skipped; call "
                    f"set_epoch({saved}) (or none) to resume it",
                    stacklevel=2,
                )
            self._next_epoch = max(self._next_epoch, start.epoch + 1)
            self._latest = progress
            if self._started is start:
                self._started = None
            fast = epoch_sampler(sampling)
            if fast is not None and fast[0].advances and fast[0].epoch == start.sampler_epoch:
                fast[0].set_epoch(start.sampler_epoch + 1)

    def fields(self, sampling: Sampling, generator: Any, streams: int) -> dict[str, Any]:
        """The position's fields: a loaded state still pending, else the latest pass while it
        runs, else the start of the next pass. With a generator, a pass begun but not started
        (an ``iter()`` not advanced yet) has drawn from it already, as torch's does: the state
        is then that pass's start, from which it resumes."""
        with self.lock:
            if self._pending is not None:
                return copy.deepcopy(self._pending)
            latest = self._latest
            if latest is not None and not latest.finished:
                if latest.start.unsaveable is not None:
                    raise TypeError(latest.start.unsaveable)
                return latest.saved()
            start = self._started
            if start is None or generator is None:
                own = None if is_global_generator(generator) else generator
                start = plan_start(sampling, own, self._next_epoch, streams, None, True)
            if start.unsaveable is not None:
                raise TypeError(start.unsaveable)
            return Progress(start, None, sampling.is_iterable).saved()

    def state(self, sampling: Sampling, generator: Any, streams: int) -> dict[str, Any]:
        with self.lock:
            fields = self.fields(sampling, generator, streams)
            for key in ("format", "seed", "check"):
                fields.pop(key, None)
            return state_of(sampling, streams, self.seed, fields)

    def restart(self, sampling: Sampling, generator: Any, streams: int) -> dict[str, Any]:
        """The state that begins the running pass again from where it began: what a loader
        can save when its position inside the pass cannot be saved."""
        with self.lock:
            latest = self._latest
            if self._pending is not None or latest is None or latest.finished:
                return self.state(sampling, generator, streams)
            fields = Progress(latest.start, None, sampling.is_iterable).saved()
            return state_of(sampling, streams, self.seed, fields)

    def load(self, state: dict[str, Any], seed: int | None) -> None:
        """Resume from ``state`` (checked by the caller) at the next pass."""
        with self.lock:
            self._pending = state
            self._latest = self._started = None
            if seed is not None:
                self.seed = seed

"""What ``ladle doctor`` found: the trials, the recommended setting, the stage that bounds
throughput and why, as a readable report.

The bound is read from the fastest setting's stats (:mod:`ladle.stats`), per batch, summed
over the workers. Making the samples (``fetch`` + ``transform``) against moving them
(``collate`` + ``transport`` + ``convert``; with worker processes, collate writes the batch
straight into shared memory, so collating *is* the copy into the transport):

- the samples' work dominates: the bound is ``fetch`` or ``transform`` (decode-bound), and
  more workers help up to the CPUs;
- moving dominates and the batch's bytes go at memory speed (over 200 MB/s of moving time):
  ``transport`` (bandwidth-bound: fewer or smaller arrays per batch help, workers barely do);
- moving dominates at a lower rate: ``collate``, the per-batch work of assembling many small
  objects.
"""

from __future__ import annotations

from dataclasses import dataclass

from ladle.doctor.trial import Trial
from ladle.stats import remedy

__all__ = ["Diagnosis", "classify", "diagnosis", "recommend"]

MIB = 1 << 20
_TRANSPORT_RATE = 200e6  # bytes/s of moving time above which moving is the bytes, not objects
_NEAR = 0.05  # settings this close to the fastest count as as fast (the machine's noise)


def classify(
    best: Trial, inline: Trial | None, cpus: int, with_workers: Trial | None = None
) -> tuple[str, str]:
    """(the bound stage, a one-line explanation with the numbers) for the fastest trial;
    ``inline`` and ``with_workers``: the fastest without and with workers, where measured."""
    stats = best.stats
    batches = max(stats.batches, 1)
    per = {name: seconds * 1e3 / batches for name, seconds in stats.stages.items()}
    produce = per["fetch"] + per["transform"]
    move = per["collate"] + per["transport"] + per["convert"]
    total = produce + move
    busy = best.worker_busy
    where = (
        "in the training process"
        if busy is None
        else f"{best.setting.num_workers} {best.setting.worker_type} workers busy {busy:.0%}"
    )
    scaling = ""
    if inline is not None and inline.ok and best.setting.num_workers:
        scaling = f"; {best.samples_per_second / inline.samples_per_second:.1f}x inline"
    if produce >= move:
        stage = "fetch" if per["fetch"] >= per["transform"] else "transform"
        if busy is None and with_workers is not None and with_workers.ok:
            ratio = with_workers.samples_per_second / best.samples_per_second
            return stage, (
                f"making the samples, in the training process: {stage} takes {per[stage]:.2f} "
                f"of {total:.2f} ms a batch, too little to gain from workers (the fastest with "
                f"workers, {with_workers.setting}, ran at {ratio:.2f}x: handing batches over "
                f"costs more than the work they take off); keep num_workers=0"
            )
        return stage, (
            f"making the samples: {stage} takes {per[stage]:.2f} of {total:.2f} ms a batch, "
            f"summed over the workers ({where}{scaling}); more workers help up to the {cpus} "
            f"CPUs, then only cheaper {stage} does (ladle.cache() keeps decoded samples for "
            f"later epochs)"
        )
    rate = best.batch_bytes / (move / 1e3) if move > 0 else 0.0
    if rate >= _TRANSPORT_RATE:
        return "transport", (
            f"moving the bytes: {best.batch_bytes / MIB:.1f} MiB a batch, {move:.2f} of "
            f"{total:.2f} ms a batch (summed over the workers) go into collating it into "
            f"shared memory, transport and conversion ({rate / 1e9:.1f} GB/s), {produce:.2f} ms "
            f"into making the samples "
            f"({where}{scaling}); hand out fewer or smaller arrays (uint8 rather than float32, "
            f"normalise on the accelerator), more workers barely help"
        )
    return "collate", (
        f"assembling the batches: collate, transport and conversion take {move:.2f} of "
        f"{total:.2f} ms a batch for {best.batch_bytes / MIB:.2f} MiB ({where}{scaling}); "
        f"fewer, bigger arrays per sample (or __getitems__ returning whole columns) help"
    )


def recommend(trials: list[Trial]) -> tuple[Trial, Trial]:
    """(the fastest trial, the recommended one): among the trials within ``_NEAR`` of the
    fastest, the one with the least peak memory (the fastest where memory is unknown)."""
    ran = [trial for trial in trials if trial.ok]
    fastest = max(ran, key=lambda trial: trial.samples_per_second)
    near = [t for t in ran if t.samples_per_second >= (1 - _NEAR) * fastest.samples_per_second]
    if any(trial.peak_bytes is None for trial in near):
        return fastest, fastest
    return fastest, min(near, key=lambda trial: (trial.peak_bytes, -trial.samples_per_second))


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:,.0f} MiB"


@dataclass(frozen=True)
class Diagnosis:
    """The doctor's findings. ``trials`` in the order run, the first the loader as given
    (``yours``); ``fastest`` the trial that measured the most samples/s; ``recommended`` the
    one with the least peak memory among those within 5% of it (the machine's noise);
    ``bound`` the stage that bounds throughput at the fastest setting (``"fetch"``,
    ``"transform"``, ``"collate"`` or ``"transport"``), ``explanation`` why, with the numbers,
    and ``remedy`` what :func:`ladle.stats.remedy` advises from the same stats.
    ``at_your_batch_size``: the recommendation among the trials at your batch size (a batch
    size changes the training too, its learning rate for one)."""

    name: str
    cpus: int
    seconds: float
    elapsed: float
    trials: tuple[Trial, ...]
    yours: Trial
    fastest: Trial
    recommended: Trial
    bound: str
    explanation: str
    remedy: str
    batch_sizes_swept: bool
    at_your_batch_size: Trial

    @property
    def speedup(self) -> float:
        """The recommended setting's throughput over the loader's own."""
        if not self.yours.ok:
            return 0.0
        return self.recommended.samples_per_second / self.yours.samples_per_second

    def code(self) -> str:
        """The recommended setting as a DataLoader call."""
        return f"DataLoader(..., {self.recommended.setting.arguments()})"

    def table(self) -> str:
        headers = (
            "batch",
            "workers",
            "type",
            "prefetch",
            "samples/s",
            "vs yours",
            "peak memory",
            "bound",
            "data wait",
            "busy",
            "",
        )
        rows = [headers]
        for trial in self.trials:
            setting = trial.setting
            marks = []
            if trial is self.yours:
                marks.append("yours")
            if trial is self.recommended:
                marks.append("recommended")
            elif trial is self.fastest:
                marks.append("fastest")
            if trial.error is not None:
                marks.append(f"failed: {trial.error}")
            busy = trial.worker_busy
            ratio = (
                f"{trial.samples_per_second / self.yours.samples_per_second:.2f}x"
                if trial.ok and self.yours.ok
                else "-"
            )
            rows.append(
                (
                    "-" if setting.batch_size is None else str(setting.batch_size),
                    str(setting.num_workers),
                    setting.worker_type if setting.num_workers else "inline",
                    str(setting.prefetch) if setting.num_workers else "-",
                    f"{trial.samples_per_second:,.0f}" if trial.ok else "-",
                    ratio,
                    _mib(trial.peak_bytes),
                    classify(trial, None, self.cpus)[0] if trial.ok else "-",
                    f"{trial.data_wait_share:.0%}" if trial.ok else "-",
                    "-" if busy is None else f"{busy:.0%}",
                    ", ".join(marks),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
        lines = [
            "  ".join(
                cell.ljust(width) if i in (2, len(headers) - 1) else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            for row in rows
        ]
        lines.insert(1, "  ".join("-" * width for width in widths).rstrip())
        return "\n".join(lines)

    def __str__(self) -> str:
        ran = sum(trial.ok for trial in self.trials)
        best = self.recommended
        lines = [
            f"ladle doctor: {self.name}, {self.cpus} CPUs; {ran} settings measured, "
            f"{self.seconds:g} s each ({self.elapsed:.0f} s in all), the loader alone "
            f"(no training step)",
            "",
            self.table(),
            "",
            f"bound: {self.bound}: {self.explanation}",
            f"stats.remedy at the fastest setting: {self.remedy}",
        ]
        if not self.batch_sizes_swept:
            lines.append(
                "batch size not swept: pass a factory make_loader(batch_size=...) to sweep it"
            )
        lines += [
            "",
            f"recommended ({best.samples_per_second:,.0f} samples/s, {self.speedup:.2f}x "
            f"yours, peak memory {_mib(best.peak_bytes)}):",
            f"    {self.code()}",
        ]
        mine = self.at_your_batch_size
        if mine is not best:
            lines.append(
                f"    at your batch size ({mine.samples_per_second:,.0f} samples/s): "
                f"DataLoader(..., {mine.setting.arguments()})"
            )
        if best is not self.fastest:
            lines.append(
                f"    (the fastest, {self.fastest.setting}, measured "
                f"{self.fastest.samples_per_second:,.0f} samples/s with peak memory "
                f"{_mib(self.fastest.peak_bytes)}: within {_NEAR:.0%}, so the one with less "
                f"memory is recommended)"
            )
        return "\n".join(lines)


def diagnosis(
    name: str,
    cpus: int,
    seconds: float,
    elapsed: float,
    trials: list[Trial],
    batch_sizes_swept: bool,
) -> Diagnosis:
    """The :class:`Diagnosis` of a finished sweep (``trials[0]``: the loader as given)."""
    fastest, recommended = recommend(trials)
    inline = next(
        (t for t in trials if t.ok and t.setting.num_workers == 0 and _same_batch(t, fastest)),
        None,
    )
    with_workers = max(
        (t for t in trials if t.ok and t.setting.num_workers),
        key=lambda trial: trial.samples_per_second,
        default=None,
    )
    bound, explanation = classify(fastest, inline, cpus, with_workers)
    advice = remedy(fastest.stats, cpus)
    if not fastest.setting.num_workers and with_workers is not None:
        advice = "(none: it would suggest workers, which measured slower here)"
    yours = trials[0]
    at_yours = recommend([t for t in trials if _same_batch(t, yours)])[1]
    return Diagnosis(
        name=name,
        cpus=cpus,
        seconds=seconds,
        elapsed=elapsed,
        trials=tuple(trials),
        yours=yours,
        fastest=fastest,
        recommended=recommended,
        bound=bound,
        explanation=explanation,
        remedy=advice,
        batch_sizes_swept=batch_sizes_swept,
        at_your_batch_size=at_yours,
    )


def _same_batch(trial: Trial, other: Trial) -> bool:
    return trial.setting.batch_size == other.setting.batch_size

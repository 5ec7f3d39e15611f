"""Independent tasks in a few processes: ``run_jobs(function, tasks, jobs)``.

Each process takes a contiguous run of the tasks, in order, and sends one small message per
task through its own pipe (results should be small: manifests, counts). The first failure
stops the whole run: the other processes are killed and the failure is raised in the caller
with its original type and the job's traceback as a note; a process that dies (SIGKILL, OOM)
is reported with its pid and signal. No process is left behind, whatever happens in the
caller (an exception, Ctrl-C).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, TypeVar, cast

from ladle._runtime.lifeline import watch_parent
from ladle._runtime.pool import describe_exit
from ladle.errors import WorkerDiedError

__all__ = ["JobFailed", "run_jobs"]

T = TypeVar("T")
R = TypeVar("R")

_POLL_SECONDS = 1.0  # how often a silent run looks for processes that died


class JobFailed(RuntimeError):
    """A task raised an exception that could not be sent back (not picklable)."""


@dataclass(frozen=True)
class _Done(Generic[R]):
    task: int
    result: R


@dataclass(frozen=True)
class _Raised:
    task: int
    error: bytes | None  # the pickled exception, or None when it does not pickle
    description: str
    trace: str


def _context(method: str | None) -> Any:
    # fork where it exists, as for a loader's workers: nothing is pickled and the caller's main
    # module needs no __main__ guard; the tasks pickle, so spawn and forkserver work too
    if method is None and "fork" in multiprocessing.get_all_start_methods():
        method = "fork"
    return multiprocessing.get_context(method)


def _job(
    function: Callable[[Any], Any], tasks: list[tuple[int, Any]], out: Connection, main: int
) -> None:
    watch_parent(main)
    for number, task in tasks:
        try:
            result = function(task)
        except BaseException as error:
            try:
                blob: bytes | None = pickle.dumps(error)
            except Exception:
                blob = None
            description = f"{type(error).__name__}: {error}"
            out.send(_Raised(number, blob, description, traceback.format_exc()))
            return
        out.send(_Done(number, result))


def run_jobs(
    function: Callable[[T], R],
    tasks: Sequence[T],
    jobs: int,
    on_result: Callable[[int, R], None] | None = None,
    start_method: str | None = None,
) -> list[R]:
    """``[function(task) for task in tasks]``, computed by up to ``jobs`` processes.

    ``on_result(i, result)`` is called in this process as each task finishes. The processes
    fork where fork exists, unless ``start_method`` says otherwise; under spawn or forkserver
    ``function`` and the tasks must pickle, and the main module needs its __main__ guard.
    """
    count = min(jobs, len(tasks))
    if count == 0:
        return []
    context = _context(start_method)
    results: dict[int, R] = {}
    processes: list[Any] = []
    readers: dict[Connection, tuple[int, Any]] = {}
    finished = False
    try:
        for job in range(count):
            first, last = job * len(tasks) // count, (job + 1) * len(tasks) // count
            reader, writer = context.Pipe(duplex=False)
            share = [(i, tasks[i]) for i in range(first, last)]
            process = context.Process(
                target=_job, args=(function, share, writer, os.getpid()), daemon=True
            )
            process.start()
            writer.close()  # the job holds the only writing end: its death closes the pipe
            processes.append(process)
            readers[reader] = (job, process)
        while len(results) < len(tasks):
            for handle in wait(list(readers), timeout=_POLL_SECONDS):
                reader = cast(Connection, handle)
                job, process = readers[reader]
                try:
                    message = reader.recv()
                except EOFError:
                    process.join(5)
                    del readers[reader]
                    if process.exitcode == 0:
                        continue  # finished its share; its results arrived before
                    raise WorkerDiedError(
                        f"job {job} (pid {process.pid}) {describe_exit(process.exitcode)} "
                        f"before finishing its tasks",
                        worker_id=job,
                        pid=process.pid,
                        exitcode=process.exitcode,
                    ) from None
                if isinstance(message, _Raised):
                    raise _rebuild(message, process.pid)
                results[message.task] = message.result
                if on_result is not None:
                    on_result(message.task, message.result)
        finished = True
    finally:
        for process in processes:
            if finished:
                process.join(_POLL_SECONDS)  # it sent its last result and is exiting
            if process.is_alive():
                process.kill()
        for process in processes:
            process.join()
        for reader in readers:
            reader.close()
    return [results[i] for i in range(len(tasks))]


def _rebuild(message: _Raised, pid: int) -> BaseException:
    error: BaseException | None = None
    if message.error is not None:
        try:
            error = pickle.loads(message.error)
        except Exception:
            error = None
    if not isinstance(error, BaseException):
        error = JobFailed(f"task {message.task} raised {message.description}")
    error.add_note(f"task {message.task}, in job pid {pid}; its traceback:\n{message.trace}")
    return error

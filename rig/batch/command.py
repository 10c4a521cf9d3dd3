"""``rig batch FILES_OR_DIR...``: replay many recorded trials at full speed on Dask, one task per
trial, and tabulate every jump.

Exit codes: 0 every trial is finished (replayed now or by an earlier batch); 1 a trial failed, or
the batch was interrupted (run it again to resume); 2 the arguments or inputs cannot be used
(nothing was replayed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rig.batch import DEFAULT_OUTPUT_FOLDER, PARTIAL_FOLDER
from rig.replay import OPEN_TIMEOUT_S

if TYPE_CHECKING:
    from rig.batch.jobs import ReplaySettings, TrialJob
    from rig.batch.tasks import TrialOutcome

# Dask, h5py and pandas are imported when a batch runs, so that building the `rig` command's
# parser stays quick.

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
# Attempts after the first for a trial whose replay failed by itself (a worker process of the
# replay died, the replay did not complete). A Dask worker that dies is another matter: the
# scheduler reruns its task elsewhere, up to distributed.scheduler.allowed-failures (3) times.
DEFAULT_RETRIES = 2
LOCK_NAME = ".batch.lock"
# Seconds to wait for a scheduler given with --scheduler.
CONNECT_TIMEOUT_S = 30.0


def default_workers() -> int:
    """Local worker processes when not told: one per core. A replay alone leaves cores idle
    (process start-up, hand-shakes and drains wait more than they compute): on 2 cores, 2
    workers did 1.5x the trials of 1, and 4 workers no more than 2 (docs/batch.md)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores)


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``rig batch``; the parser dispatches to :func:`batch_main`."""
    parser.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="FILES_OR_DIR",
        help="trial files, and folders whose *.h5 trial files to replay",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"folder for the new trial files and the metrics table (default: "
        f"{DEFAULT_OUTPUT_FOLDER}/ beside the inputs)",
    )
    parser.add_argument("--model", type=Path, help="pose model folder instead of the recorded one")
    parser.add_argument(
        "--calibration", type=Path, help="anipose calibration TOML instead of the recorded one"
    )
    parser.add_argument(
        "--no-tracking",
        action="store_true",
        help="replay the recordings only: no pose, 3D or jump detection from poses",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a running Dask scheduler (tcp://host:port) instead of a local cluster; the inputs "
        "and the output folder must be at the same paths on every worker",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        help="worker processes of the local cluster (default: one per core)",
    )
    parser.add_argument(
        "--retries",
        type=_non_negative_int,
        default=DEFAULT_RETRIES,
        help=f"more attempts at a trial whose replay failed (default {DEFAULT_RETRIES})",
    )
    parser.add_argument(
        "--open-timeout-s",
        type=float,
        default=OPEN_TIMEOUT_S,
        help=f"give up on a file that cannot be read within this time (default {OPEN_TIMEOUT_S:g})",
    )


@dataclass(frozen=True)
class BatchReport:
    """A batch that ran: every trial's outcome (in input order), the files left out, the table."""

    output_folder: Path
    outcomes: tuple[TrialOutcome, ...]
    left_out: tuple[tuple[Path, str], ...]
    metrics_parquet: Path | None
    metrics_csv: Path | None
    jumps: int
    wall_s: float

    def count(self, status: str) -> int:
        return sum(outcome.status == status for outcome in self.outcomes)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if all(outcome.finished for outcome in self.outcomes) else EXIT_FAILED


def batch_main(args: argparse.Namespace) -> int:
    """Run ``rig batch`` with parsed arguments; returns the exit code."""
    from rig.batch.inputs import BatchInputError
    from rig.batch.jobs import ReplaySettings

    try:
        if not args.open_timeout_s > 0:
            raise BatchInputError(f"--open-timeout-s must be positive, got {args.open_timeout_s}")
        if args.scheduler and args.workers is not None:
            raise BatchInputError("--workers is for the local cluster: not with --scheduler")
        if args.no_tracking and (args.model is not None or args.calibration is not None):
            raise BatchInputError("--no-tracking cannot go with --model or --calibration")
        for option, path in (("--model", args.model), ("--calibration", args.calibration)):
            if path is not None and not path.exists():
                raise BatchInputError(f"{option} {path}: no such file or folder")
        settings = ReplaySettings(
            model=str(args.model.resolve()) if args.model is not None else None,
            calibration=str(args.calibration.resolve()) if args.calibration is not None else None,
            tracking=False if args.no_tracking else None,
        )
        report = run_batch(
            args.inputs,
            output=args.output,
            settings=settings,
            workers=args.workers,
            scheduler=args.scheduler,
            retries=args.retries,
            open_timeout_s=args.open_timeout_s,
            out=sys.stdout,
        )
    except BatchInputError as error:
        print(f"rig batch: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            "rig batch: interrupted; the trials finished so far are kept: run the same command "
            "again to go on",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return report.exit_code


def run_batch(
    paths: Sequence[Path],
    *,
    output: Path | None = None,
    settings: ReplaySettings | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    retries: int = DEFAULT_RETRIES,
    open_timeout_s: float = OPEN_TIMEOUT_S,
    out: TextIO = sys.stdout,
) -> BatchReport:
    """Replay every trial of ``paths`` that has no finished output in ``output``, then write the
    metrics table of all of them. Raises BatchInputError before anything runs for inputs or an
    output folder that cannot be used (and when the scheduler cannot be reached)."""
    from rig.batch.inputs import default_output_folder, find_inputs, output_paths
    from rig.batch.jobs import ReplaySettings, TrialJob
    from rig.batch.metrics import metrics_rows_order, write_metrics_table

    started_s = time.monotonic()
    settings = settings or ReplaySettings()
    inputs = find_inputs(paths, open_timeout_s)
    folder = (output or default_output_folder(inputs.sources)).resolve()
    outputs = output_paths(inputs.sources, folder)
    jobs = [
        TrialJob(str(source), str(final), settings, open_timeout_s)
        for source, final in zip(inputs.sources, outputs, strict=True)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder):
        # What attempts of an earlier batch left (a batch holds the lock while it runs).
        _remove_partial(folder)
        for path, reason in inputs.left_out:
            _say(out, f"left out {path}: {reason}")
        outcomes = _run_jobs(jobs, workers, scheduler, retries, folder, started_s, out)
        rows = metrics_rows_order([row for outcome in outcomes for row in outcome.jumps])
        parquet, csv = write_metrics_table(rows, folder)
        _remove_partial(folder)
    report = BatchReport(
        output_folder=folder,
        outcomes=tuple(outcomes),
        left_out=inputs.left_out,
        metrics_parquet=parquet,
        metrics_csv=csv,
        jumps=len(rows),
        wall_s=time.monotonic() - started_s,
    )
    print_summary(report, out)
    return report


def _run_jobs(
    jobs: list[TrialJob],
    workers: int | None,
    scheduler: str | None,
    retries: int,
    folder: Path,
    started_s: float,
    out: TextIO,
) -> list[TrialOutcome]:
    """Every job as a Dask task; outcomes in the order of ``jobs``."""
    from dask.distributed import as_completed

    from rig.batch.tasks import STATUS_FAILED, TrialOutcome, replay_task

    outcomes: dict[int, TrialOutcome] = {}
    with _dask_client(workers, scheduler) as (client, where):
        _say(out, f"rig batch: {len(jobs)} trials -> {folder} on {where}")
        futures = {
            client.submit(
                replay_task,
                job,
                key=f"replay-{job.stem}-{uuid.uuid4().hex[:8]}",
                pure=False,
                retries=retries,
            ): index
            for index, job in enumerate(jobs)
        }
        for future in as_completed(futures):
            index = futures[future]
            job = jobs[index]
            try:
                outcome: TrialOutcome = future.result()
            except Exception as error:
                # Retries used up, or the worker running it died too often (KilledWorker).
                outcome = TrialOutcome(
                    source=job.source,
                    output=job.output,
                    status=STATUS_FAILED,
                    message=f"{type(error).__name__}: {error}",
                )
            outcomes[index] = outcome
            _say(out, _progress_line(list(outcomes.values()), len(jobs), started_s, outcome))
    return [outcomes[index] for index in range(len(jobs))]


@contextlib.contextmanager
def _dask_client(workers: int | None, scheduler: str | None) -> Iterator[tuple[Any, str]]:
    """A Dask client: of the scheduler at ``scheduler``, or of a local cluster of ``workers``
    processes (one thread each: a task is a whole replay)."""
    from dask.distributed import Client, LocalCluster

    from rig.batch.inputs import BatchInputError

    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as error:
            raise BatchInputError(f"cannot reach the Dask scheduler {scheduler}: {error}") from None
        with client:
            count = len(client.scheduler_info().get("workers", {}))
            yield client, f"the Dask scheduler {scheduler} ({_plural(count, 'worker')} now)"
        return
    count = workers or default_workers()
    # No dashboard: it needs bokeh, which the rig does not install; progress goes to the console.
    # The tasks start their replays with subprocess, not multiprocessing, so the worker
    # processes may stay daemonic (distributed.worker.daemon) (rig.batch.runner says why).
    with (
        LocalCluster(
            n_workers=count, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client, f"a local Dask cluster of {_plural(count, 'worker process')}"


@contextlib.contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s batch lock: two batches writing one folder would remove each other's
    temporaries."""
    import fcntl

    from rig.batch.inputs import BatchInputError

    with (folder / LOCK_NAME).open("a") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BatchInputError(f"another rig batch is writing to {folder}") from None
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _remove_partial(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder / PARTIAL_FOLDER, ignore_errors=True)


def _progress_line(
    outcomes: list[TrialOutcome], total: int, started_s: float, latest: TrialOutcome
) -> str:
    from rig.batch.tasks import STATUS_DONE_OUTCOME, STATUS_FAILED, STATUS_SKIPPED

    counts = {
        status: sum(outcome.status == status for outcome in outcomes)
        for status in (STATUS_DONE_OUTCOME, STATUS_SKIPPED, STATUS_FAILED)
    }
    head = (
        f"{len(outcomes)}/{total} trials done ({counts[STATUS_DONE_OUTCOME]} replayed, "
        f"{counts[STATUS_SKIPPED]} skipped, {counts[STATUS_FAILED]} failed), "
        f"{time.monotonic() - started_s:.0f} s"
    )
    name = Path(latest.source).name
    jumps = _plural(len(latest.jumps), "jump")
    if latest.status == STATUS_DONE_OUTCOME:
        what = f"replayed {name} in {latest.wall_s:.1f} s, {jumps} [{latest.worker}]"
        if latest.message:
            what += f"; {latest.message}"
    elif latest.status == STATUS_SKIPPED:
        what = f"skipped {name}: finished by an earlier batch, {jumps}"
    else:
        what = f"FAILED {name}: {latest.message.splitlines()[0] if latest.message else ''}"
    return f"{head}: {what}"


def print_summary(report: BatchReport, out: TextIO) -> None:
    from rig.batch.tasks import STATUS_DONE_OUTCOME, STATUS_FAILED, STATUS_SKIPPED

    failed = [outcome for outcome in report.outcomes if outcome.status == STATUS_FAILED]
    trials_with_jumps = sum(bool(outcome.jumps) for outcome in report.outcomes)
    _say(
        out,
        f"\nrig batch: {_plural(report.count(STATUS_DONE_OUTCOME), 'trial')} replayed, "
        f"{report.count(STATUS_SKIPPED)} skipped (finished earlier), {len(failed)} failed, "
        f"in {report.wall_s:.0f} s; outputs in {report.output_folder}",
    )
    if report.metrics_parquet is not None and report.metrics_csv is not None:
        _say(
            out,
            f"  jump metrics: {_plural(report.jumps, 'jump')} of "
            f"{_plural(trials_with_jumps, 'trial')} in {report.metrics_parquet.name} and "
            f"{report.metrics_csv.name}",
        )
    if report.left_out:
        _say(out, f"  {_plural(len(report.left_out), 'file')} left out (not trial files)")
    for outcome in failed:
        _say(out, f"  failed: {outcome.source}:\n    {outcome.message}")
    if failed:
        _say(out, "  run the same command again to retry the failed trials")


def _plural(count: int, noun: str) -> str:
    plural = "es" if noun.endswith("s") else "s"
    return f"{count} {noun}{'' if count == 1 else plural}"


def _say(out: TextIO, line: str) -> None:
    out.write(line + "\n")
    out.flush()


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rig batch", description="Replay many recorded trials at full speed on Dask."
    )
    add_batch_arguments(parser)
    return batch_main(parser.parse_args(argv))

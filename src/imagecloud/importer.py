"""Bulk enrolment: ``imagecloud import DIR --channel C``.

Every file in DIR (not in subfolders; hidden files and ``*.json`` sidecars aside) becomes a target whose
identifier is the file name without its last suffix; ``NAME.json`` next to ``NAME.jpg`` is its metadata.
Files are checked in AddImage's order before any image work: metadata (20002), identifier (20010), a name
another file in DIR already claims (20016: the first in name order wins), an identifier the channel
already holds (skipped, not replaced: that is what makes a re-run continue where an interrupted one
stopped), and size (20006, in-process only).

Two ways to enrol what is left:

* In-process (default), against ``--data-dir``/``--config`` like the other operator commands: worker
  processes (one per core) decode, extract and rate; the main process stores each result through
  :meth:`Service.add_analysed`, i.e. AddImage's own checks and atomic write, one target per transaction.
  The running process never searches, so it keeps no index; a server builds its index from the stored
  rows when it starts. That is also why the import refuses to run while another process has the
  database open: a server running meanwhile would never index the new targets.
* ``--url``: concurrent AddImage requests to a running server, with an account's credentials.

Either way a target is counted as added only once it is committed, an interruption (Ctrl-C, SIGKILL,
power loss) leaves no half-written target, and running the same command again finishes the job.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import multiprocessing
import os
import signal
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from imagecloud.config import Settings
from imagecloud.errors import (
    ALL_ERRORS,
    FileTooLarge,
    IdentifierTaken,
    ImageCloudError,
    InvalidParameter,
    QuotaExceeded,
    SystemBusy,
)
from imagecloud.recognition.settings import RecognizerSettings
from imagecloud.service import Service, build_service
from imagecloud.service import validation as check
from imagecloud.service.recognizer import Recognizer
from imagecloud.storage import Channel
from imagecloud.storage.lock import DataDirInUse, DataDirLock
from imagecloud.vision.analysis import Analyser, QueryAnalysis, TargetAnalysis
from imagecloud.vision.thumbnail import stored_previews

ADDED = "added"
PRESENT = "present"  # the identifier was already in the channel: skipped without analysis
REJECTED = "rejected"

# Result codes of the contract, for answers that arrive as numbers (--url) and for the summary's words.
_MESSAGES = {error.returncode: error.message for error in ALL_ERRORS}


class ImportFailed(Exception):
    """The import cannot start or go on (no such channel, database in use, server unreachable …)."""


@dataclass(frozen=True)
class Candidate:
    path: Path
    identifier: str
    metadata: str | None


@dataclass(frozen=True)
class Outcome:
    file: str  # name inside the imported folder
    identifier: str
    status: str  # ADDED | PRESENT | REJECTED
    returncode: int = 0
    message: str = ""  # the contract's text for ``returncode``
    detail: str = ""  # what exactly was wrong, for people
    level: int | None = None
    matchratio: float | None = None
    # Existing targets of the channel this image matches, as AddImage's ``similar``: "id (score), …".
    similar: str = ""


@dataclass
class Timing:
    """Where the time went, summed over the targets that reached each stage."""

    analysed: int = 0
    analysis_cpu: float = 0.0  # seconds of worker CPU in decode + features + rating
    stored: int = 0
    store_wall: float = 0.0  # seconds the main process spent in add_analysed (mostly fsync)
    main_cpu: float = 0.0  # seconds of main-process CPU over the whole run (stores, IPC, progress)
    wall: float = 0.0  # seconds the enrolment took, worker start-up included

    def as_dict(self) -> dict[str, float]:
        return {
            "analysis_cpu_ms_per_image": _per(self.analysis_cpu, self.analysed),
            "store_ms_per_target": _per(self.store_wall, self.stored),
            "main_cpu_ms_per_image": _per(self.main_cpu, self.analysed),
            "seconds": round(self.wall, 2),
            "targets_per_second": round(self.stored / self.wall, 1) if self.wall > 0 else 0.0,
        }


def _per(seconds: float, count: int) -> float:
    return round(1000 * seconds / count, 1) if count else 0.0


@dataclass
class Summary:
    channel: str
    outcomes: list[Outcome] = field(default_factory=list)
    timing: Timing = field(default_factory=Timing)
    interrupted: bool = False
    error: str = ""  # why the import stopped early, if something other than Ctrl-C stopped it

    def count(self, status: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    def rejected(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.status == REJECTED]


# ---------------------------------------------------------------------------------------------- scan


def scan(
    directory: Path,
    present: set[str],
    *,
    max_bytes: int | None,
    max_metadata_bytes: int,
) -> tuple[list[Candidate], list[Outcome]]:
    """Files to enrol, and the outcomes decided without looking at any pixel."""
    files = sorted(
        entry
        for entry in directory.iterdir()
        if entry.is_file() and not entry.name.startswith(".") and entry.suffix.lower() != ".json"
    )
    todo: list[Candidate] = []
    decided: list[Outcome] = []
    claimed: dict[str, str] = {}
    for path in files:
        ident = path.stem
        try:
            meta = _sidecar(path, max_metadata_bytes)
            check.identifier(ident)
            if ident in claimed:
                raise IdentifierTaken(f"{claimed[ident]} has the same name")
            claimed[ident] = path.name
            if ident in present:
                decided.append(Outcome(path.name, ident, PRESENT))
                continue
            size = path.stat().st_size
            if max_bytes is not None and size > max_bytes:
                raise FileTooLarge(f"{size} bytes, more than {max_bytes}")
        except ImageCloudError as error:
            decided.append(_rejected(path.name, ident, error))
            continue
        except OSError as error:
            decided.append(_rejected(path.name, ident, ImageCloudError(f"cannot read: {error}")))
            continue
        todo.append(Candidate(path, ident, meta))
    return todo, decided


def _sidecar(path: Path, max_bytes: int) -> str | None:
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        text = sidecar.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidParameter(f"{sidecar.name}: {error}") from error
    try:
        return check.metadata(text.strip(), max_bytes)
    except ImageCloudError as error:
        raise type(error)(f"{sidecar.name}: {error.detail or error.message}") from error


def _rejected(file: str, identifier: str, error: ImageCloudError) -> Outcome:
    return Outcome(
        file,
        identifier,
        REJECTED,
        returncode=error.returncode,
        message=error.message,
        detail=error.detail or "",
    )


# ---------------------------------------------------------------------------------------------- in-process


def open_service(settings: Settings, lock: DataDirLock | None = None) -> Service:
    """The operator's service for an import: refuses while another process has the database open.

    ``lock``: the data directory's lock when this process holds it already (``serve --demo`` enrols its
    samples under the server's lock); otherwise the import takes it.
    """
    holder = database_holder(settings.resolved_database_url)
    if holder is not None:
        raise ImportFailed(
            f"process {holder} has the database open: if it is a server, the targets imported now would not "
            "be searchable until it restarts. Import through it with --url (and --username/--secretkey), or "
            "stop it first."
        )
    if lock is None:
        try:
            # Held until the process ends: the import adds files and rows as a server would.
            lock = DataDirLock(settings.data_dir, "imagecloud import").acquire()
        except DataDirInUse as error:
            raise ImportFailed(f"{error} Import through the server with --url, or stop it first.") from None
    service = build_service(settings)
    service.data_lock = lock
    service.db.migrate()
    # The import process stores targets and never searches; keeping an index here would only cost memory
    # and, past a few thousand targets, background index builds. A server indexes every stored target when
    # it starts (and brings any index it saved up to date with the rows).
    service.recognizer = Recognizer(service.recognizer.settings, indexing=False)
    return service


def database_holder(url: str) -> int | None:
    """The id of another process that has the SQLite database open, or None; refuses other databases.

    In WAL mode every process with the database open holds a shared lock on the "dead man switch" byte of
    the ``-shm`` file (offset 128; sqlite.org/walformat.html) for as long as it keeps a connection, which
    a server does for its whole life. F_GETLK asks who holds it without taking it. Call this only while
    this process has the database closed: POSIX drops a process's locks on a file when it closes any
    descriptor of that file, which would pull the lock from under this process's own connections.
    """
    if not url.startswith("sqlite:///"):
        raise ImportFailed(
            "an in-process import can only tell whether a server is using the embedded SQLite database; "
            "with another database, import through the server with --url"
        )
    shm = url.removeprefix("sqlite:///") + "-shm"
    try:
        fd = os.open(shm, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        query = _FLOCK.pack(*_flock_fields(fcntl.F_WRLCK, 128, 1))
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    finally:
        os.close(fd)
    kind, pid = _flock_type_pid(answer)
    return None if kind == fcntl.F_UNLCK else pid


# struct flock: Linux orders (type, whence, start, len, pid); BSDs and macOS (start, len, pid, type, whence).
_LINUX = sys.platform.startswith("linux")
_FLOCK = struct.Struct("hhqqi4x" if _LINUX else "qqihh")


def _flock_fields(kind: int, start: int, length: int) -> tuple[int, ...]:
    return (kind, os.SEEK_SET, start, length, 0) if _LINUX else (start, length, 0, kind, os.SEEK_SET)


def _flock_type_pid(packed: bytes) -> tuple[int, int]:
    fields = _FLOCK.unpack(packed)
    return (fields[0], fields[4]) if _LINUX else (fields[3], fields[2])


@dataclass(frozen=True)
class _Analysed:
    data: bytes
    analysis: TargetAnalysis
    previews: dict[int, bytes]
    cpu: float
    # The image analysed as a photo, for the look-alike search; None when it has too few photo features.
    query: QueryAnalysis | None = None


@dataclass(frozen=True)
class _Failed:
    returncode: int
    message: str
    detail: str


_worker_analyser: Analyser | None = None


def _start_worker(settings: RecognizerSettings) -> None:
    global _worker_analyser
    # Ctrl-C reaches the whole process group; the main process alone decides what stops and when.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_analyser = Analyser(settings.analysis)


def _analyse(path: str, max_bytes: int, as_photo: bool) -> _Analysed | _Failed:
    """Analyse one file as a target and, with ``as_photo``, also as a photo for the look-alike search
    (a third of the analysis: an import without that search does not pay for it)."""
    assert _worker_analyser is not None
    started = time.thread_time()
    try:
        data = Path(path).read_bytes()
        if len(data) > max_bytes:
            raise FileTooLarge(f"{len(data)} bytes, more than {max_bytes}")
        analysis = _worker_analyser.analyse_target(data)
        # Made here, beside the analysis, so that this process only writes them.
        previews = stored_previews(data, max_pixels=_worker_analyser.settings.max_pixels)
    except ImageCloudError as error:
        return _Failed(error.returncode, error.message, error.detail or "")
    except OSError as error:
        return _Failed(ImageCloudError.returncode, ImageCloudError.message, f"cannot read: {error}")
    query: QueryAnalysis | None = None  # also when the image has too few features to be searched as a photo
    if as_photo:
        # Analysed here, in parallel, so the storing process only searches. The bytes travel once.
        with contextlib.suppress(ImageCloudError):
            query = replace(_worker_analyser.analyse_query(data), data=b"")
    return _Analysed(data, analysis, previews, time.thread_time() - started, query)


class Lookalikes:
    """The channel's targets in an index of the import's own, to tell which new image matches an existing
    target (AddImage's ``similar``) although the import process keeps no search index of its own."""

    def __init__(self, service: Service, channel: Channel) -> None:
        self.channel_id = channel.id
        self.recognizer = Recognizer(service.recognizer.settings)
        self.names: dict[int, str] = {}
        for target_id, identifier, blob in service.channel_features(channel.id):
            self.add(target_id, identifier, blob)

    def add(self, target_id: int, identifier: str, features_blob: bytes) -> None:
        self.recognizer.add(self.channel_id, target_id, features_blob)
        self.names[target_id] = identifier

    def similar(self, query: QueryAnalysis | None, data: bytes) -> str:
        if query is None:
            return ""
        matches = self.recognizer.similar(replace(query, data=data), [self.channel_id], 5)
        found = sorted(matches, key=lambda m: -m.score)
        return ", ".join(
            f"{self.names[m.target_id]} ({m.score:.2f})" for m in found if m.target_id in self.names
        )


def _worker_context() -> multiprocessing.context.BaseContext:
    """Not fork: this process may already hold database connections and library threads. A fork server
    starts clean and imports OpenCV, FAISS and the rest once, so each worker does not (~1.3 s of CPU
    apiece); where there is none, spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def enrol_in_process(
    service: Service,
    channel: Channel,
    todo: list[Candidate],
    workers: int,
    timing: Timing,
    stop: threading.Event,
    *,
    similar: bool = True,
) -> Iterator[Outcome]:
    """Analyse in ``workers`` processes, store in this one, yield each file's outcome as it is known.

    With ``similar``, each image is also searched among the channel's targets (those there before and
    those this import stored) before it is stored, as AddImage does.

    Once ``stop`` is set it ends after the store under way: what is still being analysed was not stored
    and is left for the next run.
    """
    settings = service.recognizer.settings
    max_bytes = service.settings.max_add_bytes
    lookalikes = Lookalikes(service, channel) if similar else None
    pool = ProcessPoolExecutor(
        workers, mp_context=_worker_context(), initializer=_start_worker, initargs=(settings,)
    )
    queue = iter(todo)
    pending: dict[Future[_Analysed | _Failed], Candidate] = {}
    full: QuotaExceeded | None = None
    try:
        while True:
            # A few images queued per worker keep every core busy while this process stores.
            while full is None and not stop.is_set() and len(pending) < 3 * workers:
                candidate = next(queue, None)
                if candidate is None:
                    break
                pending[pool.submit(_analyse, str(candidate.path), max_bytes, similar)] = candidate
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: pending[f].path):
                if stop.is_set():
                    return
                candidate = pending.pop(future)
                name, ident = candidate.path.name, candidate.identifier
                result = _result(future)
                if full is not None:  # AddImage checks the quota first: 20012 outranks what analysis found
                    yield _rejected(name, ident, full)
                    continue
                if isinstance(result, _Failed):
                    yield Outcome(name, ident, REJECTED, result.returncode, result.message, result.detail)
                    continue
                timing.analysed += 1
                timing.analysis_cpu += result.cpu
                started = time.perf_counter()
                looks_like = lookalikes.similar(result.query, result.data) if lookalikes else ""
                try:
                    target_id = service.add_analysed(
                        channel, ident, candidate.metadata, result.data, result.analysis, result.previews
                    )
                except QuotaExceeded as error:
                    full = error  # nothing more fits: the rest is rejected without analysis
                    yield _rejected(name, ident, error)
                    continue
                except ImageCloudError as error:
                    yield _rejected(name, ident, error)
                    continue
                timing.stored += 1
                timing.store_wall += time.perf_counter() - started
                analysis = result.analysis
                if lookalikes is not None:
                    lookalikes.add(target_id, ident, analysis.features_blob)
                yield Outcome(
                    name,
                    ident,
                    ADDED,
                    level=analysis.level,
                    matchratio=analysis.matchratio,
                    similar=looks_like,
                )
        if full is not None:
            for candidate in queue:
                yield _rejected(candidate.path.name, candidate.identifier, full)
    finally:
        # Queued images are dropped; the ones being analysed finish in the workers and are discarded.
        pool.shutdown(wait=False, cancel_futures=True)


def _result(future: Future[_Analysed | _Failed]) -> _Analysed | _Failed:
    try:
        return future.result()
    except Exception as error:  # a worker's unexpected failure is that file's outcome, not the import's end
        return _Failed(
            ImageCloudError.returncode, ImageCloudError.message, f"{type(error).__name__}: {error}"
        )


# ---------------------------------------------------------------------------------------------- --url


class RemoteChannel:
    """AddImage and GetImages of a running server, as one account."""

    def __init__(self, url: str, username: str, secretkey: str, channel: str, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.auth = {"username": username, "secretkey": secretkey, "channel": channel}
        self.client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def _post(self, endpoint: str, data: dict[str, str], **kwargs: Any) -> httpx.Response:
        return self.client.post(f"{self.url}/{endpoint}", data={**self.auth, **data}, **kwargs)

    def identifiers(self) -> set[str]:
        found: set[str] = set()
        page = 1000  # the contract's largest page
        while True:
            try:
                response = self._post("GetImages", {"position": str(len(found)), "count": str(page)})
            except httpx.HTTPError as error:
                raise ImportFailed(f"no answer from {self.url}: {error}") from error
            if response.status_code != 200:
                raise ImportFailed(f"GetImages: HTTP {response.status_code} from {self.url}")
            body = response.json()
            if body["returncode"] != 0:
                code = body["returncode"]
                raise ImportFailed(f"GetImages: {code} {body.get('message') or _MESSAGES.get(code, '')}")
            images = body["images"]
            found.update(image["identifier"] for image in images)
            if not images or len(found) >= body["totalcount"]:
                return found

    def add(self, candidate: Candidate, stop: threading.Event) -> Outcome | None:
        """The server's answer for one file; None if ``stop`` came before an answer that counts."""
        name, ident = candidate.path.name, candidate.identifier
        try:
            data = candidate.path.read_bytes()
        except OSError as error:
            return _rejected(name, ident, ImageCloudError(f"cannot read: {error}"))
        fields = {"identifier": ident}
        if candidate.metadata is not None:
            fields["metadata"] = candidate.metadata
        failures = 0
        while not stop.is_set():
            try:
                response = self._post("AddImage", fields, files={"image": (name, data)})
                if response.status_code >= 500:  # e.g. a proxy in front of a restarting server
                    raise httpx.HTTPStatusError("server error", request=response.request, response=response)
            except (httpx.TransportError, httpx.HTTPStatusError) as error:
                failures += 1
                if failures > 3:
                    return _rejected(name, ident, ImageCloudError(f"no answer from the server: {error}"))
                stop.wait(2.0 * failures)
                continue
            if response.status_code != 200:  # the contract answers 200; anything else is not its answer
                return _rejected(name, ident, ImageCloudError(f"HTTP {response.status_code}"))
            body = response.json()
            code = int(body["returncode"])
            if code == SystemBusy.returncode:  # queue full or over the rate limit: wait as told, try again
                stop.wait(float(response.headers.get("Retry-After", "1")))
                continue
            if code == IdentifierTaken.returncode and failures:
                # An earlier attempt's answer was lost in transit, but its write was not.
                return Outcome(name, ident, PRESENT)
            if code != 0:
                detail = body.get("message", "")
                return Outcome(name, ident, REJECTED, code, _MESSAGES.get(code, detail), detail)
            looks_like = ", ".join(
                f"{entry['identifier']} ({float(entry['score']):.2f})" for entry in body.get("similar") or []
            )
            return Outcome(
                name,
                ident,
                ADDED,
                level=body.get("level"),
                matchratio=body.get("matchratio"),
                similar=looks_like,
            )
        return None


def enrol_remote(
    remote: RemoteChannel, todo: list[Candidate], workers: int, timing: Timing, stop: threading.Event
) -> Iterator[Outcome]:
    """``workers`` AddImage requests in flight; yields outcomes as answers arrive.

    Once ``stop`` is set no new image is sent, but the answers to those already sent are awaited and
    counted: the server may have stored them.
    """
    pool = ThreadPoolExecutor(workers)
    queue = iter(todo)
    pending: set[Future[Outcome | None]] = set()
    give_up = threading.Event()  # requests waiting to be retried stop waiting
    try:
        while True:
            if stop.is_set():
                give_up.set()
            while not stop.is_set() and len(pending) < workers:
                candidate = next(queue, None)
                if candidate is None:
                    break
                pending.add(pool.submit(remote.add, candidate, give_up))
            if not pending:
                break
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                outcome = future.result()
                if outcome is None:
                    continue
                if outcome.status == ADDED:
                    timing.stored += 1
                yield outcome
    finally:
        give_up.set()
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------------- driver


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:5.1f}/s" if speed else "    -/s", style="progress.data.speed")


def run(
    channel: str,
    decided: list[Outcome],
    todo: list[Candidate],
    enrol: Callable[[Timing, threading.Event], Iterable[Outcome]],
    console: Console,
) -> Summary:
    """Drive ``enrol`` over ``todo`` with a progress bar.

    Ctrl-C sets the event ``enrol`` gets: it starts nothing new and finishes what may already be stored,
    so the summary is exactly what was committed. A second Ctrl-C stops at once (a store cut short is
    rolled back, but one that had just committed may then be missing from the summary).
    """
    summary = Summary(channel, outcomes=list(decided))
    timing = summary.timing
    counts = Counter(outcome.status for outcome in decided)
    console.print(
        f"{len(decided) + len(todo)} files: {counts[PRESENT]} already in channel {channel}, "
        f"{counts[REJECTED]} rejected before analysis, {len(todo)} to enrol",
        markup=False,
    )
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[tally]}"),
    )
    stop = threading.Event()

    def on_interrupt(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_interrupt) if in_main else None
    started = time.perf_counter()
    cpu_started = time.process_time()
    outcomes = iter(enrol(timing, stop))
    try:
        # Four redraws a second are plenty for a bar and leave the CPU to the import.
        with Progress(*columns, console=console, refresh_per_second=4) as progress:
            task = progress.add_task("enrolling", total=len(todo), tally="")
            try:
                for outcome in outcomes:
                    summary.outcomes.append(outcome)
                    counts[outcome.status] += 1
                    tally = f"added {counts[ADDED]}, rejected {counts[REJECTED]}"
                    progress.update(
                        task, advance=1, tally=tally, description="stopping" if stop.is_set() else "enrolling"
                    )
            except KeyboardInterrupt:
                stop.set()
            except Exception as error:  # what was committed before still deserves its summary
                summary.error = f"{type(error).__name__}: {error}"
            finally:
                close = getattr(outcomes, "close", None)
                if close is not None:
                    close()
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    summary.interrupted = stop.is_set()
    timing.wall = time.perf_counter() - started
    timing.main_cpu = time.process_time() - cpu_started
    return summary


_LISTED = 100  # rejected files named in the summary; the report has all of them


def print_summary(summary: Summary, console: Console) -> None:
    added, present, rejected = summary.count(ADDED), summary.count(PRESENT), summary.rejected()
    again = "run the same command again to continue"
    state = (
        f"interrupted; {again}" if summary.interrupted else f"stopped; {again}" if summary.error else "done"
    )
    console.print(
        f"channel {summary.channel}: {added} added, {present} skipped (already present), "
        f"{len(rejected)} rejected ({state})"
    )
    if rejected:
        by_code = Counter(outcome.returncode for outcome in rejected)
        console.print(
            "rejected: "
            + ", ".join(f"{n} x {code} ({_MESSAGES.get(code, 'error')})" for code, n in by_code.items()),
            markup=False,
            highlight=False,
        )
        for outcome in rejected[:_LISTED]:
            console.print(
                f"  {outcome.returncode:>6}  {outcome.file}: {outcome.message}"
                + (f" ({outcome.detail})" if outcome.detail else ""),
                markup=False,
                highlight=False,
            )
        if len(rejected) > _LISTED:
            console.print(f"  … and {len(rejected) - _LISTED} more (--report FILE lists every file)")
    alike = [outcome for outcome in summary.outcomes if outcome.status == ADDED and outcome.similar]
    if alike:
        console.print(
            f"{len(alike)} added image(s) match targets already in the channel (a photo of one may be "
            "answered with the other; remove or replace one of each pair):",
            markup=False,
            highlight=False,
        )
        for outcome in alike[:_LISTED]:
            console.print(f"  {outcome.file}: looks like {outcome.similar}", markup=False, highlight=False)
        if len(alike) > _LISTED:
            console.print(f"  … and {len(alike) - _LISTED} more (--report FILE lists every file)")
    t = summary.timing.as_dict()
    if summary.timing.stored:
        line = f"{t['targets_per_second']} targets/s over {t['seconds']} s"
        if summary.timing.analysed:
            line += (
                f"; per image: analysis {t['analysis_cpu_ms_per_image']} ms CPU in a worker, "
                f"store {t['store_ms_per_target']} ms, main process {t['main_cpu_ms_per_image']} ms CPU"
            )
        console.print(line)


def write_report(summary: Summary, path: Path) -> None:
    """Every file's outcome: CSV when ``path`` ends in .csv, else JSON with the counts and timing too."""
    rows = [asdict(outcome) for outcome in summary.outcomes]
    if path.suffix.lower() == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(Outcome.__dataclass_fields__))
            writer.writeheader()
            writer.writerows(rows)
        return
    body = {
        "channel": summary.channel,
        "interrupted": summary.interrupted,
        "error": summary.error,
        "added": summary.count(ADDED),
        "present": summary.count(PRESENT),
        "rejected": len(summary.rejected()),
        "timing": summary.timing.as_dict(),
        "files": rows,
    }
    path.write_text(json.dumps(body, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

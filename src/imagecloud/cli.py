"""Command line: ``imagecloud serve | user | channel | appkey | import | find | bench``."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, get_args

import typer
from pydantic import ValidationError

from imagecloud.config import SecondPass, Settings, load_settings
from imagecloud.errors import ImageCloudError
from imagecloud.service import Service, build_service
from imagecloud.storage.lock import DataDirInUse, DataDirLock

app = typer.Typer(no_args_is_help=True, help="imagecloud: image cloud recognition service.")
user_app = typer.Typer(no_args_is_help=True, help="Manage users (API accounts).")
channel_app = typer.Typer(no_args_is_help=True, help="Manage channels (collections of target images).")
app.add_typer(user_app, name="user")
app.add_typer(channel_app, name="channel")
appkey_app = typer.Typer(
    no_args_is_help=True, help="Manage app keys: search-only keys for apps and web pages."
)
app.add_typer(appkey_app, name="appkey")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: recognition quality and speed.")
app.add_typer(bench_app, name="bench")
cluster_app = typer.Typer(no_args_is_help=True, help="Index shards on a Ray cluster (docs/DEPLOY.md).")
app.add_typer(cluster_app, name="cluster")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (database + blobs). Env: IMAGECLOUD_DATA_DIR."),
]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="TOML settings file.")]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database",
        help="Database URL, e.g. postgresql://user:password@host/imagecloud (default: the SQLite file in the "
        "data directory). Env: IMAGECLOUD_DATABASE_URL.",
    ),
]


def _stage_progress(every: float) -> Callable[[str, int, int], None]:
    """A progress callback for long benchmark stages: one line on stderr at most every ``every`` seconds,
    and always at a stage's end."""
    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] > every:
            last[0] = now
            typer.echo(f"{stage}: {done}/{total}", err=True)

    return progress


def _settings(data_dir: Path | None, config: Path | None = None, **overrides: object) -> Settings:
    """The settings, or one line per refused value and exit code 2: an operator's typo needs no traceback."""
    try:
        return load_settings(config, data_dir=data_dir, **overrides)
    except ValidationError as error:
        for problem in error.errors():
            name = ".".join(str(part) for part in problem["loc"]) or "settings"
            reason = str(problem["msg"]).removeprefix("Value error, ")
            typer.echo(f"setting {name}: {reason} (given {problem.get('input')!r})", err=True)
        raise typer.Exit(code=2) from None


def _operator_service(data_dir: Path | None) -> Service:
    service = build_service(_settings(data_dir))
    service.db.migrate()
    return service


def _fail(error: ImageCloudError) -> None:
    typer.echo(f"error: {error.detail or error.message}", err=True)
    raise typer.Exit(code=1)


@app.command()
def serve(
    data_dir: DataDir = None,
    config: ConfigFile = None,
    database: DatabaseUrl = None,
    blobs: Annotated[
        str | None,
        typer.Option(
            "--blobs",
            help="Keep originals in an S3-compatible bucket: s3://bucket/prefix (default: a folder in the "
            "data directory). Env: IMAGECLOUD_BLOBS; endpoint and keys: IMAGECLOUD_S3_ENDPOINT_URL, "
            "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.",
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="Keep the search index in shards on a Ray cluster: auto (the cluster this machine joined "
            "with `ray start`) or HOST:PORT. Needs --database postgresql://... Env: IMAGECLOUD_CLUSTER.",
        ),
    ] = None,
    shards: Annotated[
        int | None,
        typer.Option("--shards", help="Index shards on the cluster (default 2). Env: IMAGECLOUD_SHARDS."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 8000).")] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo", help="Also set up a demo account, app key and sample posters (kept across restarts)."
        ),
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug | info | warning | error")] = "info",
) -> None:
    """Run the HTTP service. First start creates the data directory; restarts keep everything."""
    import uvicorn

    from imagecloud.api import create_app
    from imagecloud.api.connections import guarded_protocol, raise_open_files_limit
    from imagecloud.api.logs import configure_logging

    settings = _settings(
        data_dir,
        config,
        host=host,
        port=port,
        database_url=database,
        blobs=blobs,
        cluster=cluster,
        shards=shards,
    )
    problem = settings.cluster_problem()
    if problem is not None:
        typer.echo(f"setting cluster: {problem} (given {settings.cluster!r})", err=True)
        raise typer.Exit(code=2)
    configure_logging(log_level, as_json=settings.log_json)
    lock = _lock_data_dir(settings, "imagecloud serve")
    _reach_blob_store(settings)
    if demo:
        _prepare_demo(settings, lock)
    service = build_service(settings)
    service.data_lock = lock
    # Room for the capped connections plus the database, blob and index files.
    raise_open_files_limit(settings.max_connections + 256)
    uvicorn.run(
        create_app(service),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        # Our handlers (JSON lines with request ids) instead of uvicorn's, and our own access lines.
        log_config=None,
        access_log=False,
        # SIGTERM: stop accepting, let requests in flight finish (up to this long), then shut down.
        timeout_graceful_shutdown=30,
        http=guarded_protocol(settings.header_timeout, settings.max_connections),
        timeout_keep_alive=max(1, settings.idle_timeout),
        # Forwarded client addresses only from the proxies the operator named (none by default): they
        # decide whose anonymous budget a request spends and who may read /metrics.
        proxy_headers=bool(settings.trusted_proxies.strip()),
        forwarded_allow_ips=settings.trusted_proxies.strip() or None,
    )


def _prepare_demo(settings: Settings, lock: DataDirLock | None) -> None:
    from imagecloud import demo, importer

    try:
        # The import's operator service: it stores targets without keeping an index of its own, and
        # refuses while another process (a server already running here) has the database open.
        operator = importer.open_service(settings, lock)
    except importer.ImportFailed as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from None
    try:
        prepared = demo.prepare(operator, settings)
    finally:
        operator.db.dispose()
    typer.echo(demo.instructions(prepared, settings))


def _reach_blob_store(settings: Settings) -> None:
    """Refuse to start on an S3 bucket that does not answer: every add and every original would fail."""
    if not settings.blobs:
        return
    from imagecloud.service import open_blob_store
    from imagecloud.storage.s3blobs import S3Unavailable

    try:
        reachable = open_blob_store(settings).reachable()
    except S3Unavailable as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from None
    if not reachable:
        typer.echo(
            f"error: blob store {settings.blobs} does not answer: check the bucket, s3_endpoint_url and "
            "the credentials",
            err=True,
        )
        raise typer.Exit(code=1)


def _lock_data_dir(settings: Settings, command: str) -> DataDirLock:
    """The data directory's lock, whatever the database.

    A server keeps its search index in memory (saved under the data directory) and sweeps unreferenced
    blob files at start, so a second one on the same directory would destroy the first one's adds in
    flight. Servers sharing a database (and, with ``--cluster``, an index) each still keep previews there,
    so each needs a data directory of its own.
    """
    try:
        return DataDirLock(settings.data_dir, command).acquire()
    except DataDirInUse as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from None


@user_app.command("create")
def user_create(name: str, data_dir: DataDir = None) -> None:
    """Create a user and print its secret key (shown only this once)."""
    try:
        key = _operator_service(data_dir).create_user(name)
    except ImageCloudError as error:
        _fail(error)
    typer.echo(key)


@user_app.command("rotate-key")
def user_rotate_key(name: str, data_dir: DataDir = None) -> None:
    """Replace a user's secret key and print the new one; the old key stops working at once."""
    try:
        key = _operator_service(data_dir).rotate_key(name)
    except ImageCloudError as error:
        _fail(error)
    typer.echo(key)


@appkey_app.command("create")
def appkey_create(
    user: str,
    name: str,
    channel: Annotated[
        list[str] | None,
        typer.Option("--channel", help="Only this channel (repeatable); default: all the user's channels."),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Create an app key (FindImage and GetImage only) and print it (shown only this once)."""
    try:
        key = _operator_service(data_dir).appkeys.create(user, name, channel or [])
    except ImageCloudError as error:
        _fail(error)
    typer.echo(key)


@appkey_app.command("list")
def appkey_list(user: str, data_dir: DataDir = None) -> None:
    """List a user's app keys with the channels they may search (never the keys)."""
    try:
        infos = _operator_service(data_dir).appkeys.keys(user)
    except ImageCloudError as error:
        _fail(error)
    typer.echo(f"{'name':<32} {'created (UTC)':<20} channels")
    for info in infos:
        created = info.created.strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(f"{info.name:<32} {created:<20} {','.join(info.channels) or '(all)'}")


@appkey_app.command("revoke")
def appkey_revoke(user: str, name: str, data_dir: DataDir = None) -> None:
    """Revoke one app key; the user's other keys and secret key keep working."""
    try:
        _operator_service(data_dir).appkeys.revoke(user, name)
    except ImageCloudError as error:
        _fail(error)
    typer.echo(f"revoked app key {name} of {user}")


@channel_app.command("create")
def channel_create(
    name: str,
    owner: Annotated[str, typer.Option("--owner", help="User who owns the channel.")],
    quota: Annotated[int | None, typer.Option(help="Most targets the channel may hold.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Create a channel owned by a user."""
    try:
        info = _operator_service(data_dir).create_channel(name, owner, quota)
    except ImageCloudError as error:
        _fail(error)
    typer.echo(f"created channel {info.name} (owner {info.owner}, quota {info.quota})")


@channel_app.command("delete")
def channel_delete(name: str, data_dir: DataDir = None) -> None:
    """Delete a channel with all its targets and statistics."""
    try:
        _operator_service(data_dir).delete_channel(name)
    except ImageCloudError as error:
        _fail(error)
    typer.echo(f"deleted channel {name}")


@channel_app.command("set-quota")
def channel_set_quota(name: str, quota: int, data_dir: DataDir = None) -> None:
    """Change how many targets a channel may hold."""
    try:
        _operator_service(data_dir).set_quota(name, quota)
    except ImageCloudError as error:
        _fail(error)
    typer.echo(f"channel {name} quota is now {quota}")


@channel_app.command("list")
def channel_list(
    owner: Annotated[str | None, typer.Option(help="Only this user's channels.")] = None,
    data_dir: DataDir = None,
) -> None:
    """List channels with owner, target count and quota."""
    infos = _operator_service(data_dir).list_channels(owner)
    typer.echo(f"{'channel':<32} {'owner':<20} {'targets':>9} {'quota':>9}")
    for info in infos:
        typer.echo(f"{info.name:<32} {info.owner:<20} {info.count:>9} {info.quota:>9}")


@app.command()
def find(
    photo: Annotated[Path, typer.Argument(help="A JPEG or PNG photo.")],
    channel: Annotated[str | None, typer.Option(help="Search only this channel (default: all).")] = None,
    maxresults: Annotated[int, typer.Option(help="Up to this many distinct targets.")] = 1,
    data_dir: DataDir = None,
) -> None:
    """Search the stored targets for a photo, as FindImage would, and print the JSON answer."""
    service = build_service(_settings(data_dir))
    service.start()
    try:
        body = {"returncode": 0, **service.find_as_operator(photo.read_bytes(), channel, maxresults)}
    except ImageCloudError as error:
        body = {"returncode": error.returncode, "message": error.wire_message}
    typer.echo(json.dumps(body, ensure_ascii=False))
    if body["returncode"] != 0:
        raise typer.Exit(code=1)


@app.command()
def rerate(
    channel: Annotated[str | None, typer.Option(help="Only this channel's targets (default: all).")] = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Give every stored target the level and matchratio the current rating gives (after an upgrade that
    changed the rating). Nothing else changes; the server may keep running."""
    from imagecloud.service import open_blob_store
    from imagecloud.service.rerate import rerate as rerate_targets
    from imagecloud.storage import channels
    from imagecloud.storage.database import Database
    from imagecloud.vision.analysis import Analyser

    settings = _settings(data_dir, config)
    db = Database(settings.resolved_database_url)
    db.migrate()
    channel_id = None
    if channel is not None:
        with db.session() as session:
            found = channels.by_name(session, channel)
        if found is None:
            typer.echo(f"no channel {channel}", err=True)
            raise typer.Exit(code=1)
        channel_id = found.id
    analyser = Analyser(settings.recognizer_settings().analysis)
    done = rerate_targets(
        db,
        open_blob_store(settings),
        analyser,
        channel_id,
        progress=lambda n: typer.echo(f"rated {n}", err=True),
    )
    typer.echo(f"rated {done.rated} targets; {done.changed} changed level")
    for (old, new), count in sorted(done.moves.items(), reverse=True):
        typer.echo(f"  level {old} -> {new}: {count}")
    if done.refused:
        typer.echo(f"{len(done.refused)} would be refused today; kept at level 1, better replaced:")
        for name, identifier in done.refused:
            typer.echo(f"  {name}/{identifier}")
    for name, identifier, why in done.skipped:
        typer.echo(f"skipped {name}/{identifier}: {why}")


@app.command("import")
def import_images(
    directory: Annotated[
        Path,
        typer.Argument(
            help="Folder of JPEG/PNG images: identifier = file name without suffix, metadata from NAME.json.",
            exists=True,
            file_okay=False,
        ),
    ],
    channel: Annotated[str, typer.Option("--channel", help="Channel to enrol into (it must exist).")],
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Analysis processes (default: one per core); with --url, requests in flight (4)."
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write every file's outcome to this file (.csv, else JSON).")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="Enrol through a running server's AddImage instead of in-process.")
    ] = None,
    username: Annotated[str | None, typer.Option(help="With --url: the channel owner.")] = None,
    secretkey: Annotated[str | None, typer.Option(help="With --url: that user's key.")] = None,
    similar: Annotated[
        bool,
        typer.Option(
            help="List added images that match targets already in the channel (in-process: costs a search "
            "per image and an index of the channel in memory)."
        ),
    ] = True,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Enrol every image of a folder into a channel: parallel, resumable (run it again to continue after an
    interruption), with a progress bar and the rejected files listed with their result codes."""
    from rich.console import Console

    from imagecloud import importer

    # soft_wrap: a summary line stays one line in a log or a pipe, whatever the width.
    progress, out = Console(stderr=True, soft_wrap=True), Console(highlight=False, soft_wrap=True)
    if report is not None and not report.parent.is_dir():  # found out now, not after the whole import
        raise typer.BadParameter(f"no folder {report.parent} for the report", param_hint="--report")
    service: Service | None = None
    remote: importer.RemoteChannel | None = None
    try:
        if url:
            if not username or not secretkey:
                raise typer.BadParameter("--url needs --username and --secretkey")
            remote = importer.RemoteChannel(url, username, secretkey, channel)
            # Sizes are the server's to limit (it answers 20006 / 20002); its other rules are checked here.
            todo, decided = importer.scan(
                directory, remote.identifiers(), max_bytes=None, max_metadata_bytes=2**62
            )
            on_server = remote

            def enrol(timing: importer.Timing, stop: threading.Event) -> Iterator[importer.Outcome]:
                return importer.enrol_remote(on_server, todo, workers or 4, timing, stop)

        else:
            settings = _settings(data_dir, config)
            service = importer.open_service(settings)
            local = service
            target, present = service.import_channel(channel)
            todo, decided = importer.scan(
                directory,
                present,
                max_bytes=settings.max_add_bytes,
                max_metadata_bytes=settings.max_metadata_bytes,
            )

            def enrol(timing: importer.Timing, stop: threading.Event) -> Iterator[importer.Outcome]:
                count = workers or os.cpu_count() or 1
                return importer.enrol_in_process(local, target, todo, count, timing, stop, similar=similar)

        summary = importer.run(channel, decided, todo, enrol, progress)
    except (importer.ImportFailed, ImageCloudError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from None
    finally:
        if remote is not None:
            remote.close()
        if service is not None:
            service.db.dispose()
    importer.print_summary(summary, out)
    if report is not None:
        importer.write_report(summary, report)
        out.print(f"report written to {report}", markup=False)
    if service is not None:
        holder = importer.database_holder(service.settings.resolved_database_url)
        if holder is not None:
            progress.print(
                f"warning: process {holder} opened the database during the import; if that is a server, "
                "restart it so that it indexes the new targets",
                markup=False,
            )
    if summary.error:
        typer.echo(f"error: {summary.error}", err=True)
        raise typer.Exit(code=1)
    if summary.interrupted:
        raise typer.Exit(code=130)


@bench_app.command("recognition")
def bench_recognition(
    dataset: Annotated[
        Path, typer.Argument(help="Folder with targets/, queries/ + queries.csv, distractors/.")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Report folder (default bench/results/recognition-NAME).")
    ] = None,
    url: Annotated[str | None, typer.Option(help="Benchmark a running server instead of in-process.")] = None,
    username: Annotated[str | None, typer.Option(help="With --url: an existing user.")] = None,
    secretkey: Annotated[str | None, typer.Option(help="With --url: that user's key.")] = None,
    workers: Annotated[int, typer.Option(help="Parallel AddImage calls during enrolment.")] = 2,
    max_distractors: Annotated[int | None, typer.Option(help="Use only the first N distractors.")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="In-process: keep the enrolled data here (must be new).")
    ] = None,
    distractor_mode: Annotated[
        str,
        typer.Option(
            help="self: enrol and query every distractor (finding itself is right); "
            "split: enrol even-numbered, query odd-numbered ones."
        ),
    ] = "self",
    min_score: Annotated[
        float | None,
        typer.Option(
            help="In-process: answer from this score on (default: the service's). 0 shows the whole "
            "score distribution and threshold curve, including answers the service would refuse."
        ),
    ] = None,
    second_pass: Annotated[
        str | None, typer.Option(help="In-process: always | evidence | off (default: the service's).")
    ] = None,
    negatives: Annotated[
        list[Path] | None,
        typer.Option(
            "--negatives",
            help="A set of photos that must never match (repeatable): a folder of photos, or one with "
            "split.csv (photo,class,role) whose 'enrol' photos are enrolled and 'query' photos queried.",
        ),
    ] = None,
) -> None:
    """Enrol a data set's targets and distractors, query every photo, write report.json + report.md."""
    from imagecloud.bench import recognition
    from imagecloud.bench.backends import Backend, HttpBackend, InProcessBackend
    from imagecloud.bench.dataset import load_dataset, load_negatives

    try:
        data = load_dataset(dataset)
        negative_sets = [load_negatives(path) for path in negatives or []]
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if second_pass not in (None, *get_args(SecondPass)):
        raise typer.BadParameter(f"--second-pass must be one of {', '.join(get_args(SecondPass))}")
    backend: Backend
    if url:
        if not username or not secretkey:
            raise typer.BadParameter("--url needs --username and --secretkey")
        backend = HttpBackend(url, username, secretkey)
    else:
        if data_dir is not None and data_dir.exists() and any(data_dir.iterdir()):
            raise typer.BadParameter(f"{data_dir} is not empty")
        overrides = {"min_score": min_score, "second_pass": second_pass}
        backend = InProcessBackend(data_dir, **{k: v for k, v in overrides.items() if v is not None})
    target = out or Path("bench/results") / f"recognition-{data.name}"
    progress = _stage_progress(every=2.0)

    try:
        report = recognition.run(
            data,
            backend,
            target,
            workers=workers,
            max_distractors=max_distractors,
            distractor_mode=distractor_mode,
            negatives=negative_sets,
            progress=progress,
        )
    finally:
        backend.close()
    typer.echo(recognition.markdown(report))
    typer.echo(f"report written to {target}/report.md")


@bench_app.command("synthesize")
def bench_synthesize(
    images: Annotated[Path, typer.Argument(help="Folder of target images.")],
    out: Annotated[Path, typer.Argument(help="Benchmark folder to write (targets/, queries/, queries.csv).")],
    backgrounds: Annotated[
        Path | None, typer.Option(help="Real photos to use behind the print (photo-background condition).")
    ] = None,
    distractors: Annotated[
        Path | None, typer.Option(help="Unrelated photos to link as distractors/.")
    ] = None,
    max_images: Annotated[int | None, typer.Option(help="Use only the first N images.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulated views.")] = 0,
    copy: Annotated[
        bool, typer.Option("--copy", help="Copy targets/distractors instead of linking.")
    ] = False,
) -> None:
    """Make a benchmark of simulated phone photos (tilt, scale, blur, noise, light, JPEG, rotation,
    occlusion, real backgrounds) of any image set; measure it with `bench recognition`."""
    from imagecloud.bench.synthetic import CONDITIONS, synthesize

    def progress(done: int, total: int) -> None:
        if done == total or done % 20 == 0:
            typer.echo(f"images: {done}/{total}", err=True)

    written = synthesize(
        images,
        out,
        backgrounds=backgrounds,
        distractors=distractors,
        max_images=max_images,
        seed=seed,
        copy=copy,
        progress=progress,
    )
    names = ", ".join(condition.name for condition in CONDITIONS)
    typer.echo(f"wrote {written} photos ({names}) to {out}")


@bench_app.command("levels")
def bench_levels(
    images: Annotated[Path, typer.Argument(help="Folder of target images (weakened variants are added).")],
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("bench/results/levels"),
    work: Annotated[
        Path, typer.Option(help="Folder for the graded targets and photos (emptied first).")
    ] = Path("bench-work/levels"),
    variants: Annotated[int, typer.Option(help="Weakened variants of every image.")] = 3,
    max_images: Annotated[int | None, typer.Option(help="Use only the first N images.")] = None,
    skip_images: Annotated[
        int, typer.Option(help="Leave out the first N images (a set the rating was not designed on).")
    ] = 0,
    backgrounds: Annotated[
        Path | None, typer.Option(help="Real photos to use behind the print (photo-background condition).")
    ] = None,
    distractors: Annotated[
        Path | None, typer.Option(help="Unrelated photos: half enrolled beside the targets, half queried.")
    ] = None,
    max_distractors: Annotated[int | None, typer.Option(help="Use only the first N distractors.")] = None,
    conditions: Annotated[
        str | None,
        typer.Option(help="Comma-separated capture conditions (default: all of bench synthesize)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the weakenings and the simulated views.")] = 0,
    rerate: Annotated[
        bool,
        typer.Option(
            "--rerate",
            help="Keep the targets and search results in --work from an earlier run; only rate again "
            "(which photos are found does not depend on the rating) and count the photos of --conditions.",
        ),
    ] = False,
) -> None:
    """Share of simulated photos found per AddImage level, on the images and weakened variants of them."""
    from imagecloud.bench import levels
    from imagecloud.bench.synthetic import CONDITIONS

    chosen = CONDITIONS
    if conditions:
        by_name = {c.name: c for c in CONDITIONS}
        unknown = [name for name in conditions.split(",") if name not in by_name]
        if unknown:
            raise typer.BadParameter(f"unknown condition {', '.join(unknown)}; known: {', '.join(by_name)}")
        chosen = tuple(by_name[name] for name in conditions.split(","))
    if not images.is_dir():
        raise typer.BadParameter(f"{images} is not a folder")
    progress = _stage_progress(every=5.0)

    try:
        report = levels.run(
            images,
            work,
            out,
            variants=variants,
            max_images=max_images,
            skip_images=skip_images,
            backgrounds=backgrounds,
            distractors=distractors,
            max_distractors=max_distractors,
            conditions=chosen,
            seed=seed,
            rerate=rerate,
            progress=progress,
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    typer.echo(levels.markdown(report))
    typer.echo(f"report written to {out}/report.md")


@bench_app.command("scale")
def bench_scale(
    dataset: Annotated[
        Path, typer.Argument(help="Dataset folder (targets/, queries/, queries.csv, distractors/).")
    ],
    work: Annotated[
        Path, typer.Option(help="Folder for analysed distractors and saved indexes (reused).")
    ] = Path("bench-work/scale"),
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("bench/results/scale"),
    sizes: Annotated[str, typer.Option(help="Comma-separated target counts.")] = "10000,100000,1000000",
    sources: Annotated[
        list[Path] | None,
        typer.Option(
            "--source",
            help="Folder of real photos to render distractors from (repeatable), besides the first half "
            "of the dataset's distractor photos.",
        ),
    ] = None,
    real: Annotated[
        int,
        typer.Option(
            help="Distractors rendered and analysed, the rest word-level variants (0: all rendered)."
        ),
    ] = 0,
    workers: Annotated[int, typer.Option(help="Processes analysing distractors.")] = os.cpu_count() or 1,
    mixed_seconds: Annotated[float, typer.Option(help="Seconds of each half of the mixed-load test.")] = 30.0,
    exact: Annotated[
        bool,
        typer.Option(
            help="Also measure the exact index (the 1,000-target baseline, sizes below the switch)."
        ),
    ] = True,
    large: Annotated[
        str, typer.Option(help="Comma-separated large-scale indexes measured at every size: subset, words.")
    ] = "subset,words",
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--setting",
            help="A recognition setting by its path, PATH=VALUE (repeatable), e.g. "
            "index.subset.index.top_probe=2; the indexes are then saved in folders of their own.",
        ),
    ] = None,
    shards: Annotated[
        int,
        typer.Option(
            help="Instead: the same targets searched in process and through this many index shards on a "
            "Ray cluster, side by side (needs --database postgresql://...)."
        ),
    ] = 0,
    database: Annotated[
        str, typer.Option(help="With --shards: the PostgreSQL URL to store targets in.")
    ] = "",
    cluster: Annotated[
        str, typer.Option(help="With --shards: a Ray cluster address (default: a local one, started here).")
    ] = "",
    queries: Annotated[int, typer.Option(help="With --shards: cover photos (and photos of nothing).")] = 200,
    tenants: Annotated[
        int,
        typer.Option(
            help="Instead: one channel of the covers and 100 distractors, searched alone and beside this "
            "many targets of other owners, side by side."
        ),
    ] = 0,
    negatives: Annotated[
        list[Path] | None,
        typer.Option(
            "--negatives",
            help="A set of photos that must never match (repeatable; exact and subset indexes): a folder "
            "of photos, or one with split.csv whose 'enrol' photos are enrolled among the distractors and "
            "'query' photos queried.",
        ),
    ] = None,
) -> None:
    """Recall, FindImage time, RAM per target, restart time and mixed-load p99 at 10k … 1M targets."""
    from imagecloud.bench import scale
    from imagecloud.bench.dataset import load_negatives

    sources = sources or []
    if tenants:
        from imagecloud.bench import tenants as crowd

        crowded = crowd.run(dataset, work, out, tenants, workers=workers, sources=sources)
        typer.echo(crowd.markdown(crowded))
        typer.echo(f"report written to {out}/tenants.md")
        return

    if shards:
        from imagecloud.bench import shards as sharded

        if not database.startswith("postgresql"):
            typer.echo("error: --shards needs --database postgresql://...", err=True)
            raise typer.Exit(code=2)
        sized = [int(x) for x in sizes.split(",")]
        result = sharded.run(
            dataset, work, out, database, sized, shards, cluster, queries, workers, sources=sources
        )
        typer.echo(sharded.markdown(result))
        typer.echo(f"report written to {out}/shards.md")
        return

    try:
        overrides = scale.settings_from(setting or [])
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--setting") from None
    kinds = [k for k in large.split(",") if k]
    try:
        negative_sets = [load_negatives(path) for path in negatives or []]
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--negatives") from None
    if negative_sets and "words" in kinds:
        raise typer.BadParameter(
            "measured on the exact and subset indexes: add --large subset", param_hint="--negatives"
        )
    report = scale.run(
        dataset,
        work,
        out,
        [int(x) for x in sizes.split(",")],
        real,
        workers,
        mixed_seconds,
        exact=exact,
        sources=sources,
        large=kinds,
        settings=overrides,
        negatives=negative_sets,
    )
    typer.echo(scale.markdown(report))
    typer.echo(f"report written to {out}/report.md")


@bench_app.command("representation")
def bench_representation(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (targets/, queries/, queries.csv).")],
    sources: Annotated[
        list[Path], typer.Option("--source", help="Folder of real photos to render distractors from.")
    ],
    work: Annotated[
        Path, typer.Option(help="Folder for the ground truth, distractor features and quantizers (reused).")
    ] = Path("bench-work/representation"),
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("bench/results/scale/representation"),
    images: Annotated[int, typer.Option(help="Distractor images to render and analyse.")] = 40_000,
    rated: Annotated[int, typer.Option(help="Of which self-tested (the first ones).")] = 1_000,
    sizes: Annotated[
        str, typer.Option(help="Comma-separated distractor image counts to measure.")
    ] = "2500,5000,10000,20000,40000",
    subsets: Annotated[
        str, typer.Option(help="Comma-separated per-target subsets, first-N or refound-N.")
    ] = "first-128,refound-128,refound-200",
    nprobes: Annotated[str, typer.Option(help="Comma-separated lists probed per descriptor.")] = "8,16,32",
    nlist: Annotated[int, typer.Option(help="Inverted lists of the index.")] = 65_536,
    scale: Annotated[int, typer.Option(help="Targets the figures are extrapolated to.")] = 1_000_000,
    matched: Annotated[
        bool, typer.Option(help="Also measure with list lengths matched to the extrapolated scale.")
    ] = True,
    fastscan: Annotated[
        bool,
        typer.Option(help="Also time FAISS fast-scan PQ codes against the binary scan at those lengths."),
    ] = True,
    workers: Annotated[int, typer.Option(help="Processes analysing distractors.")] = os.cpu_count() or 1,
) -> None:
    """Share of verified photo-cover correspondences a compact binary k-NN index retrieves, and the
    cover's rank by votes, at growing densities of real distractor descriptors (extrapolated to --scale)."""
    from imagecloud.bench import representation

    plan = representation.Plan(
        sizes=tuple(int(x) for x in sizes.split(",")),
        subsets=tuple(representation.Subset.parse(x) for x in subsets.split(",")),
        nprobes=tuple(int(x) for x in nprobes.split(",")),
        nlist=nlist,
        scale=scale,
    )
    report = representation.run(
        dataset, sources, work, out, images, rated, workers, plan, matched=matched, fastscan=fastscan
    )
    text = representation.markdown(report)
    (out / "report.md").write_text(text)
    typer.echo(text)
    typer.echo(f"report written to {out}/report.md")


ClusterAddress = Annotated[
    str, typer.Option("--cluster", help="Ray cluster address: auto or HOST:PORT. Env: IMAGECLOUD_CLUSTER.")
]
ClusterNamespace = Annotated[
    str,
    typer.Option("--namespace", help="The servers' cluster_namespace. Env: IMAGECLOUD_CLUSTER_NAMESPACE."),
]


@cluster_app.command("status")
def cluster_status(
    cluster: ClusterAddress = "", namespace: ClusterNamespace = "", config: ConfigFile = None
) -> None:
    """List the index shards, their targets and processes; exit code 1 if one does not answer."""
    from imagecloud.cluster.recognizer import running_shards

    settings = _cluster_settings(cluster, namespace, config)
    shards = running_shards(settings.cluster, settings.cluster_namespace)
    if not shards:
        typer.echo(f"no index shards in namespace {settings.cluster_namespace!r}")
    for name, info in shards:
        if info is None:
            typer.echo(f"{name}: not answering")
        else:
            typer.echo(
                f"{name}: {info.targets} targets, pid {info.pid}, loaded in {info.ready_seconds:.1f} s"
            )
    if any(info is None for _, info in shards):
        raise typer.Exit(code=1)


@cluster_app.command("stop")
def cluster_stop(
    cluster: ClusterAddress = "", namespace: ClusterNamespace = "", config: ConfigFile = None
) -> None:
    """End every index shard (to change the shard count); servers started next rebuild them from the
    database."""
    from imagecloud.cluster.recognizer import stop_shards

    settings = _cluster_settings(cluster, namespace, config)
    for name in stop_shards(settings.cluster, settings.cluster_namespace):
        typer.echo(f"stopped {name}")


def _cluster_settings(cluster: str, namespace: str, config: Path | None) -> Settings:
    given = {"cluster": cluster, "cluster_namespace": namespace}
    settings = _settings(None, config, **{name: value for name, value in given.items() if value})
    if not settings.cluster:
        typer.echo("error: no cluster given: --cluster HOST:PORT (or IMAGECLOUD_CLUSTER)", err=True)
        raise typer.Exit(code=2)
    return settings


def main() -> None:
    app()

"""One settings object for the whole service.

Values come from (highest first) CLI flags, environment variables ``IMAGECLOUD_*``, an optional TOML file
(``IMAGECLOUD_CONFIG`` or ``--config``), then the defaults below, which are the contract's defaults.
Recognition tuning values have their defaults in :class:`imagecloud.recognition.settings.RecognizerSettings`;
here are only the overrides (the ``recognition`` table, and a few older names for the most used ones).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from imagecloud.recognition.search import SecondPass as SecondPass
from imagecloud.recognition.settings import RecognizerSettings, with_overrides

MiB = 1024 * 1024
_RECOGNITION = RecognizerSettings()  # the defaults of the recognition values named here


class Settings(BaseSettings):
    # The double underscore reaches into the ``recognition`` table: IMAGECLOUD_RECOGNITION__SEARCH__SHORTLIST.
    model_config = SettingsConfigDict(env_prefix="IMAGECLOUD_", extra="ignore", env_nested_delimiter="__")

    data_dir: Path = Path("imagecloud-data")
    # SQLAlchemy URL; empty means the embedded SQLite file inside data_dir.
    database_url: str = ""
    # Folder for original uploads; empty means data_dir/blobs.
    blob_dir: str = ""
    # Where originals are kept: empty means the folder above (the embedded default); "s3://bucket/prefix"
    # means objects in an S3-compatible bucket, which several servers can share.
    blobs: str = ""
    # The S3-compatible server (e.g. "http://127.0.0.1:8333"); empty means AWS itself (or boto3's own
    # AWS_ENDPOINT_URL). Region and keys left empty come from boto3's chain: AWS_REGION,
    # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws, an instance role.
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: SecretStr = SecretStr("")

    # Where the search index lives: empty means in this process (the embedded default); a Ray cluster address
    # ("auto" for the cluster this machine joined with `ray start`, or "HOST:PORT") means in index shards on
    # that cluster, shared by every API server started with the same address, namespace and shard count.
    # Needs a database every server reaches (PostgreSQL). See docs/DEPLOY.md.
    cluster: str = ""
    shards: int = Field(default=2, ge=1)
    cluster_namespace: str = "imagecloud"
    # Seconds a shard may take to answer; past it the request answers 20015 (never a silent miss).
    shard_timeout: float = Field(default=5.0, gt=0)
    # Seconds between a shard's checks that it holds exactly the committed targets of its channels.
    shard_reconcile_seconds: float = Field(default=30.0, ge=0)

    host: str = "127.0.0.1"
    port: int = 8000

    max_add_bytes: int = 5 * MiB
    max_find_bytes: int = 10 * MiB  # a 12 MP phone photo as taken (3-8 MB)
    max_pixels: int = _RECOGNITION.analysis.max_pixels  # for every image the server decodes
    max_metadata_bytes: int = 64 * 1024
    # Hard cap on a whole request body, enforced while streaming: beyond it the transport answers HTTP 413
    # instead of buffering. It sits above the per-endpoint limits so those still get their result code.
    max_request_bytes: int = 32 * MiB
    default_channel_quota: int = 1_000_000
    page_size: int = 100
    max_page_size: int = 1000
    # Longest Statistics range a caller may ask for, in days: a whole number of (leap) years, so multi-year
    # dashboards work while a century-long scan is refused with 20002.
    max_statistics_days: int = 366 * 5
    max_find_results: int = 10

    # Threads doing image work (decode, features, verification). OpenCV releases the GIL there, so one per
    # core keeps every core busy without oversubscribing.
    vision_workers: int = Field(default_factory=lambda: os.cpu_count() or 1)
    # When a photo matches nothing, look again at higher resolution (finds small and steeply tilted prints;
    # costs several times a normal search on photos of nothing enrolled). "always"; "evidence": only when
    # some target fitted the photo geometrically without being accepted (cheap on empty scenes, but small
    # prints are mostly missed: bench/results/); "off". true/false are accepted for always/off.
    second_pass: SecondPass = _RECOGNITION.search.second_pass
    # FindImage answers a target only when its score reaches this (0..1; 0.5 = coverage and re-finding both
    # at their minimum, see docs/RECOGNITION.md). Higher trades recall for even fewer wrong answers; the
    # recognition benchmark reports what each threshold keeps.
    min_score: float = Field(default=_RECOGNITION.search.acceptance.min_score, ge=0.0, le=1.0)
    # Channels with at least this many targets are searched through the large-scale index (recognition
    # setting index.large: "subset", each target's 200 most repeatable descriptors, or "words", visual
    # words), which keeps far less in RAM than the exact index at a measured cost in recall
    # (bench/results/scale/): past this size the exact index no longer fits in RAM comfortably.
    large_min_targets: int = _RECOGNITION.index.large_min_targets
    # Any other recognition tuning value, by its path in RecognizerSettings (recognition/settings.py): a TOML
    # table such as [recognition.search] with shortlist = 12, or IMAGECLOUD_RECOGNITION__SEARCH__SHORTLIST=12.
    # Unknown names and values of the wrong kind are refused at start. second_pass, min_score and
    # large_min_targets above win over their paths here when both are given; max_pixels always holds.
    recognition: dict[str, Any] = Field(default_factory=dict)
    # Requests allowed to wait for a vision worker; beyond running + waiting, 20015 with Retry-After at once.
    # Small on purpose: on 2 cores a FindImage on a 10k-target channel takes ~0.2-0.4 s, so 8 waiting means
    # at most a second or two of queueing; 32 let 32 clients queue for 6-8 s instead of hearing "busy".
    vision_queue: int = 8
    # Seconds an admitted image request may wait for a vision worker; past it, 20015 with Retry-After. The
    # queue bound caps how many wait, not for how long: under overload searches slow down and the admitted
    # ones waited 4-5 s at p99 (bench/results/reliability/). 0 means no deadline.
    vision_queue_timeout: float = 2.0
    # Seconds a client may take to send a request body (stalled or trickling uploads): past it, HTTP 408.
    body_timeout: float = 60.0
    # Seconds a connection may take to send a complete request head, counted from its opening and from each
    # answer it was given; trickled bytes do not extend it. Past it the connection is closed (slowloris).
    header_timeout: float = 10.0
    # Whole seconds a kept-alive connection may stay silent after an answer before it is closed.
    idle_timeout: int = 5
    # Open connections at most. At the cap a new connection closes the one that has waited longest for a
    # request head (idle or slow), so idle and slow clients cannot lock out those that send whole requests.
    max_connections: int = 1000
    # Per-user budget (token bucket): requests per second and burst size; 20015 beyond it. 0 disables it.
    rate_limit_per_second: float = 100.0
    rate_limit_burst: int = 200
    # GetImage without credentials (allowed by the contract) cannot be charged to a user, so it gets the same
    # kind of budget per client address (an IPv6 /64 counts as one address); 20015 beyond it, 0 disables it.
    anonymous_rate_limit_per_second: float = 20.0
    anonymous_rate_limit_burst: int = 100
    # The files behind imageurl (originals and previews) need no credentials either: a budget per client
    # address (HTTP 429 beyond it, 0 disables it), sized for a console page of 100 previews at once, and a
    # few threads of their own for the reads, so anonymous traffic never uses the owners' capacity.
    file_rate_limit_per_second: float = 50.0
    file_rate_limit_burst: int = 300
    file_workers: int = 4
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed: comma-separated addresses or
    # networks (e.g. "127.0.0.1" for a proxy on the same host). Empty: the headers are ignored and the
    # client address is the connection's, since anyone can send such a header and pick a fresh address
    # (and a fresh anonymous budget) for every request. Behind a proxy that is not listed, all clients
    # share the proxy's address and its budgets.
    trusted_proxies: str = ""
    # /metrics shows every tenant's request counts. Empty: served only to connections from the loopback
    # interface that do not come through a proxy. Set: served to any caller that sends
    # "Authorization: Bearer <token>", and to no one else.
    metrics_token: str = ""
    # Log lines as JSON objects (one per line, with the request id) or as plain text.
    log_json: bool = True

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        # A renamed setting is refused, not ignored like other unknown names: the server would otherwise run
        # on the default where its operator set a value.
        given = isinstance(data, dict) and any(str(k).lower() == "words_min_targets" for k in data)
        if given or any(k.upper() == "IMAGECLOUD_WORDS_MIN_TARGETS" for k in os.environ):
            raise ValueError("words_min_targets is now large_min_targets (IMAGECLOUD_LARGE_MIN_TARGETS)")
        return data

    @field_validator("second_pass", mode="before")
    @classmethod
    def _second_pass_switch(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return "always" if value else "off"
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no"):
            return "always" if value.lower() in ("true", "1", "yes", "on") else "off"
        return value

    @field_validator("recognition")
    @classmethod
    def _known_recognition_values(cls, value: dict[str, Any]) -> dict[str, Any]:
        with_overrides(_RECOGNITION, value)  # refuses unknown names and bad values now, not at first use
        return value

    def recognizer_settings(self) -> RecognizerSettings:
        """The recognition settings: the defaults, the ``recognition`` overrides, then the older names."""
        settings = with_overrides(RecognizerSettings(), self.recognition)
        given = self.model_fields_set
        search = settings.search
        if "second_pass" in given:
            search = replace(search, second_pass=self.second_pass)
        if "min_score" in given:
            search = replace(search, acceptance=replace(search.acceptance, min_score=self.min_score))
        index = settings.index
        if "large_min_targets" in given:
            index = replace(index, large_min_targets=self.large_min_targets)
        # The server's pixel cap holds for every image it decodes, recognition's included.
        analysis = replace(settings.analysis, max_pixels=self.max_pixels)
        return replace(settings, analysis=analysis, search=search, index=index)

    def cluster_problem(self) -> str | None:
        """Why these settings cannot serve with index shards, or None (a server's settings only: the
        ``cluster`` commands need no database)."""
        if self.cluster and self.resolved_database_url.startswith("sqlite"):
            return (
                "cluster needs a database every server and shard reaches (database_url postgresql://...), "
                "not an SQLite file"
            )
        return None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'imagecloud.db').resolve()}"

    @field_validator("blobs")
    @classmethod
    def _blob_store_address(cls, value: str) -> str:
        if value and not value.startswith("s3://"):
            raise ValueError("blobs is empty (a local folder, see blob_dir) or s3://bucket/prefix")
        return value

    @property
    def resolved_blob_dir(self) -> Path:
        return Path(self.blob_dir) if self.blob_dir else self.data_dir / "blobs"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("IMAGECLOUD_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from defaults, an optional TOML file, the environment and explicit overrides."""
    if config_file is not None:
        os.environ["IMAGECLOUD_CONFIG"] = str(config_file)
    clean = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**clean)

"""One settings object for the whole service.

Values come from (highest first) CLI flags, environment variables ``IMAGECLOUD_*``, an optional TOML file
(``IMAGECLOUD_CONFIG`` or ``--config``), then the defaults below, which are the contract's defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMAGECLOUD_", extra="ignore")

    data_dir: Path = Path("imagecloud-data")
    # SQLAlchemy URL; empty means the embedded SQLite file inside data_dir.
    database_url: str = ""
    # Folder for original uploads; empty means data_dir/blobs.
    blob_dir: str = ""

    host: str = "127.0.0.1"
    port: int = 8000

    max_add_bytes: int = 5 * MiB
    max_find_bytes: int = 3 * MiB
    max_pixels: int = 40_000_000
    max_metadata_bytes: int = 64 * 1024
    # Hard cap on a whole request body, enforced while streaming: beyond it the transport answers HTTP 413
    # instead of buffering. It sits above the per-endpoint limits so those still get their result code.
    max_request_bytes: int = 32 * MiB
    default_channel_quota: int = 1_000_000
    page_size: int = 100
    max_page_size: int = 1000
    # Longest Statistics range a caller may ask for, in days (five years).
    max_statistics_days: int = 366 * 5
    max_find_results: int = 10

    # Threads doing image work (decode, features, verification). OpenCV releases the GIL there, so one per
    # core keeps every core busy without oversubscribing.
    vision_workers: int = Field(default_factory=lambda: os.cpu_count() or 1)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'imagecloud.db').resolve()}"

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

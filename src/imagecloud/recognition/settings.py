"""Every recognition tuning value, with its default, in one place: the settings of each part, nested.

The defaults written here are the server's defaults too: :mod:`imagecloud.config` only carries the values an
operator overrides (by their path, e.g. ``search.shortlist``), applied with :func:`with_overrides`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar, get_type_hints

from pydantic import TypeAdapter

from imagecloud.index.tiered import TierSettings
from imagecloud.recognition.search import SearchSettings
from imagecloud.vision.analysis import AnalysisSettings

T = TypeVar("T")


@dataclass(frozen=True)
class RecognizerSettings:
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)  # of targets and photos
    search: SearchSettings = field(default_factory=SearchSettings)  # verification, acceptance, second pass
    index: TierSettings = field(default_factory=TierSettings)  # which index serves a scope, and theirs


def with_overrides(settings: T, overrides: Mapping[str, Any], path: str = "") -> T:
    """``settings`` (a dataclass) with the values ``overrides`` names, nested by field, checked and converted.

    Values may be strings (from the environment): they are converted to the field's type. An unknown name
    or a value of the wrong kind raises ``ValueError`` naming its path.
    """
    if not dataclasses.is_dataclass(settings) or isinstance(settings, type):
        raise ValueError(f"{path.rstrip('.')} is a single value, not a group of settings")
    hints = _hints(type(settings))
    changes: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in hints:
            known = ", ".join(sorted(hints))
            raise ValueError(f"unknown recognition setting {path}{name} (known here: {known})")
        current = getattr(settings, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ValueError(f"recognition setting {path}{name} is a group: give its values by name")
            changes[name] = with_overrides(current, value, f"{path}{name}.")
        else:
            try:
                changes[name] = TypeAdapter(hints[name]).validate_python(value)
            except ValueError as error:
                raise ValueError(f"recognition setting {path}{name}: {error}") from None
    return dataclasses.replace(settings, **changes)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return {f.name: hint for f in dataclasses.fields(cls) if (hint := get_type_hints(cls)[f.name])}

"""A recognition data set on disk, laid out like ``smvs-dvd``.

```
targets/NAME.jpg        enrolled with identifier NAME
queries/*.jpg           photos of targets
queries.csv             query,target[,condition columns…]  (query path relative to the folder)
distractors/*.jpg       enrolled too (so the channel is not trivially small) and sent as queries that
                        must come back without an identifier
```
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
_UNSAFE = re.compile(r"[^A-Za-z0-9@_.]")


@dataclass(frozen=True)
class Query:
    path: Path
    target: str
    conditions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    root: Path
    targets: dict[str, Path]
    queries: list[Query]
    distractors: list[Path]

    @property
    def name(self) -> str:
        return self.root.resolve().name


def identifier_for(path: Path) -> str:
    """The file stem made into a valid identifier (the contract's character set, 3 to 50 characters)."""
    name = _UNSAFE.sub("_", path.stem)[:50]
    return name if len(name) >= 3 else name.ljust(3, "_")


def images_in(folder: Path) -> list[Path]:
    """The JPEG and PNG files of ``folder``, sorted by name (none when there is no such folder)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_dataset(root: Path) -> Dataset:
    targets = {identifier_for(path): path for path in images_in(root / "targets")}
    if not targets:
        raise ValueError(f"{root}/targets holds no JPEG or PNG files")
    queries: list[Query] = []
    listing = root / "queries.csv"
    if listing.exists():
        with listing.open(newline="") as handle:
            for row in csv.DictReader(handle):
                path = root / row["query"]
                target = identifier_for(Path(row["target"]))
                conditions = {key: value for key, value in row.items() if key not in ("query", "target")}
                queries.append(Query(path=path, target=target, conditions=conditions))
    return Dataset(root=root, targets=targets, queries=queries, distractors=images_in(root / "distractors"))


@dataclass(frozen=True)
class NegativeSet:
    """Photos that must never come back with an identifier, and optionally photos enrolled beside them.

    A folder with ``split.csv`` (``photo,class,role``; ``role`` ``enrol`` or ``query``) enrols its ``enrol``
    photos as targets and queries its ``query`` photos: each query shows a subject of the same kind as some
    enrolled photo but is another photograph, so any identifier is a false match. A folder without it is a
    plain set of photos of nothing enrolled.
    """

    root: Path
    enrol: list[Path]
    queries: list[Path]

    @property
    def name(self) -> str:
        return self.root.resolve().name


def load_negatives(root: Path) -> NegativeSet:
    listing = root / "split.csv"
    if not listing.exists():
        photos = images_in(root)
        if not photos:
            raise ValueError(f"{root} holds no JPEG or PNG files and no split.csv")
        return NegativeSet(root=root, enrol=[], queries=photos)
    enrol: list[Path] = []
    queries: list[Path] = []
    with listing.open(newline="") as handle:
        for row in csv.DictReader(handle):
            role = row.get("role", "")
            if role not in ("enrol", "query"):
                raise ValueError(f"{listing}: role must be 'enrol' or 'query', not {role!r}")
            (enrol if role == "enrol" else queries).append(root / row["photo"])
    return NegativeSet(root=root, enrol=enrol, queries=queries)

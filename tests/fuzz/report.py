"""Summarise libFuzzer logs of the atheris runs into one JSON report, and keep a small corpus.

    .venv/bin/python -m tests.fuzz.report build/fuzz bench/results/reliability/fuzz.json

For each harness ``NAME`` it reads ``build/fuzz/NAME.log`` and the grown corpus ``build/fuzz/NAME/``, and
copies into tests/fuzz/corpus/NAME/ up to 40 inputs the run added (under 64 KiB, spread over sizes),
so the default suite replays them.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

from imagecloud.bench.machine import describe as describe_machine

KEEP = 40
MAX_BYTES = 64 * 1024
CORPUS = Path(__file__).parent / "corpus"


def summarise(log: Path) -> dict[str, object]:
    text = log.read_text(errors="replace")
    stats = {key: float(value) for key, value in re.findall(r"stat::(\w+):\s+([\d.]+)", text)}
    done = re.search(r"Done (\d+) runs in (\d+) second", text)
    crashed = re.search(r"ERROR: libFuzzer: (.*)|Uncaught Python exception", text)
    return {
        "runs": int(done.group(1)) if done else int(stats.get("number_of_executed_units", 0)),
        "seconds": int(done.group(2)) if done else None,
        "exec_per_second": stats.get("average_exec_per_sec"),
        "corpus_units_added": stats.get("new_units_added"),
        "peak_rss_mb": stats.get("peak_rss_mb"),
        "slowest_unit_seconds": stats.get("slowest_unit_time_sec"),
        "crash_hang_or_leak": crashed.group(0) if crashed else None,
    }


def keep_corpus(grown: Path, name: str) -> int:
    destination = CORPUS / name
    destination.mkdir(parents=True, exist_ok=True)
    found = sorted(
        (
            p
            for p in grown.iterdir()
            if p.is_file() and not p.name.startswith("seed-") and p.stat().st_size < MAX_BYTES
        ),
        key=lambda p: (p.stat().st_size, p.name),
    )
    # Spread over the size range: the smallest inputs alone are mostly rejected at the first byte.
    step = max(1, len(found) // KEEP)
    kept = 0
    for path in found[::step][:KEEP]:
        data = path.read_bytes()
        (destination / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)
        kept += 1
    return kept


def main() -> None:
    work, report = Path(sys.argv[1]), Path(sys.argv[2])
    results = {}
    for name in ("decode", "multipart"):
        entry = summarise(work / f"{name}.log")
        entry["kept_as_regression_cases"] = keep_corpus(work / name, name)
        results[name] = entry
    body = {"harnesses": results, "machine": describe_machine()}
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(body, indent=2) + "\n")
    print(json.dumps(body, indent=2))


if __name__ == "__main__":
    main()

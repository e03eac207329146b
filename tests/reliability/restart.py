"""Restart benchmark: how long a server killed with SIGKILL takes to answer again, and to be ready.

    make bench-restart
    # = for 1k and 10k targets (seeded once into build/restart-1k and build/load-10k, as bench-load does):
    #   .venv/bin/python -m tests.reliability.restart --targets 10000 --data-dir build/load-10k \\
    #       --report bench/results/reliability/restart-10k.json

A first start indexes the channel (and saves the index); then the server is killed with SIGKILL ``--kills``
times, each time after it has been ready for ``--settle`` seconds, and started again. For every start it
records the seconds from spawning the process to the first HTTP answer on the port (``/healthz``) and to
``/readyz`` answering 200.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from imagecloud.bench.machine import describe as describe_machine
from tests.reliability.load import enrol
from tests.server import free_port


def _start(data_dir: Path, port: int, timeout: float) -> tuple[subprocess.Popen[bytes], float, float]:
    """Spawn a server; returns it with the seconds to its first answer and to ready."""
    log = open(data_dir / "restart-bench.log", "ab")  # noqa: SIM115 - closed with the process
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "imagecloud", "serve", "--data-dir", str(data_dir), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "IMAGECLOUD_LOG_JSON": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    answered: float | None = None
    deadline = started + timeout
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}")
            try:
                if answered is None:
                    client.get(f"{url}/healthz")
                    answered = time.monotonic() - started
                if client.get(f"{url}/readyz").status_code == 200:
                    return process, answered, time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
    process.kill()
    raise RuntimeError(f"server not ready in {timeout} s")


def run(data_dir: Path, *, targets: int, kills: int, settle: float) -> dict[str, Any]:
    enrol(data_dir, targets, rated=False)
    port = free_port()
    starts: list[dict[str, float]] = []
    for n in range(kills + 1):
        process, answered, ready = _start(data_dir, port, timeout=1800)
        starts.append({"first_answer_s": round(answered, 2), "ready_s": round(ready, 2)})
        print(f"start {n}: first answer {answered:.2f} s, ready {ready:.2f} s", flush=True)
        time.sleep(settle)
        process.send_signal(signal.SIGKILL)
        process.wait()
    restarts = starts[1:]
    return {
        "targets": targets,
        "first_start": starts[0],
        "restarts_after_sigkill": restarts,
        "median_ready_s": round(statistics.median(s["ready_s"] for s in restarts), 2),
        "median_first_answer_s": round(statistics.median(s["first_answer_s"] for s in restarts), 2),
        "settle_s": settle,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "machine": describe_machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--data-dir", type=Path, default=Path("build/load-10k"))
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--settle", type=float, default=15.0, help="seconds ready before each SIGKILL")
    parser.add_argument("--report", type=Path)
    args = parser.parse_args()
    report = run(args.data_dir, targets=args.targets, kills=args.kills, settle=args.settle)
    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text + "\n")


if __name__ == "__main__":
    main()

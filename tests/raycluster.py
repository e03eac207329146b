"""A throwaway two-node Ray cluster on 127.0.0.1: ``ray start --head`` plus ``ray start --address``.

Each node is a ``ray start --block`` process in a session of its own, so a node can be killed the hard way
(SIGKILL to its whole process group: raylet, object store and the workers running its actors) and started
again, as a crashed machine would be.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.server import free_port

REQUIRE_ENV = "IMAGECLOUD_REQUIRE_RAY"


def ray_command() -> Path | None:
    found = Path(sys.executable).parent / "ray"
    return found if found.exists() else None


def missing_reason() -> str:
    return "cluster tests need Ray (pip install -e '.[cluster]')"


class Node:
    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.args = args
        self.log = log
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            self.args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=self.env
        )

    def kill(self) -> None:
        """SIGKILL to every process of the node, as if its machine died (workers run in sessions of their
        own, so they are found as descendants, not by process group)."""
        if self.process is None:
            return
        for pid in [self.process.pid, *_descendants(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        family = _descendants(self.process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=20)
        for pid in [self.process.pid, *family]:  # whatever did not go with its node
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self.process = None


def _descendants(root: int) -> list[int]:
    """Every process below ``root`` (from /proc), children before grandchildren."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [root]
    while todo:
        children = parents.get(todo.pop(), [])
        found.extend(children)
        todo.extend(children)
    return found


class RayCluster:
    """A head node and one more node, both on this machine."""

    def __init__(self, ray: Path) -> None:
        self.ray = ray
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.root = Path(tempfile.mkdtemp(prefix="imagecloud-ray-"))
        # Token authentication, with a token of this cluster's own, given to every process that joins it
        # (nodes, servers, commands): whatever ~/.ray/auth_token a local ray.init() may have left, which
        # would otherwise switch authentication on for some processes and not others.
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        env = {**os.environ, **self.auth}
        common = ["--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "2", "--disable-usage-stats"]
        self.head = Node(
            [
                str(ray),
                "start",
                "--head",
                "--port",
                str(self.port),
                "--include-dashboard",
                "false",
                # A dead node is noticed after ~2 s instead of the default ~15 s of missed health checks.
                "--system-config",
                '{"health_check_period_ms": 500, "health_check_failure_threshold": 4}',
                *common,
            ],
            self.root / "head.log",
            env,
        )
        self.second = Node(
            [str(ray), "start", "--address", self.address, *common], self.root / "second.log", env
        )

    def start(self, timeout: float = 60.0) -> RayCluster:
        self.head.start()
        self._wait_nodes(1, timeout)
        self.second.start()
        self._wait_nodes(2, timeout)
        return self

    def restart_second(self, timeout: float = 60.0) -> None:
        self.second.start()
        self._wait_nodes(2, timeout)

    def alive_nodes(self) -> int:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import ray, logging; ray.init(address={self.address!r}, logging_level=logging.ERROR); "
                "print(sum(1 for n in ray.nodes() if n['Alive']))",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **self.auth},
        )
        return int(done.stdout.strip() or 0) if done.returncode == 0 else 0

    def _wait_nodes(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.alive_nodes() >= count:
                return
            time.sleep(0.5)
        logs = "\n".join(
            node.log.read_text(errors="replace")[-3000:]
            for node in (self.head, self.second)
            if node.log.exists()
        )
        self.stop()  # a cluster that did not come up is not left running
        raise RuntimeError(f"Ray cluster did not reach {count} nodes in {timeout}s:\n{logs}")

    def stop(self) -> None:
        self.second.stop()
        self.head.stop()

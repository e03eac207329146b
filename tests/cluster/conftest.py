"""A two-node Ray cluster, a PostgreSQL database and two API servers sharing index shards on the cluster.

Every test that starts a Ray cluster lives in ``test_shards.py``, and the suite distributes tests by file
(``--dist loadfile``), so one test worker starts one Ray cluster: two Ray clusters on one host would compete
for the same default ports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import postgres, raycluster
from tests.missing import missing
from tests.server import ServerProcess

# Short enough that a test does not wait long for a dead shard or a reconcile.
SHARD_TIMEOUT = 3.0
RECONCILE_SECONDS = 1.0
GRACE_SECONDS = max(2 * RECONCILE_SECONDS, 4 * SHARD_TIMEOUT)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[raycluster.RayCluster]:
    ray = raycluster.ray_command()
    if ray is None:
        missing(raycluster.missing_reason(), raycluster.REQUIRE_ENV)
    cluster = raycluster.RayCluster(ray).start()
    yield cluster
    cluster.stop()


@dataclass
class Deployment:
    ray: raycluster.RayCluster
    servers: list[ServerProcess]
    namespace: str

    def shards(self) -> list[dict[str, object]]:
        """The shards as /readyz of the first server reports them."""
        import httpx

        body = httpx.get(f"{self.servers[0].url}/readyz", timeout=30).json()
        shards: list[dict[str, object]] = body["dependencies"]["index"]["shards"]
        return shards

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "imagecloud",
                "cluster",
                *args,
                "--cluster",
                self.ray.address,
                "--namespace",
                self.namespace,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **self.ray.auth},
        )


def start_deployment(
    ray: raycluster.RayCluster, pg: postgres.Cluster, root: Path, namespace: str
) -> Deployment:
    database = pg.new_database("cluster")
    settings = {
        "blob_dir": str(root / "blobs"),  # one folder both servers reach, as a network share would be
        "cluster_namespace": namespace,
        "shard_timeout": str(SHARD_TIMEOUT),
        "shard_reconcile_seconds": str(RECONCILE_SECONDS),
        "second_pass": "off",
    }
    servers = [
        ServerProcess(
            root / f"server{n}",
            database_url=database,
            settings=settings,
            env=ray.auth,
            args=["--cluster", ray.address, "--shards", "2"],
        )
        for n in (1, 2)
    ]
    for server in servers:
        server.start(timeout=180)
    return Deployment(ray=ray, servers=servers, namespace=namespace)


@pytest.fixture(scope="module")
def deployment(
    ray_cluster: raycluster.RayCluster,
    postgres_cluster: postgres.Cluster,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Deployment]:
    namespace = f"test-{request.module.__name__.rsplit('.', 1)[-1]}-{os.getpid()}"
    deployed = start_deployment(ray_cluster, postgres_cluster, tmp_path_factory.mktemp("cluster"), namespace)
    yield deployed
    for server in deployed.servers:
        server.stop()
    stopped = deployed.cli("stop")
    assert stopped.returncode == 0, stopped.stderr


def dump(body: object) -> str:
    return json.dumps(body, indent=1)

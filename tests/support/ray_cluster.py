"""A throwaway two-node Ray cluster on loopback, started with ``ray start``, for tests.

The cluster's processes run without the project on their import path: the editable
install's finder is removed at interpreter start (a ``sitecustomize`` on PYTHONPATH), so
a worker can import ``indexpair`` only from what the job ships in its runtime env.
Every process of the cluster carries a tag in its environment and runs in the cluster's
temp dir; stopping kills exactly those processes (``ray stop`` would kill every Ray on
the machine) and waits until they are gone.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port

TAG = "INDEXPAIR_TEST_RAY_CLUSTER"
# Ray replaces 127.0.0.1 (and localhost) with the machine's network address unless
# RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which in turn refuses a second node; other loopback
# addresses it leaves as they are, so the cluster's traffic stays on loopback.
HEAD_IP = "127.0.0.2"
SECOND_IP = "127.0.0.3"
HIDE_EDITABLE = """\
import sys
sys.meta_path[:] = [f for f in sys.meta_path
                    if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path[:] = [p for p in sys.path if not p.startswith("__editable__")]
"""


@dataclass
class LocalCluster:
    """A running cluster: its GCS address, the environment its processes run in."""

    address: str
    env: dict[str, str]
    temp_dir: Path
    tag: str
    start_s: float = 0.0


def _ray(cluster: LocalCluster, *args: str) -> None:
    ray_cli = Path(sys.executable).with_name("ray")
    done = subprocess.run(
        [str(ray_cli), "start", *args],
        env=cluster.env,
        cwd=cluster.temp_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ray start {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def _node_args(ip: str) -> list[str]:
    ports = {
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--metrics-export-port": free_port(),
        "--runtime-env-agent-port": free_port(),
    }
    return [
        f"--node-ip-address={ip}",
        "--num-cpus=2",
        f"--object-store-memory={200 * 1024 * 1024}",
        "--disable-usage-stats",
        *(f"{flag}={port}" for flag, port in ports.items()),
    ]


def cluster_env(hide_dir: Path, tag: str) -> dict[str, str]:
    """The environment of the cluster's processes: no project on the path, a tag."""
    hide_dir.mkdir(parents=True, exist_ok=True)
    (hide_dir / "sitecustomize.py").write_text(HIDE_EDITABLE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "1"  # several nodes (Ray's name for it)
    # No token auth on this loopback-only cluster (Ray turns it on when ~/.ray/auth_token
    # exists, and a second node or a driver would then need the token too).
    env.update(
        PYTHONPATH=str(hide_dir),
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="disabled",
        **{TAG: tag},
    )
    return env


def members(cluster: LocalCluster) -> list[int]:
    """Pids of this cluster's processes (Linux /proc): those whose environment carries
    the cluster's tag, or whose working directory or an open file lies in its temp dir.
    Ray's agents rename themselves with setproctitle, which overwrites the environment
    /proc shows, so the tag alone misses them; they keep the cwd and their log files."""
    marker = f"{TAG}={cluster.tag}".encode()
    root = str(cluster.temp_dir)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0") or _inside(
                os.readlink(entry / "cwd"), root
            ):
                found.append(int(entry.name))
                continue
            if any(_inside(os.readlink(fd), root) for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def _signal(pids: list[int], signum: int) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signum)


def stop(cluster: LocalCluster, grace_s: float = 5.0, kill_s: float = 15.0) -> None:
    """Terminate, then kill, exactly the processes of one cluster, and wait until
    they are gone. Kills are repeated: a process the cluster forks while it is being
    stopped (Ray starts agents late) is not in an earlier sweep, and a killed process
    stays readable in /proc for a moment while it exits."""
    _signal(members(cluster), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while members(cluster) and time.monotonic() < deadline:
        time.sleep(0.2)
    deadline = time.monotonic() + kill_s
    while (left := members(cluster)) and time.monotonic() < deadline:
        _signal(left, signal.SIGKILL)
        time.sleep(0.2)


@contextmanager
def two_node_cluster() -> Iterator[LocalCluster]:
    """A head node and a second node, two CPUs each, on loopback; always stopped."""
    # A short path: Ray's Unix sockets live under the temp dir (108-byte path limit).
    temp_dir = Path(tempfile.mkdtemp(prefix="ipray-", dir="/tmp"))
    tag = uuid.uuid4().hex
    port = free_port()
    cluster = LocalCluster(f"{HEAD_IP}:{port}", cluster_env(temp_dir / "hide", tag), temp_dir, tag)
    started = time.monotonic()
    try:
        _ray(
            cluster,
            "--head",
            f"--port={port}",
            f"--temp-dir={temp_dir}",
            "--include-dashboard=false",
            f"--ray-client-server-port={free_port()}",
            *_node_args(HEAD_IP),
        )
        _ray(cluster, f"--address={cluster.address}", *_node_args(SECOND_IP))
        cluster.start_s = time.monotonic() - started
        yield cluster
    finally:
        stop(cluster)
        shutil.rmtree(temp_dir, ignore_errors=True)

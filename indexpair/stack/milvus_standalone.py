"""Run the real Milvus 2.3 standalone server that the PyPI package ``milvus`` bundles.

``python -m indexpair.stack.milvus_standalone --data D --port P`` serves Milvus on ``P`` and keeps
everything else on ports of its own, so several servers (and Milvus Lite) run side by side:

* the package's ``milvus-server`` command leaves the embedded etcd on its default ports
  (2379/2380, whatever ``--etcd-port`` says) and the metrics port on 9091 or the next free
  one, so a second server fails with "bind: address already in use"; here every port is a
  free one, chosen at start, and etcd gets a config file that puts it on two of them;
* that command keeps running when the binary dies, and leaves the binary behind on
  SIGTERM; here the binary is our child: SIGTERM/SIGINT are passed on, and we exit with it;
* the binaries (≈250 MB unpacked) are unpacked once into a cache, not into every data dir;
* the ports are kept in the data dir and reused: Milvus 2.3 stops with its sessions still
  registered in etcd (its nodes outlive the coordinators and the graceful stop times out),
  and a restart on other ports waits ≈50 s for those sessions to expire.

The gRPC servers of Milvus 2.3 listen on all interfaces (not configurable); etcd listens on
127.0.0.1 only, and every component registers 127.0.0.1 as its address.

Authentication is on (``common.security.authorizationEnabled``). Milvus 2.3 has no setting
for the first root password (it is always ``Milvus``), so a password is generated once into
``--password-file`` (mode 0600) and set through the API as soon as the server answers;
clients use the token ``root:<password>`` (:func:`indexpair.gateways.milvus.auth_token`).
Until it is set (a second or two after the first start, never after a restart) the
server answers the default password.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from indexpair.stack.procs import kept_secret

logger = logging.getLogger(__name__)

# Components whose registered address would otherwise be the first non-loopback address.
COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")
# Ports of the package's config template besides the proxy (the one clients use).
INTERNAL_PORTS = (
    "etcd_port",
    "root_coord_port",
    "proxy_internal_port",
    "query_coord_port",
    "query_node_port",
    "index_coord_port",
    "index_node_port",
    "data_coord_port",
    "data_node_port",
)
GRACEFUL_STOP_S = 5  # the default (1800 s) makes SIGTERM hang
DEFAULT_ROOT_PASSWORD = "Milvus"  # what Milvus 2.3 gives root on a fresh data dir


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports nobody listens on right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _ports(data: Path) -> dict[str, int]:
    """The internal ports of the server in ``data``: the last ones if still free, else new."""
    names = [*INTERNAL_PORTS, "etcd_peer_port", "metrics_port"]
    path = data / "configs" / "ports.json"
    with contextlib.suppress(OSError, ValueError):
        saved = json.loads(path.read_text(encoding="utf-8"))
        if set(saved) == set(names) and all(_free(int(port)) for port in saved.values()):
            return {name: int(port) for name, port in saved.items()}
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ports), encoding="utf-8")
    return ports


def _free(port: int) -> bool:
    """Nothing listens on ``port``; connections of a stopped server in TIME_WAIT are fine."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Go's listeners do
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def binaries(cache: Path) -> Path:
    """The unpacked ``milvus`` executable, unpacking the package's binaries on first use.

    Unpacked into a temporary folder that is then renamed, so two servers starting at
    once never run a half-written binary.
    """
    import milvus  # the PyPI package `milvus`, which bundles the binaries

    target = cache / f"milvus-{milvus.__version__}" / "bin"
    if not (target / "milvus").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="unpack-", dir=target.parent))
        logger.info("unpacking the Milvus %s binaries into %s", milvus.__version__, target)
        milvus._initialize_data_files(str(staging))
        with contextlib.suppress(OSError):  # another server unpacked them meanwhile
            (staging / "bin").rename(target)
        shutil.rmtree(staging, ignore_errors=True)
    return target / "milvus"


def _etcd_config(path: Path, client_port: int, peer_port: int) -> None:
    client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    path.write_text(
        f"name: default\nlisten-client-urls: {client}\nadvertise-client-urls: {client}\n"
        f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
        f"initial-cluster: default={peer}\n",
        encoding="utf-8",
    )


def prepare(data: Path, port: int) -> tuple[list[str], dict[str, str]]:
    """Write the config of a server on ``port`` with its data under ``data``.

    Returns:
        The command line of the binary and its environment (run it with ``data`` as cwd).
    """
    from milvus import MilvusServerConfig

    ports = _ports(data)
    etcd_peer, metrics = ports.pop("etcd_peer_port"), ports.pop("metrics_port")
    config = MilvusServerConfig(data_dir=str(data))
    config.resolve_storage()
    # Not config.resolve(): it binds each port without SO_REUSEADDR, so a port of the last
    # run still in TIME_WAIT fails (or, for ports it picks itself, is silently moved).
    for key, value in {**ports, "proxy_port": port}.items():
        config.set(key, value)
    config.set("common.gracefulStopTimeout", GRACEFUL_STOP_S)
    config.set("authorization_enabled", True)  # common.security.authorizationEnabled
    for component in COMPONENTS:
        config.set(f"{component}.ip", "127.0.0.1")
    config.write_config()  # configs/milvus.yaml
    etcd_yaml = data / "configs" / "embed-etcd.yaml"
    _etcd_config(etcd_yaml, ports["etcd_port"], etcd_peer)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "indexpair"
    executable = binaries(cache)
    env = dict(os.environ)
    env.update(
        {
            "DEPLOY_MODE": "STANDALONE",
            "METRICS_PORT": str(metrics),
            "MILVUS_RUN_DIR": str(data / "run"),
            "ETCD_CONFIG_PATH": str(etcd_yaml),
            "LD_LIBRARY_PATH": f"{executable.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}",
        }
    )
    return [str(executable), "run", "standalone"], env


def root_password(path: Path) -> str:
    """The root password kept in ``path``, generated (mode 0600) on first use."""
    return kept_secret(path, lambda: secrets.token_urlsafe(24), "the Milvus root password")


def _answers(uri: str, password: str) -> bool:
    """Whether the server accepts root:``password`` (False also while it is not up: Milvus
    2.3 refuses a wrong password as "server unavailable", so the two look the same)."""
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    try:
        client = MilvusClient(uri=uri, token=f"root:{password}", timeout=5, dedicated=True)
    except MilvusException:
        return False
    client.close()
    return True


def set_root_password(port: int, password: str, server: subprocess.Popen[bytes]) -> None:
    """Replace the default root password once the server answers (nothing to do after a
    restart: the password is kept in Milvus's own metadata)."""
    from pymilvus import MilvusClient

    uri = f"http://127.0.0.1:{port}"
    while server.poll() is None:
        if _answers(uri, password):
            logger.info("Milvus root password in place")
            return
        if _answers(uri, DEFAULT_ROOT_PASSWORD):
            token = f"root:{DEFAULT_ROOT_PASSWORD}"
            client = MilvusClient(uri=uri, token=token, timeout=10, dedicated=True)
            try:
                client.update_password("root", DEFAULT_ROOT_PASSWORD, password)
            finally:
                client.close()
            logger.info("Milvus root password changed from the default")
            return
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    """Serve Milvus until SIGTERM/SIGINT; exit with the server's exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="data, config and log folder")
    parser.add_argument("--port", type=int, required=True, help="port clients connect to")
    parser.add_argument(
        "--password-file", type=Path, help="root password (generated); default DATA/root-password"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data = args.data.expanduser().resolve()
    password = root_password(args.password_file or data / "root-password")
    command, env = prepare(data, args.port)
    server = subprocess.Popen(command, env=env, cwd=data)  # noqa: S603 - our own argv
    logger.info("Milvus standalone (pid %d) serving on port %d", server.pid, args.port)

    def stop(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            server.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(
        target=set_root_password, args=(args.port, password, server), daemon=True
    ).start()
    code = server.wait()
    logger.info("Milvus standalone exited with status %d", code)
    return code


if __name__ == "__main__":
    sys.exit(main())

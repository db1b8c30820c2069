"""A real two-node Ray cluster on this machine, for the tests of the Ray engine on more than one node.

:func:`two_node_cluster` runs ``ray start --head --block`` (node "head": 1 CPU, resource ``head``) and a second
``ray start --address ... --block`` (node "node2": 1 CPU, resource ``node2``), each in its own process
group and temporary folder, with ports of their own (so other Ray instances on the machine are left alone),
and stops them by killing those process groups (never ``ray stop``, which stops every Ray on the machine).
The fixture ``ray_two_nodes`` (tests/conftest.py) yields the :class:`RayCluster`.

The nodes' workers get the gradcam under test and this folder on their ``PYTHONPATH`` (test models such as
``cluster_model:tiny`` are importable there). ``RAY_AUTH_MODE=disabled``: no token in the home folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, Iterator, List

HERE = os.path.dirname(os.path.abspath(__file__))
START_TIMEOUT = 120.0  # seconds for both nodes to register (a loaded 2-core machine: ~10 s)


@dataclass
class RayCluster:
    """A running local cluster: ``address`` (``127.0.0.1:PORT`` for ``--address``), ``node_ids`` by name
    (``"head"``, ``"node2"``), ``temp_dir``, ``env`` (the environment its workers run with), and the
    ``ray start`` processes (``procs``)."""

    address: str
    temp_dir: str
    env: Dict[str, str]
    procs: List[subprocess.Popen] = field(default_factory=list)
    node_ids: Dict[str, str] = field(default_factory=dict)

    def raylet_pids(self) -> List[int]:
        """The raylets of this cluster (their command line names its temporary folder)."""
        return [
            p for p, cmd in _processes().items() if "raylet" in cmd[:1][0] and self.temp_dir in " ".join(cmd)
        ]

    def actor_pids(self, name: str = "_Explainer") -> List[int]:
        """Worker processes of this cluster that hold an actor of class ``name`` (Ray titles them
        ``ray::NAME``), found as children of this cluster's raylets."""
        raylets = set(self.raylet_pids())
        found = []
        for pid, cmd in _processes().items():
            if cmd and cmd[0].startswith(f"ray::{name}") and _parent(pid) in raylets:
                found.append(pid)
        return sorted(found)


def _processes() -> Dict[int, List[str]]:
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
            except OSError:
                continue
            if cmd:
                out[int(d)] = cmd
    return out


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def free_ports(n: int) -> List[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _node_ports(ports: List[int]) -> List[str]:
    keys = (
        "--node-manager-port",
        "--object-manager-port",
        "--runtime-env-agent-port",
        "--dashboard-agent-grpc-port",
        "--dashboard-agent-listen-port",
        "--metrics-export-port",
    )
    return [f"{k}={p}" for k, p in zip(keys, ports)]


def worker_env() -> Dict[str, str]:
    """The environment of the nodes (and so of their workers): the gradcam under test and tests/ importable."""
    import gradcam

    src = os.path.dirname(os.path.dirname(os.path.abspath(gradcam.__file__)))
    path = os.pathsep.join(p for p in (src, HERE, os.environ.get("PYTHONPATH", "")) if p)
    return dict(
        os.environ,
        PYTHONPATH=path,
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        # A worker process that imports torch on a loaded 2-core machine can take longer than Ray's 60 s.
        RAY_worker_register_timeout_seconds="600",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )


def _start(args: List[str], env: Dict[str, str], log: str) -> subprocess.Popen:
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    with open(log, "ab") as f:
        return subprocess.Popen(
            [ray, "start", "--block", *args],
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for_nodes(cluster: RayCluster, n: int) -> None:
    """Connect, wait until ``n`` nodes are alive, note their ids by resource name, disconnect."""
    import ray

    deadline = time.monotonic() + START_TIMEOUT
    while True:
        for p in cluster.procs:
            if p.poll() is not None:
                raise RuntimeError(f"ray start exited with {p.returncode}; see {cluster.temp_dir}/*.log")
        try:
            ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
            break
        except Exception:  # noqa: BLE001 - the head is not up yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        while True:
            alive = [nd for nd in ray.nodes() if nd["Alive"]]
            cluster.node_ids.clear()
            for nd in alive:
                for name in ("head", "node2"):
                    if name in nd["Resources"]:
                        cluster.node_ids[name] = nd["NodeID"]
            if len(alive) >= n:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(alive)} of {n} Ray nodes came up in {START_TIMEOUT:.0f} s")
            time.sleep(0.5)
    finally:
        ray.shutdown()


def stop(cluster: RayCluster) -> None:
    """Stop the cluster's nodes: SIGKILL to each ``ray start --block`` process group (raylets, GCS, agents,
    workers), then to any process left that names the cluster's temporary folder; the worker processes exit
    when their raylet is gone. Never touches another Ray on the machine (no ``ray stop``)."""
    for p in cluster.procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
    for p in cluster.procs:
        p.wait(timeout=30)
    for pid, cmd in _processes().items():
        if cluster.temp_dir in " ".join(cmd):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


COMMON = [
    "--num-cpus=1",
    "--object-store-memory=100000000",
    "--disable-usage-stats",
    "--include-log-monitor=false",
]


def start_node2(cluster: RayCluster) -> subprocess.Popen:
    """Start (or start again) the second node: ``ray start --address`` with 1 CPU and the resource ``node2``;
    its process is ``cluster.procs[1]``. Returns at once (see :func:`wait_for_nodes`)."""
    proc = _start(
        [
            f"--address={cluster.address}",
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={cluster.temp_dir}",
            '--resources={"node2": 1}',
            *COMMON,
            *_node_ports(free_ports(6)),
        ],
        cluster.env,
        os.path.join(cluster.temp_dir, "node2.log"),
    )
    if len(cluster.procs) > 1:
        cluster.procs[1] = proc
    else:
        cluster.procs.append(proc)
    return proc


def kill_node2(cluster: RayCluster) -> None:
    """Kill the whole second node at once (SIGKILL to its process group: raylet, agents, workers)."""
    os.killpg(cluster.procs[1].pid, signal.SIGKILL)
    cluster.procs[1].wait(timeout=30)


@contextlib.contextmanager
def two_node_cluster() -> Iterator[RayCluster]:
    """Start the two-node cluster (see the module doc); stop it on exit."""
    # A short root: Ray's unix sockets live under it (at most ~100 characters of path).
    temp = tempfile.mkdtemp(prefix="gcray-", dir="/tmp")
    gcs, client, *ports = free_ports(8)
    env = worker_env()
    cluster = RayCluster(f"127.0.0.1:{gcs}", temp, env)
    try:
        cluster.procs.append(
            _start(
                [
                    "--head",
                    f"--port={gcs}",
                    f"--ray-client-server-port={client}",
                    "--node-ip-address=127.0.0.1",
                    "--include-dashboard=false",
                    f"--temp-dir={temp}",
                    '--resources={"head": 1}',
                    *COMMON,
                    *_node_ports(ports[:6]),
                ],
                env,
                os.path.join(temp, "head.log"),
            )
        )
        start_node2(cluster)
        wait_for_nodes(cluster, 2)
        yield cluster
    finally:
        stop(cluster)
        shutil.rmtree(temp, ignore_errors=True)

"""Scale-out benchmark: a PostgreSQL node added from a pgBackRest backup or from the leader, by database size.

Deploys `Pulumi.dev.yaml` for real (the local engine), then per size: grows the database (pgbench tables)
to that size and takes a full backup; per source (`postgres.new_replicas_from`: backup, leader) adds pg-4
under a writer and removes it again. It prints per size and source: the deployment's wall time, the time
from its start until pg-4 streams, the longest write pause, the bytes the leader sent while pg-4 joined
(its WAL senders' and base backup's share of the leader's network), and the commits lost.
Run `python -m bench.scale_out -h`.
"""

from __future__ import annotations

import argparse
import copy
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench import dev_stack
from clientside.cluster import DockerHosts, Patroni, Writer, endpoints, wait_for
from local_engine import Stack
from render.paths import PG_BIN, PG_SOCKET_DIR

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = "pgha-dev"
CONFIG = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
NEW = {"name": "pg-4", "address": "10.89.0.24"}
# pgbench's tables take about 15 MiB per unit of scale.
MIB_PER_SCALE = 15


@dataclass
class Result:
    size_mib: int
    source: str
    seconds: float
    streaming_s: float
    outage_s: float
    leader_sent_mib: float
    lost: int


def psql(hosts: DockerHosts, node: str, sql: str, db: str = "app") -> str:
    return hosts.exec(node, f"{PG_BIN}/psql", "-h", PG_SOCKET_DIR, "-d", db, "-XtAc", sql, user="postgres").strip()


def grow(hosts: DockerHosts, leader: str, size_mib: int) -> float:
    """Make the database about `size_mib` MiB (pgbench -i; a larger size replaces the tables) and take a
    full backup; the database's size in MiB."""
    scale = max(1, size_mib // MIB_PER_SCALE)
    hosts.exec(leader, f"{PG_BIN}/pgbench", "-h", PG_SOCKET_DIR, "-i", "-q", "-s", str(scale), "app",
               user="postgres")
    hosts.exec(leader, "pgbackrest", f"--stanza={CLUSTER}", "--type=full", "backup", user="postgres")
    return int(psql(hosts, leader, "SELECT pg_database_size('app')")) / 2**20


def sent_bytes(hosts: DockerHosts, node: str) -> int:
    """Bytes the node's eth0 has sent so far."""
    return int(hosts.exec(node, "cat", "/sys/class/net/eth0/statistics/tx_bytes").strip())


def scale_out(stack: Stack, size_mib: int, source: str) -> Result:
    import program

    patroni = Patroni.of(stack.outputs)
    hosts = DockerHosts(CLUSTER)
    wait_for("a healthy cluster", lambda: patroni.healthy(3), 180)
    leader = patroni.leader() or ""
    pg = copy.deepcopy(CONFIG["pgha:postgres"])
    pg["new_replicas_from"] = source
    writer = Writer(endpoints(stack.outputs)[0])
    writer.start()
    writer.wait_acks(50)
    # Deploying the source alone first: a reload on every node, outside the measurement.
    stack.up(program.main, {"pgha:postgres": pg})
    streaming: list[float] = []
    halt = threading.Event()

    def watch() -> None:
        while not halt.is_set():
            try:
                if patroni.members().get(NEW["name"], {}).get("state") == "streaming":
                    streaming.append(time.monotonic())
                    return
            except (OSError, ValueError):
                pass
            halt.wait(0.5)

    sent_before = sent_bytes(hosts, leader)
    since = time.monotonic()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    update = stack.up(program.main, {"pgha:postgres": {**pg, "nodes": [*pg["nodes"], NEW]}})
    watcher.join(timeout=600)
    halt.set()
    sent = sent_bytes(hosts, leader) - sent_before
    writer.wait_acks(50, timeout_s=120)
    outage = writer.log.outage_around(since)
    stack.up(program.main, {"pgha:postgres": pg})  # pg-4 leaves again
    writer.stop()
    return Result(size_mib, source, update.seconds, (streaming[0] - since) if streaming else float("nan"), outage,
                  sent / 2**20, len(writer.lost()))


def table(results: list[Result]) -> str:
    lines = [f"{'database':>9} {'from':<7} {'deploy s':>8} {'streaming s':>11} {'outage s':>8} "
             f"{'leader sent MiB':>15} {'lost':>4}"]
    lines += [f"{r.size_mib:>5} MiB {r.source:<7} {r.seconds:>8.1f} {r.streaming_s:>11.1f} {r.outage_s:>8.2f} "
              f"{r.leader_sent_mib:>15.0f} {r.lost:>4}" for r in results]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,5120", help="database sizes in MiB, comma-separated")
    args = parser.parse_args(argv)
    results: list[Result] = []
    with dev_stack(CLUSTER) as stack:
        hosts, patroni = DockerHosts(CLUSTER), Patroni.of(stack.outputs)
        for size in (int(s) for s in args.sizes.split(",")):
            wait_for("a healthy cluster", lambda: patroni.healthy(3), 180)
            actual = grow(hosts, patroni.leader() or "", size)
            for source in ("backup", "leader"):
                results.append(scale_out(stack, round(actual), source))
                r = results[-1]
                print(f"{r.size_mib} MiB from the {source}: streaming after {r.streaming_s:.1f}s, leader sent "
                      f"{r.leader_sent_mib:.0f} MiB, outage {r.outage_s:.2f}s", file=sys.stderr, flush=True)
    print(table(results))
    return 1 if any(r.lost for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

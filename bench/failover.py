"""Failover benchmark: repeated hard kills, graceful stops and switchovers of the primary under a writer.

Deploys the dev stack for real (the local engine), measures the write outage each event causes as a
client of the read-write endpoint sees it, and counts acknowledged commits lost. A negative control
(asynchronous replication, replicas frozen while the primary acknowledges writes, then the primary
killed) shows that the loss detector does see loss. Prints tables; run `python -m bench.failover -h`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from clientside.cluster import DockerHosts, Patroni, Writer, endpoints, wait_for
from local_engine import Stack
from local_engine.docker_engine import remove_labelled

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = "pgha-dev"
NODES = ["pg-1", "pg-2", "pg-3"]


@dataclass
class Event:
    kind: str
    victim: str
    new_leader: str
    outage_s: float
    acked: int
    lost: int


def run_event(kind: str, stack: Stack, fault: Callable[[DockerHosts, Patroni, str], None],
              sync: bool = True) -> Event:
    hosts, patroni = DockerHosts(CLUSTER), Patroni.of(stack.outputs)
    wait_for("a healthy cluster", lambda: patroni.healthy(3, sync), 180)
    writer = Writer(endpoints(stack.outputs)[0])
    writer.start()
    writer.wait_acks(50)
    victim = patroni.leader() or ""
    fault_at = time.monotonic()
    fault(hosts, patroni, victim)
    def new_leader() -> str | None:
        lead = patroni.leader()
        return lead if lead and lead != victim else None

    new = wait_for("a new leader", new_leader, 120)
    writer.wait_acks(50, timeout_s=120)
    log = writer.stop()
    outage = log.outage_around(fault_at)
    wait_for("the read-write endpoint", lambda: writer.endpoint.query("SELECT 1"), 60)
    lost = len(writer.lost())
    container = hosts.container(victim)
    container.reload()
    if container.status != "running":
        hosts.start(victim)
    wait_for(f"{victim} to rejoin", lambda: patroni.healthy(3, sync), 180)
    return Event(kind, victim, new, outage, len(log.acked), lost)


def hard_kill(hosts: DockerHosts, patroni: Patroni, victim: str) -> None:
    hosts.kill(victim)


def graceful_stop(hosts: DockerHosts, patroni: Patroni, victim: str) -> None:
    hosts.stop(victim)


def switchover(hosts: DockerHosts, patroni: Patroni, victim: str) -> None:
    candidate = patroni.sync_standbys()[0]
    hosts.exec(victim, "patronictl", "-c", "/etc/patroni/patroni.yml", "switchover", "--leader", victim,
               "--candidate", candidate, "--force", user="postgres")


def negative_control(stack: Stack) -> Event:
    """Async replication; cut the replicas off the network so acknowledged commits exist only on the
    primary; kill it; bring the replicas back. (Freezing the replicas, or ending their WAL receivers,
    is not enough: their kernels buffer WAL, or a new receiver reconnects, and nothing is lost.)"""
    addresses = {n: urlparse(u).hostname or "" for n, u in zip(NODES, stack.outputs["patroni_rest_urls"],
                                                                 strict=True)}

    def fault(hosts: DockerHosts, patroni: Patroni, victim: str) -> None:
        replicas = [n for n in NODES if n != victim]
        for node in replicas:
            hosts.disconnect(node)
        time.sleep(1.0)  # the writer keeps committing on the primary alone: the window being measured
        hosts.kill(victim)
        for node in replicas:
            hosts.reconnect(node, addresses[node])

    return run_event("negative control (async)", stack, fault, sync=False)


def table(events: list[Event]) -> str:
    lines = [f"{'event':<26} {'victim':<6} {'new leader':<10} {'outage s':>9} {'acked':>7} {'lost':>5}"]
    lines += [f"{e.kind:<26} {e.victim:<6} {e.new_leader:<10} {e.outage_s:>9.2f} {e.acked:>7} {e.lost:>5}"
              for e in events]
    return "\n".join(lines)


def summary(events: list[Event]) -> str:
    lines = [f"{'event':<26} {'n':>3} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'lost':>5}"]
    for kind in dict.fromkeys(e.kind for e in events):
        outages = sorted(e.outage_s for e in events if e.kind == kind)
        p95 = outages[min(len(outages) - 1, round(0.95 * (len(outages) - 1)))]
        lost = sum(e.lost for e in events if e.kind == kind)
        lines.append(f"{kind:<26} {len(outages):>3} {statistics.median(outages):>7.2f} {p95:>7.2f} "
                     f"{outages[-1]:>7.2f} {lost:>5}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10, help="events of each kind (default 10)")
    parser.add_argument("--profile", default="tuned", choices=["tuned", "conservative"])
    parser.add_argument("--kinds", default="hard-kill,graceful-stop,switchover",
                        help="comma-separated subset of hard-kill, graceful-stop, switchover")
    parser.add_argument("--skip-negative-control", action="store_true")
    args = parser.parse_args(argv)
    import program

    remove_labelled(f"pgha.cluster={CLUSTER}")
    events: list[Event] = []
    failures: list[str] = []
    stack = Stack("dev", ROOT, project="pgha", config={"pgha:timing_profile": args.profile})
    stack.up(program.main)
    try:
        chosen = set(args.kinds.split(","))
        for kind, fault in (("hard kill", hard_kill), ("graceful stop", graceful_stop),
                            ("switchover", switchover)):
            if kind.replace(" ", "-") not in chosen:
                continue
            for i in range(args.count):
                try:
                    events.append(run_event(kind, stack, fault))
                except AssertionError as error:  # a cluster that did not recover is a result, not a crash
                    print(f"{kind} {i + 1}/{args.count}: did not recover: {error}", file=sys.stderr, flush=True)
                    failures.append(f"{kind} {i + 1}: {error}")
                    continue
                print(f"{kind} {i + 1}/{args.count}: {events[-1].outage_s:.2f}s, lost {events[-1].lost}",
                      file=sys.stderr, flush=True)
    finally:
        stack.destroy()
    control: list[Event] = []
    if not args.skip_negative_control:
        patroni_async = {"synchronous_mode": "off", "maximum_lag_on_failover": 1073741824}
        stack = Stack("dev", ROOT, project="pgha",
                      config={"pgha:patroni": patroni_async, "pgha:timing_profile": args.profile})
        stack.up(program.main)
        try:
            control.append(negative_control(stack))
        except AssertionError as error:
            failures.append(f"negative control: {error}")
        finally:
            stack.destroy()
    print(f"profile: {args.profile}\n")
    print(table(events + control))
    print()
    print(summary(events + control))
    for failure in failures:
        print(f"NOT RECOVERED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

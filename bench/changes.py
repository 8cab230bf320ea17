"""Change benchmark: each kind of later deployment applied to the running dev stack under a writer.

Deploys `Pulumi.dev.yaml` for real (the local engine), then deploys it again once per change kind, one after
another on the same cluster, each with a writer committing through the virtual IP, and prints per kind: the
deployment's wall time, the longest write pause, the processes restarted (containers, processes under the
runner, PostgreSQL servers), the acknowledged commits lost, and what the change plan said beforehand.
Run `python -m bench.changes -h`.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench import dev_stack
from clientside.cluster import DockerHosts, Endpoint, Patroni, Writer, container_processes, endpoints, wait_for
from local_engine import Stack
from operations.change_plan import PLAN_OUTPUT, verbs

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = "pgha-dev"
PG = ["pg-1", "pg-2", "pg-3"]
HOSTS = [*PG, "etcd-1", "etcd-2", "etcd-3", "haproxy-1", "haproxy-2"]
CONFIG = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
ROTATE = {"pgha:rotate": dict.fromkeys(("superuser", "replication", "rewind", "app", "readonly", "restapi",
                                        "keepalived", "stats"), 1)}


def section(key: str, **changes: Any) -> dict[str, Any]:
    value = copy.deepcopy(CONFIG.get(f"pgha:{key}", {}))
    for name, change in changes.items():
        value[name] = {**value.get(name, {}), **change} if isinstance(change, dict) else change
    return {f"pgha:{key}": value}


PARAMS = CONFIG["pgha:postgres"]["parameters"]
IMAGE = {"pgha:docker": {**CONFIG["pgha:docker"], "image_revision": 1}}
# (kind, the stack config overrides of that deployment over the kept ones, whether later deployments keep
# them); a deployment without an override goes back to the stack file. A CA rotation, a credential rotation
# and a new image stay (going back would rotate or upgrade again).
KINDS: list[tuple[str, dict[str, Any], bool]] = [
    ("no change", {}, False),
    ("reload parameter (work_mem)", section("postgres", parameters={**PARAMS, "work_mem": "6MB"}), False),
    ("Patroni setting (max lag)", {**section("postgres", parameters={**PARAMS, "work_mem": "6MB"}),
                                   **section("patroni", maximum_lag_on_failover=2097152)}, False),
    ("restart parameter (shared_buffers)", section("postgres", parameters={**PARAMS, "shared_buffers": "160MB"}),
     False),
    ("back to the stack file (restart)", {}, False),
    ("HAProxy check timing", section("haproxy", check={"inter_ms": 1500}), False),
    ("HAProxy back", {}, False),
    ("server certificates renewed", {"pgha:tls": {"server_validity_days": 729}}, False),
    ("CA rotation, overlap", {"pgha:tls": {"ca_generation": 1, "trust_previous_ca": True}}, False),
    ("CA rotation, previous CA dropped", {"pgha:tls": {"ca_generation": 1}}, True),
    ("rotation of 8 credentials", ROTATE, True),
    ("new image (rolling upgrade)", IMAGE, True),
]


@dataclass
class Result:
    kind: str
    seconds: float
    outage_s: float
    restarted: list[str]
    acked: int
    lost: int
    said: str


def apply(stack: Stack, kind: str, overrides: dict[str, Any]) -> Result:
    import program

    hosts, patroni = DockerHosts(CLUSTER), Patroni.of(stack.outputs)
    wait_for("a healthy cluster", lambda: patroni.healthy(3), 180)
    writer = Writer(endpoints(stack.outputs)[0])
    writer.start()
    writer.wait_acks(50)
    before = container_processes(hosts, HOSTS, PG)
    since = time.monotonic()
    update = stack.up(program.main, overrides)
    # After a rotation the writer's open session goes on; anything new needs the new password.
    writer.endpoint = Endpoint.from_dsn(update.outputs["app_dsn"], writer.endpoint.sslrootcert)
    writer.wait_acks(50, timeout_s=120)
    log = writer.stop()
    after = container_processes(hosts, HOSTS, PG)
    restarted = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    said: dict[str, set[str]] = {}
    for node, actions in update.outputs[PLAN_OUTPUT].items():
        for verb in verbs(actions) - {"nothing"}:
            said.setdefault(verb, set()).add(node)
    summary = "; ".join(f"{verb} {len(nodes)}" for verb, nodes in sorted(said.items())) or "nothing"
    return Result(kind, update.seconds, log.outage_around(since), restarted, len(log.acked), len(writer.lost()),
                  summary)


def table(results: list[Result]) -> str:
    lines = [f"{'change':<36} {'deploy s':>8} {'outage s':>8} {'restarted':>9} {'acked':>6} {'lost':>4}  plan said"]
    for r in results:
        lines.append(f"{r.kind:<36} {r.seconds:>8.1f} {r.outage_s:>8.2f} {len(r.restarted):>9} {r.acked:>6} "
                     f"{r.lost:>4}  {r.said}")
    lines.append("")
    lines += [f"{r.kind}: restarted {', '.join(r.restarted) or 'nothing'}" for r in results]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    results: list[Result] = []
    with dev_stack(CLUSTER) as stack:
        kept: dict[str, Any] = {}
        for kind, overrides, keep in KINDS:
            results.append(apply(stack, kind, {**kept, **overrides}))
            if keep:
                kept.update(overrides)
            print(f"{kind}: {results[-1].outage_s:.2f}s outage, {len(results[-1].restarted)} restarted, "
                  f"lost {results[-1].lost}", file=sys.stderr, flush=True)
    print(table(results))
    return 1 if any(r.lost for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

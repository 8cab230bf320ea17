"""Programs to evaluate instead of program.main: the real components composed to break one rule (dev or prod)."""

# e.g. `python -m policy.offline prod --program tests.policy.bodies:two_etcd`

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pulumi
import yaml

from components.cluster import PostgresCluster, PostgresClusterArgs
from config.models import ClusterConfig, Host
from program import load_config, ssh_private_key
from targets import Placement, Process, ServiceSpec, Storage, Target
from targets.select import make_target
from tests.support.mock_runtime import example_host_key

LITERAL_PASSWORD = "hand-written-superuser-pw"
TRUST_RULE = "host all all 0.0.0.0/0 trust"


class EditingTarget(Target):
    """A real target whose placed files of one name pass through `edit` first (a test double)."""

    def __init__(self, inner: Target, basename: str, edit: Callable[[str], str]) -> None:
        super().__init__(inner.cfg)
        self.inner, self.basename, self.edit = inner, basename, edit
        self.kind, self.control = inner.kind, inner.control

    def prepare(self, parent: pulumi.Resource) -> None:
        self.inner.prepare(parent)

    def storage(self, name: str, path: str, owner: str, parent: pulumi.Resource) -> Storage:
        return self.inner.storage(name, path, owner, parent)

    def _place(self, name: str, spec: ServiceSpec, parent: pulumi.Resource) -> Placement:
        files = tuple(
            dataclasses.replace(f, content=pulumi.Output.from_input(f.content).apply(lambda c: self.edit(str(c))))
            if f.path.rsplit("/", 1)[-1] == self.basename else f
            for f in spec.files
        )
        return self.inner._place(name, dataclasses.replace(spec, files=files), parent)

    def run_step(self, name: str, host: Host, script: str, depends_on: list[pulumi.Resource],
                 parent: pulumi.Resource, triggers: list[str] | None = None) -> pulumi.Resource:
        return self.inner.run_step(name, host, script, depends_on, parent, triggers)

    def retire(self, name: str, host: Host, script: str, processes: tuple[Process, ...],
               depends_on: list[pulumi.Resource], parent: pulumi.Resource) -> pulumi.Resource:
        return self.inner.retire(name, host, script, processes, depends_on, parent)

    def client_addresses(self) -> list[str]:
        return self.inner.client_addresses()

    def primary_urls(self, nodes: list[Host]) -> list[str]:
        return self.inner.primary_urls(nodes)


def compose(cfg: ClusterConfig, wrap: Callable[[Target], Target] | None = None) -> PostgresCluster:
    """Declare the cluster for `cfg` as program.main does, even when `cfg` breaks what validation enforces
    (hosts added here get example host keys)."""
    if cfg.ssh is not None:
        keys = {h.address: example_host_key(str(h.address)) for h in cfg.all_hosts()}
        cfg = cfg.model_copy(update={"ssh": cfg.ssh.model_copy(update={"host_keys": keys})})
    target = make_target(cfg, ssh_private_key(cfg))
    return PostgresCluster(cfg.name, PostgresClusterArgs(cfg, wrap(target) if wrap else target))


def resized(hosts: list[Host], count: int) -> list[Host]:
    """`count` hosts named and numbered like the first one (etcd-1, etcd-2, ...; consecutive addresses)."""
    prefix = hosts[0].name.rsplit("-", 1)[0]
    return [Host(name=f"{prefix}-{i + 1}", address=hosts[0].address + i) for i in range(count)]


def _with(cfg: ClusterConfig, section: str, field: str, count: int) -> ClusterConfig:
    part = getattr(cfg, section)
    return cfg.model_copy(update={section: part.model_copy(update={field: resized(getattr(part, field), count)})})


def two_etcd() -> None:
    compose(_with(load_config(), "etcd", "members", 2))


def four_etcd() -> None:
    compose(_with(load_config(), "etcd", "members", 4))


def two_postgres() -> None:
    compose(_with(load_config(), "postgres", "nodes", 2))


def one_haproxy() -> None:
    compose(_with(load_config(), "haproxy", "nodes", 1))


def _edit_patroni(change: Callable[[dict[str, Any]], None]) -> Callable[[str], str]:
    def edit(text: str) -> str:
        data = yaml.safe_load(text)
        change(data)
        return yaml.safe_dump(data, sort_keys=False)

    return edit


def literal_superuser() -> None:
    """Every patroni.yml carries a hand-written superuser password instead of the generated one."""

    def change(data: dict[str, Any]) -> None:
        data["postgresql"]["authentication"]["superuser"]["password"] = LITERAL_PASSWORD

    compose(load_config(), lambda t: EditingTarget(t, "patroni.yml", _edit_patroni(change)))


def trust_rule() -> None:
    """Every patroni.yml lets any address in without a password."""

    def change(data: dict[str, Any]) -> None:
        data["bootstrap"]["dcs"]["postgresql"]["pg_hba"].append(TRUST_RULE)

    compose(load_config(), lambda t: EditingTarget(t, "patroni.yml", _edit_patroni(change)))

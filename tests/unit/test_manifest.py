"""The service manifests: one per placed service, carrying exactly the files the target installs and the
listeners the rendered configuration opens."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from catalog.manifest import PROPERTIES, SERVICE_MANIFEST
from tests.support.mock_runtime import SSH_KEY, Graph, converge_files, is_secret, reveal, run_program

CONTAINER = "docker:index/container:Container"
SERVICE = "command:remote:Command"


@pytest.fixture(scope="module", params=["dev", "prod"])
def graph(request: pytest.FixtureRequest) -> Graph:
    return run_program(request.param, secrets_config={"sshPrivateKey": SSH_KEY} if request.param == "prod" else None)


def manifests(graph: Graph) -> dict[str, dict[str, Any]]:
    """Placement name -> manifest properties; the file list keeps its secret wrappers (see below)."""
    return {m.name.removesuffix("-manifest"): m.inputs for m in graph.of_type(SERVICE_MANIFEST)}


def files_of(props: dict[str, Any]) -> list[dict[str, Any]]:
    # One secret file content makes the SDK send the whole list as a secret.
    return reveal(props["files"])


def installed(graph: Graph, placement: str) -> dict[str, str]:
    """Path -> content the target really installs: the files the converge script writes, and on docker the
    container's uploads (what it boots with)."""
    found = {}
    if graph.stack == "dev":
        found = {u["file"]: u["content"] for u in reveal(graph.named(placement).inputs["uploads"])}
    script = reveal(graph.named(f"{placement}-service").inputs["stdin"])
    written = converge_files(script)
    if graph.stack == "prod":  # the host firewall's step writes its ruleset and unit (targets/firewall.py)
        written.update(converge_files(reveal(graph.named(f"{placement}-firewall").inputs["stdin"])))
    assert not set(found) & set(written), "a file is either uploaded or written, never both"
    return {**found, **written}


def test_every_placement_declares_one_manifest_with_every_property(graph: Graph) -> None:
    found = manifests(graph)
    assert len(found) == 8, sorted(found)
    assert {m["role"] for m in found.values()} == {"etcd", "postgres", "haproxy"}
    for props in found.values():
        assert set(props) == set(PROPERTIES) and props["cluster"] == f"pgha-{graph.stack}"
        assert props["target"] == ("docker" if graph.stack == "dev" else "ssh")


def test_the_manifest_carries_exactly_the_files_the_target_installs(graph: Graph) -> None:
    for placement, props in manifests(graph).items():
        declared = {f["path"]: f["content"] for f in files_of(props)}
        assert declared == installed(graph, placement), placement
        assert is_secret(props["files"]) == any(f["mode"] == "0600" for f in files_of(props)), placement


def test_declared_listeners_are_what_the_rendered_files_open(graph: Graph) -> None:
    for placement, props in manifests(graph).items():
        listeners = {(s["address"], s["port"]) for s in props["listeners"]}
        files = {f["kind"]: f["content"] for f in files_of(props) if f["kind"]}
        opened: set[tuple[str, int]] = set()
        if "etcd" in files:
            data = yaml.safe_load(files["etcd"])
            for key in ("listen-client-urls", "listen-peer-urls"):
                opened |= {(h, int(p)) for h, p in re.findall(r"//([\d.]+):(\d+)", data[key])}
        if "patroni" in files:
            data = yaml.safe_load(files["patroni"])
            opened |= {tuple(data[s]["listen"].rsplit(":", 1)) for s in ("restapi", "postgresql")}  # type: ignore[misc]
            opened = {(h, int(p)) for h, p in opened}
        if "haproxy" in files:
            binds = re.findall(r"^\s+bind (\S+):(\d+)$", files["haproxy"], re.M)
            opened |= {("0.0.0.0" if h == "*" else h, int(p)) for h, p in binds}
        assert opened == listeners, placement


def test_the_docker_target_declares_what_it_publishes(graph: Graph) -> None:
    for placement, props in manifests(graph).items():
        if graph.stack == "prod":
            assert props["published"] == []
            continue
        ports = graph.named(placement).inputs["ports"]
        assert {(p["address"], p["port"]) for p in props["published"]} == {(p["ip"], p["external"]) for p in ports}


def test_the_program_registers_the_manifest_as_its_outputs() -> None:
    import pulumi

    from targets import manifest

    registered: list[dict[str, Any]] = []
    original = pulumi.ComponentResource.register_outputs

    def spy(self: pulumi.ComponentResource, outputs: Any) -> None:
        if isinstance(self, manifest.ServiceManifest):
            registered.append(outputs)
        original(self, outputs)

    pulumi.ComponentResource.register_outputs = spy  # type: ignore[method-assign]
    try:
        run_program("dev")
    finally:
        pulumi.ComponentResource.register_outputs = original  # type: ignore[method-assign]
    assert len(registered) == 8 and all(tuple(r) == PROPERTIES for r in registered)
    contents = [f["content"] for r in registered for f in r["files"] if f["mode"] == "0600"]
    assert contents and all(isinstance(c, pulumi.Output) for c in contents), "secret files stay secret Outputs"

"""The pack as the Pulumi policy host runs it: imported from its own directory, served over gRPC by __main__.py."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

import policy.pack
from policy.engine import engine_urn, state
from policy.evaluate import Graph, run_program
from tests.policy import bodies

PACK_DIR = Path(policy.pack.__file__).resolve().parent
# The pack shares catalog/ (standard library only) with the program, and nothing else of it.
PROGRAM_MODULES = {"program", "config", "render", "components", "targets", "operations", "local_engine", "policy",
                   "tests"}
EXPECTED = [(p.name, (p.enforcement_level or policy.pack.MANDATORY).value) for p in policy.pack.POLICIES]


def test_the_pack_imports_from_the_pack_directory_and_the_catalog_alone(tmp_path: Path) -> None:
    script = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(PACK_DIR)!r}, {str(PACK_DIR.parent)!r}]  # as policy/__main__.py sets it\n"
        "import pack\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(sys.argv[1])))\n"
        "print(json.dumps({'policies': [(p.name, p.enforcement_level.value) for p in pack.POLICIES],\n"
        "                  'program_modules': loaded}))\n"
    )
    result = subprocess.run([sys.executable, "-I", "-c", script, json.dumps(sorted(PROGRAM_MODULES))], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=True)
    found = json.loads(result.stdout)
    assert [tuple(p) for p in found["policies"]] == EXPECTED
    assert found["program_modules"] == []  # no pgha program module beside catalog/


def test_the_pack_imports_as_a_package_with_the_same_policies() -> None:
    assert [(p.name, p.enforcement_level.value if p.enforcement_level else "") for p in policy.pack.POLICIES] \
        == EXPECTED
    assert len({p.name for p in policy.pack.POLICIES}) == len(EXPECTED) == 24


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """The pack started the way the policy host starts it (`python <pack dir>`), and a client for it."""
    env = {**os.environ, "PULUMI_PROJECT": "pgha", "PULUMI_STACK": "dev", "PULUMI_DRY_RUN": "true"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen([sys.executable, str(PACK_DIR)], cwd=tmp_path_factory.mktemp("pwd"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline().decode().strip() if ready else ""
        assert line.isdigit(), f"pack did not print its port: {line!r} {proc.stderr.read1().decode()}"  # type: ignore
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        proc.kill()
        proc.wait(timeout=30)


def _resources(graph: Graph) -> list[analyzer_pb2.AnalyzerResource]:
    found = []
    for reg in graph.resources:
        props = struct_pb2.Struct()
        props.update(state(reg))
        parent = engine_urn(reg.parent) if reg.parent else ""
        found.append(analyzer_pb2.AnalyzerResource(
            type=reg.type, properties=props, urn=engine_urn(reg.urn), name=reg.name,
            options=analyzer_pb2.AnalyzerResourceOptions(parent=parent), parent=parent,
            dependencies=[engine_urn(d) for d in reg.dependencies]))
    return found


def test_the_served_pack_lists_its_policies(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "pgha-policy"
    levels = {analyzer_pb2.ADVISORY: "advisory", analyzer_pb2.MANDATORY: "mandatory"}
    assert [(p.name, levels[p.enforcementLevel]) for p in info.policies] == EXPECTED
    etcd = next(p for p in info.policies if p.name == "etcd-min-members")
    assert etcd.configSchema.properties["minMembers"]["default"] == 3


def test_the_served_pack_passes_the_dev_stack(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    response = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=_resources(run_program("dev"))))
    assert [d.message for d in response.diagnostics] == []


def test_the_served_pack_reports_two_etcd_members(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    graph = run_program("dev", body=bodies.two_etcd)
    response = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=_resources(graph)))
    assert [(d.policyName, d.enforcementLevel, d.urn) for d in response.diagnostics] == [
        ("etcd-min-members", analyzer_pb2.MANDATORY, "urn:pulumi:dev::pgha::pgha:index:PostgresCluster::pgha-dev")]
    assert response.diagnostics[0].message.splitlines()[1].startswith("found 2 etcd members (etcd-1, etcd-2); ")


def test_the_served_pack_checks_one_resource(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    props = struct_pb2.Struct()
    props.update({"image": "x", "envs": ["PGPASSWORD=plaintext"]})
    response = analyzer.Analyze(analyzer_pb2.AnalyzeRequest(
        type="docker:index/container:Container", properties=props, name="c",
        urn="urn:pulumi:dev::pgha::docker:index/container:Container::c"))
    assert [d.policyName for d in response.diagnostics] == ["container-env-no-credentials"]
    assert "plaintext" not in response.diagnostics[0].message

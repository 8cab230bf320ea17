"""`python -m policy.offline`: exit status and output for passing, failing and broken stacks."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from policy import evaluate, offline
from policy.evaluate import ROOT
from tests.policy import bodies

HEADER = "    [mandatory]  pgha-policy v0.1.0  etcd-min-members (pgha-dev: pgha:index:PostgresCluster)\n"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "policy.offline", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


def run_here(*args: str, body: object = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = offline.main(list(args), body=body, out=out, err=err)  # type: ignore[arg-type]
    return code, out.getvalue(), err.getvalue()


def declared(stack: str) -> int:
    """How many resources the program declares for a stack (what the check says it looked at)."""
    return len(evaluate.run_program(stack).resources)


def test_dev_stack_passes_with_exit_0() -> None:
    result = run("dev")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"Policy Packs run:\n    pgha-policy  v0.1.0  (24 policies over {declared('dev')} "
                             "resources of stack dev)\nno policy violations\n")


def test_prod_stack_passes_with_a_noted_placeholder_key() -> None:
    result = run("prod")
    assert result.returncode == 0, result.stderr
    assert "no policy violations" in result.stdout
    assert "note: pgha:sshPrivateKey not given: using a throwaway placeholder key" in result.stderr
    code, _, err = run_here("prod", "--secret", "pgha:sshPrivateKey=given-key")
    assert code == 0 and err == ""


def test_encrypted_values_are_never_read_as_plaintext(tmp_path: Path) -> None:
    """What `pulumi config set --secret` leaves in a stack file cannot be decrypted offline: the SSH key
    gets the placeholder (never the ciphertext as if it were a key); any other encrypted value must be
    given with --secret."""
    doc = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    doc["config"]["pgha:sshPrivateKey"] = {"secure": "v1:Y2lwaGVydGV4dA=="}
    stack = tmp_path / "Pulumi.prod.yaml"
    stack.write_text(yaml.safe_dump(doc))
    code, out, err = run_here(str(stack))
    assert code == 0 and "no policy violations" in out
    assert err.startswith("note: pgha:sshPrivateKey is encrypted in the stack file: using a throwaway placeholder")

    doc["config"]["pgha:other"] = {"secure": "v1:b3RoZXI="}
    stack.write_text(yaml.safe_dump(doc))
    code, out, err = run_here(str(stack))
    assert (code, out) == (1, "")
    assert "secure config pgha:other cannot be decrypted without the stack's secrets provider" in err


def test_invalid_stack_config_is_reported_with_exit_1(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    doc["config"]["pgha:postgres"]["nodes"] = doc["config"]["pgha:postgres"]["nodes"][:2]
    stack = tmp_path / "Pulumi.small.yaml"
    stack.write_text(yaml.safe_dump(doc))
    result = run(str(stack))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: invalid stack configuration:\n  pgha:postgres.nodes: 2 given; at least 3 PostgreSQL nodes are required "
        "(a primary, a synchronous standby and one more standby)\nno policy ran: the program stopped before declaring "
        "any resource\n")


def test_policy_violation_from_a_composed_program_fails_with_exit_1() -> None:
    result = run("dev", "--program", "tests.policy.bodies:two_etcd")
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith(
        "Policy Violations:\n" + HEADER
        + "    etcd keeps a quorum through a member loss only with at least 3 members and an odd number of them.\n"
        "    found 2 etcd members (etcd-1, etcd-2); at least 3 and an odd number are required (")
    assert result.stdout.endswith("1 mandatory and 0 advisory policy violation(s)\n")


def test_advisory_violations_are_printed_with_exit_0(tmp_path: Path) -> None:
    config = tmp_path / "policy-config.json"
    config.write_text(json.dumps({"etcd-min-members": "advisory"}))
    code, out, _ = run_here("dev", "--policy-pack-config", str(config), body=bodies.two_etcd)
    assert code == 0
    assert HEADER.replace("[mandatory]", "[advisory]") in out
    assert out.endswith("0 mandatory and 1 advisory policy violation(s)\n")


def test_policy_config_can_disable_or_tighten_a_policy(tmp_path: Path) -> None:
    config = tmp_path / "policy-config.json"
    config.write_text(json.dumps({"etcd-min-members": "disabled"}))
    assert run_here("dev", "--policy-pack-config", str(config), body=bodies.two_etcd)[0] == 0
    config.write_text(json.dumps({"all": "advisory", "postgres-min-nodes": {"enforcementLevel": "mandatory",
                                                                          "minNodes": 5}}))
    code, out, _ = run_here("dev", "--policy-pack-config", str(config))
    assert code == 1 and "found 3 PostgreSQL nodes (pg-1, pg-2, pg-3); at least 5 are required" in out


def test_preview_of_a_fresh_stack_passes() -> None:
    code, out, _ = run_here("dev", "--preview")
    assert code == 0 and f"(24 policies over {declared('dev')} resources of stack dev, as a preview)" in out


@pytest.mark.parametrize(("args", "error"), [
    (["nosuch"], "error: no stack file"),
    (["dev", "--secret", "novalue"], "error: --secret: expected KEY=VALUE"),
    (["dev", "--program", "tests.policy.bodies:nothing"], "error: --program: tests.policy.bodies:nothing is not a"),
    (["dev", "--program", "no_such_module:main"], "error: --program: cannot import no_such_module"),
])
def test_usage_errors_exit_1(args: list[str], error: str) -> None:
    code, out, err = run_here(*args)
    assert (code, out) == (1, "") and err.startswith(error)


@pytest.mark.parametrize(("config", "error"), [
    ({"etcd-min-member": "advisory"}, "error: policy config: unknown policy etcd-min-member"),
    ({"etcd-min-members": "sometimes"}, "error: policy config etcd-min-members: enforcement level 'sometimes'"),
    ({"etcd-min-members": {"minMember": 3}}, "error: policy config etcd-min-members.minMember: unknown property"),
    ({"etcd-min-members": {"minMembers": "3"}}, "error: policy config etcd-min-members.minMembers: '3'; expected"),
])
def test_bad_policy_config_exits_1(tmp_path: Path, config: dict[str, object], error: str) -> None:
    path = tmp_path / "policy-config.json"
    path.write_text(json.dumps(config))
    code, out, err = run_here("dev", "--policy-pack-config", str(path))
    assert (code, out) == (1, "") and err.startswith(error)


def test_a_program_that_raises_exits_1() -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    code, out, err = run_here("dev", body=broken)
    assert (code, out) == (1, "")
    assert err == "RuntimeError: boom\nerror: the program failed; no policy ran\n"

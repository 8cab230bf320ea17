"""The engine's rules for later deployments, on programs of local commands and random values (no Docker).

Local commands write what they do to a journal file, so the order of creates, updates and deletes the
engine chose is what the journal shows; each rule names the pulumi/pulumi source it follows (engine.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pulumi
import pulumi_command as pcommand
import pulumi_random as prandom
import pytest

from local_engine import Stack, UpdateFailedError
from local_engine.providers import ssh
from local_engine.providers.ssh import Connection, Result
from local_engine.wire import UnsupportedInputError, is_secret, make_secret


def journal(project: Path) -> list[str]:
    path = project / "journal"
    return path.read_text().splitlines() if path.exists() else []


def step(name: str, value: pulumi.Input[str] = "1", **kwargs: Any) -> pcommand.local.Command:
    """A local command that journals its create, update (create again) and delete (with the stored stdin)."""
    return pcommand.local.Command(
        name, create=f"echo {name} >> journal; cat", stdin=pulumi.Output.concat(name, "=", value, "\n"),
        delete="sed 's/^/delete /' >> journal", add_previous_output_in_env=False, **kwargs)


def test_identical_inputs_run_nothing_and_a_change_updates(new_stack: Callable[..., Stack], project: Path) -> None:
    stack = new_stack()
    first = stack.up(lambda: step("a"))
    assert first.plan.ops() == first.steps.ops() == {"a": "create"}
    second = stack.up(lambda: step("a"))
    assert second.plan.ops() == {"a": "same"} and second.runs == []
    third = stack.up(lambda: step("a", "2"))
    assert third.plan.of("a").op == "update" and third.plan.of("a").keys == ("stdin",)
    assert third.steps.ops() == {"a": "update"} and third.ran("update") == ["a"]
    assert stack.state_of("a").outputs["stdout"] == "a=2", "update runs create again: there is no update command"
    assert journal(project) == ["a", "a"]


def test_an_update_sees_the_previous_output_unless_told_not_to(new_stack: Callable[..., Stack]) -> None:
    def program(value: str, previous: bool) -> Callable[[], None]:
        return lambda: pulumi.export("env", pcommand.local.Command(
            "e", create="echo ${PULUMI_COMMAND_STDOUT:-none}", triggers=None, stdin=value,
            add_previous_output_in_env=previous).stdout)

    stack = new_stack()
    assert stack.up(program("1", True)).outputs["env"] == "none"
    assert stack.up(program("2", True)).outputs["env"] == "none", "the previous stdout was 'none'"
    stack.up(program("3", True))
    assert stack.up(program("4", False)).outputs["env"] == "none"


def test_triggers_replace_create_before_delete_the_old_one_after_the_program(
        new_stack: Callable[..., Stack], project: Path) -> None:
    def program(version: str) -> None:
        first = step("a", version, triggers=[version])
        step("later", version, opts=pulumi.ResourceOptions(depends_on=[first]))

    stack = new_stack()
    stack.up(lambda: program("1"))
    update = stack.up(lambda: program("2"))
    assert update.plan.ops() == update.steps.ops() == {"a": "replace", "later": "update"}
    assert not update.plan.of("a").delete_before_replace and update.plan.of("a").replace_keys == ("triggers",)
    # The new "a" first, the other steps, then the old "a" deleted with its stored stdin.
    assert journal(project)[2:] == ["a", "later", "delete a=1"]


def test_delete_before_replace_cascades_through_inputs_not_through_depends_on(
        new_stack: Callable[..., Stack], project: Path) -> None:
    def program(version: str) -> None:
        root = step("root", version, triggers=[version], opts=pulumi.ResourceOptions(delete_before_replace=True))
        step("reader", triggers=[root.stdout])  # an input from root: replaced with it
        step("follower", opts=pulumi.ResourceOptions(depends_on=[root]))  # only ordered after it: kept

    stack = new_stack()
    stack.up(lambda: program("1"))
    update = stack.up(lambda: program("2"))
    assert update.plan.ops() == update.steps.ops() == {"root": "replace", "reader": "replace", "follower": "same"}
    assert update.plan.of("reader").delete_before_replace
    assert "from root" in update.plan.of("reader").why
    assert journal(project)[3:] == ["delete reader=1", "delete root=1", "root", "reader"]


def test_undeclared_resources_are_deleted_after_the_program_dependents_first(
        new_stack: Callable[..., Stack], project: Path) -> None:
    def chain() -> None:
        first = step("first")
        second = step("second", first.stdout)
        step("third", second.stdout)

    stack = new_stack()
    stack.up(chain)
    update = stack.up(lambda: step("other"))
    assert update.plan.ops() == update.steps.ops() == {
        "other": "create", "first": "delete", "second": "delete", "third": "delete"}
    assert journal(project)[3:] == ["other", "delete third=second=first=1", "delete second=first=1",
                                    "delete first=1"]
    stack.destroy()
    assert stack.snapshot == {} and journal(project)[-1] == "delete other=1"


class Old(pulumi.ComponentResource):
    def __init__(self, name: str, token: str = "t:index:Old", opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(token, name, None, opts)
        step(f"{name}-child", opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"kind": token})


def test_an_alias_keeps_the_state_of_a_renamed_type_and_its_children(new_stack: Callable[..., Stack]) -> None:
    stack = new_stack()
    stack.up(lambda: Old("c"))
    old_urns = set(stack.snapshot)
    renamed = stack.up(lambda: Old("c", "t:index:New", pulumi.ResourceOptions(aliases=[pulumi.Alias(
        type_="t:index:Old")])))
    # The component's inputs are unchanged (same), and the child inherits the parent's alias.
    assert renamed.plan.ops(custom_only=False) == {"c": "same", "c-child": "same"}, renamed.plan.steps
    assert renamed.runs == [] and set(stack.snapshot).isdisjoint(old_urns)
    assert stack.state_of("c").outputs == {"kind": "t:index:New"}, "register_outputs replaces the outputs"
    unaliased = stack.up(lambda: Old("c", "t:index:Other"))
    assert sorted((s.op, s.type) for s in unaliased.steps.steps if s.name == "c-child") == [
        ("create", "command:local:Command"), ("delete", "command:local:Command")], "without an alias: a new resource"


def test_a_failed_step_starts_nothing_after_it_and_the_state_keeps_what_was_done(
        new_stack: Callable[..., Stack], project: Path) -> None:
    def program(fail: bool) -> None:
        first = step("first")
        broken = pcommand.local.Command("broken", create="exit 3" if fail else "echo fixed",
                                        opts=pulumi.ResourceOptions(depends_on=[first]))
        step("after", opts=pulumi.ResourceOptions(depends_on=[broken]))

    stack = new_stack()
    with pytest.raises(UpdateFailedError, match=r"exit status 3: running 'exit 3'") as failed:
        stack.up(lambda: program(True))
    assert failed.value.update.steps.ops() == {"first": "create"}
    assert [s.name for s in stack.resources()] == ["first"] and journal(project) == ["first"]
    fixed = stack.up(lambda: program(False))
    assert fixed.plan.ops() == {"first": "same", "broken": "create", "after": "create"}


def test_a_step_still_running_when_another_fails_ends_in_the_state(new_stack: Callable[..., Stack],
                                                                    project: Path) -> None:
    def program() -> None:
        pcommand.local.Command("slow", create="sleep 1; echo slow >> journal", delete="echo gone >> journal")
        pcommand.local.Command("broken", create="exit 3")

    stack = new_stack()
    with pytest.raises(UpdateFailedError, match="exit status 3"):
        stack.up(program)
    assert [s.name for s in stack.resources()] == ["slow"], "it finished after the failure: it exists, so it is kept"
    stack.destroy()
    assert journal(project) == ["slow", "gone"]


def test_secrets_stay_secret_in_the_state_and_in_outputs(new_stack: Callable[..., Stack]) -> None:
    def program() -> None:
        password = prandom.RandomPassword("pw", length=12, special=False)
        echo = pcommand.local.Command("echo", create="cat", stdin=password.result,
                                      opts=pulumi.ResourceOptions(additional_secret_outputs=["stdout"]))
        pulumi.export("echoed", echo.stdout)

    stack = new_stack()
    update = stack.up(program)
    state = stack.state_of("echo")
    assert is_secret(state.inputs["stdin"]) and is_secret(state.outputs["stdin"]) and is_secret(state.outputs["stdout"])
    assert is_secret(stack.state_of("pw").outputs["result"])
    assert "echoed" in update.secret_outputs and len(update.outputs["echoed"]) == 12


def test_what_the_engine_does_not_implement_is_refused_by_name(new_stack: Callable[..., Stack]) -> None:
    cases: list[tuple[Callable[[], Any], str]] = [
        (lambda: step("i", opts=pulumi.ResourceOptions(ignore_changes=["stdin"])), "ignore_changes"),
        (lambda: step("r", opts=pulumi.ResourceOptions(retain_on_delete=True)), "retain_on_delete"),
        (lambda: pulumi.CustomResource("acme:index/gadget:Gadget", "g", {"size": 1}), "acme:index/gadget:Gadget"),
        (lambda: pcommand.local.Command("x", create="true", asset_paths=["*"]), "assetPaths"),
    ]
    for program, expected in cases:
        with pytest.raises(UpdateFailedError, match=expected):
            new_stack().up(program)


def test_a_stack_reference_to_itself_reads_the_last_update_and_logs_reach_the_plan(
        new_stack: Callable[..., Stack]) -> None:
    """The builtin provider's readStackReference (pkg/resource/deploy/builtins.go): the referenced stack's
    outputs as the backend holds them, those of its last update, in a preview too; secret ones stay secret."""
    def program() -> None:
        ref = pulumi.StackReference("self", f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}")

        def count(previous: Any) -> int:
            pulumi.log.info(f"previous count: {int(previous or 0)}")  # numbers travel as floats
            return int(previous or 0) + 1

        pulumi.export("count", ref.get_output("count").apply(count))
        pulumi.export("token", pulumi.Output.secret("s3cret"))
        pulumi.export("token_read_back", ref.get_output("token"))

    stack = new_stack()
    first = stack.up(program)
    assert first.outputs["count"] == 1 and first.plan.diagnostics == ["previous count: 0"]
    second = stack.up(program)
    assert second.outputs["count"] == 2 and second.plan.diagnostics == ["previous count: 1"]
    assert "previous count: 1" in second.plan.render(), "the program's log is shown with the plan"
    assert second.outputs["token_read_back"] == "s3cret" and "token_read_back" in second.secret_outputs
    # A preview reads it too, and changes nothing.
    assert stack.preview(program).diagnostics == ["previous count: 2"] and stack.outputs["count"] == 2


def test_a_stack_reference_to_another_stack_is_refused(new_stack: Callable[..., Stack]) -> None:
    stack = new_stack()
    with pytest.raises(UpdateFailedError, match="reads only this stack's own outputs"):
        stack.up(lambda: pulumi.export("x", pulumi.StackReference("other", "organization/other/prod").outputs))


def test_a_protected_resource_is_not_deleted(new_stack: Callable[..., Stack]) -> None:
    stack = new_stack()
    stack.up(lambda: step("kept", opts=pulumi.ResourceOptions(protect=True)))
    with pytest.raises(UpdateFailedError, match="'kept' is protected"):
        stack.up(lambda: None)
    assert [s.name for s in stack.resources()] == ["kept"]
    stack.up(lambda: step("kept"))
    stack.destroy()


class FakeSsh:
    """Stands in for ssh.execute: records each call, answers with the queued exit statuses."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str, str | None, dict[str, str]]] = []
        self.host_keys: list[str | None] = []  # the pinned host key of each call
        self.statuses: list[int] = []

    def __call__(self, conn: Connection, command: str, stdin: str | None, env: dict[str, str] | None = None,
                 **_: Any) -> Result:
        self.calls.append((conn.host, conn.port, command, stdin, dict(env or {})))
        self.host_keys.append(conn.host_key)
        status = self.statuses.pop(0) if self.statuses else 0
        out, err = f"ran {command}", "oops" if status else ""
        return Result(status, out, err, f"{out}\n{err}", 0.01)


@pytest.fixture
def fake_ssh(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSsh]:
    fake = FakeSsh()
    monkeypatch.setattr("local_engine.providers.command.execute", fake)
    yield fake


def remote(port: int = 22, stdin: str = "echo hi", **inputs: Any) -> Callable[[], None]:
    def program() -> None:
        pcommand.remote.Command("svc", connection=pcommand.remote.ConnectionArgs(
            host="10.99.0.1", port=port, private_key=pulumi.Output.secret("KEY")),
            create="bash -s", stdin=stdin, delete="stop", **inputs)
    return program


def test_remote_commands_update_on_a_new_connection_and_delete_with_the_stored_stdin(
        fake_ssh: FakeSsh, new_stack: Callable[..., Stack]) -> None:
    stack = new_stack()
    stack.up(remote(add_previous_output_in_env=False))
    assert is_secret(stack.state_of("svc").inputs["connection"]), "the SDK marks the connection secret"
    moved = stack.up(remote(port=2222, add_previous_output_in_env=False))
    assert moved.plan.of("svc").op == "update" and moved.plan.of("svc").keys == ("connection",)
    assert fake_ssh.calls[-1][:4] == ("10.99.0.1", 2222, "bash -s", "echo hi"), "create again, on the new port"
    stack.up(remote(port=2222, stdin="echo changed"))
    assert fake_ssh.calls[-1][4] == {"PULUMI_COMMAND_STDOUT": "ran bash -s"}
    stack.destroy()
    assert fake_ssh.calls[-1][2:4] == ("stop", "echo changed")


def test_remote_command_failures_name_the_host_and_keep_the_state(
        fake_ssh: FakeSsh, new_stack: Callable[..., Stack]) -> None:
    stack = new_stack()
    stack.up(remote())
    fake_ssh.statuses = [1]
    with pytest.raises(UpdateFailedError, match=r"root@10\.99\.0\.1:22: Process exited with status 1: "
                                                r"running 'bash -s':\nran bash -s\noops"):
        stack.up(remote(stdin="echo changed"))
    assert stack.state_of("svc").inputs["stdin"] == "echo hi", "a failed update leaves the stored inputs"
    stack.up(remote(stdin="echo changed"))
    assert fake_ssh.calls[-1][3] == "echo changed", "the next run tries the update again"
    with pytest.raises(UpdateFailedError, match="environment"):
        new_stack().up(remote(environment={"A": "1"}))
    with pytest.raises(UnsupportedInputError, match="proxy"):
        Connection.parse("c", {"host": "h", "proxy": {"host": "x"}})


def test_an_agent_socket_that_does_not_answer_fails_before_any_dial(tmp_path: Path) -> None:
    conn = Connection(host="10.99.0.1", private_key=None, agent_socket_path=str(tmp_path / "gone.sock"))
    with pytest.raises(ssh.EngineError, match=r"dial unix .*gone\.sock"):
        conn.dial()
    assert make_secret("x") != "x"


def test_a_host_key_that_does_not_parse_fails_before_any_dial() -> None:
    # 10.99.0.1 is never dialled: pulumi-command parses the host key first (SSHConfig) and fails there.
    conn = Connection(host="10.99.0.1", host_key="ssh-ed25519 AAAA!!", dial_error_limit=-1)
    with pytest.raises(ssh.EngineError, match=r"root@10\.99\.0\.1:22: failed to parse host key"):
        conn.dial()


def test_a_replaced_command_is_deleted_with_the_host_key_its_state_pins(
        fake_ssh: FakeSsh, new_stack: Callable[..., Stack]) -> None:
    """pulumi-command deletes with the stored connection: a host rebuilt with new keys (a raised trigger and a
    new pin) sees the old key in the delete that runs before the new create (README: A host rebuilt empty)."""
    def program(generation: str, key: str) -> Callable[[], None]:
        return lambda: pcommand.remote.Command("svc", connection=pcommand.remote.ConnectionArgs(
            host="10.99.0.1", private_key=pulumi.Output.secret("KEY"), host_key=key), create="bash -s",
            stdin="echo hi", delete="stop", triggers=[generation], add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(delete_before_replace=True))

    stack = new_stack()
    stack.up(program("0", "ssh-ed25519 OLD"))
    stack.up(program("1", "ssh-ed25519 NEW"))
    assert [(c[2], k) for c, k in zip(fake_ssh.calls, fake_ssh.host_keys, strict=True)] == [
        ("bash -s", "ssh-ed25519 OLD"), ("stop", "ssh-ed25519 OLD"), ("bash -s", "ssh-ed25519 NEW")]
    stack.destroy()

"""The remote-command handler's engine semantics, with SSH replaced by a recorder (no Docker, no hosts)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from . import ssh
from .ssh import Connection, RemoteCommands, Result
from .values import HarnessError, UnsupportedInputError, make_secret

CONN = {"host": "10.93.0.11", "port": 22.0, "user": "root", "privateKey": make_secret("KEY"),
        "dialErrorLimit": 20.0, "perDialTimeout": 15.0}


class FakeHosts:
    """Stands in for `ssh.execute`: records each call, answers with the queued exit statuses."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None, dict[str, str]]] = []
        self.statuses: list[int] = []

    def __call__(self, conn: Connection, command: str, stdin: str | None,
                 env: Mapping[str, str] | None = None, timeout_s: float = 0) -> Result:
        self.calls.append((conn.host, command, stdin, dict(env or {})))
        status = self.statuses.pop(0) if self.statuses else 0
        out, err = f"ran {command}", "oops" if status else ""
        return Result(status, out, err, f"{out}\n{err}", 0.01)


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHosts]:
    fake = FakeHosts()
    monkeypatch.setattr(ssh, "execute", fake)
    yield fake


def command(**inputs: Any) -> dict[str, Any]:
    return {"connection": CONN, "create": "bash -s", "stdin": "echo hi", **inputs}


def test_create_records_state_and_unchanged_inputs_do_not_run(hosts: FakeHosts) -> None:
    first = RemoteCommands()
    resource_id, state = first.register("svc", command(delete="bash -c 'stop'"))
    assert hosts.calls == [("10.93.0.11", "bash -s", "echo hi", {})]
    assert state["stdout"] == "ran bash -s" and state["stderr"] == "" and resource_id.startswith("svc-")
    assert state["connection"]["privateKey"] == make_secret("KEY"), "secret inputs stay wrapped in the state"
    second = RemoteCommands.following(first)
    again_id, again = second.register("svc", command(delete="bash -c 'stop'"))
    assert (again_id, again) == (resource_id, state) and len(hosts.calls) == 1
    assert second.unchanged == ["svc"] and second.runs == []


def test_changed_inputs_update_with_previous_output(hosts: FakeHosts) -> None:
    first = RemoteCommands()
    first.register("svc", command())
    second = RemoteCommands.following(first)
    second.register("svc", command(stdin="echo changed"))
    assert hosts.calls[-1] == ("10.93.0.11", "bash -s", "echo changed", {"PULUMI_COMMAND_STDOUT": "ran bash -s"})
    assert [r.action for r in second.runs] == ["update"]
    third = RemoteCommands.following(second)
    third.register("svc", command(stdin="echo again", update="bash -s --update", addPreviousOutputInEnv=False))
    assert hosts.calls[-1] == ("10.93.0.11", "bash -s --update", "echo again", {})


def test_replacement_and_environment_and_unknown_keys_are_refused(hosts: FakeHosts) -> None:
    first = RemoteCommands()
    first.register("svc", command())
    with pytest.raises(UnsupportedInputError, match="connection changed"):
        RemoteCommands.following(first).register("svc", command(connection={**CONN, "host": "10.93.0.12"}))
    with pytest.raises(UnsupportedInputError, match="environment"):
        RemoteCommands().register("env", command(environment={"A": "1"}))
    with pytest.raises(UnsupportedInputError, match="colour"):
        RemoteCommands().register("odd", command(colour="red"))
    with pytest.raises(UnsupportedInputError, match="proxy"):
        RemoteCommands().register("proxied", command(connection={**CONN, "proxy": {"host": "x"}}))
    with pytest.raises(UnsupportedInputError, match="logging"):
        RemoteCommands().register("log", command(logging="verbose"))
    RemoteCommands().register("quiet", command(logging="none", triggers=["a"]))
    assert len(hosts.calls) == 2


def test_failures_name_the_host_and_keep_the_previous_state(hosts: FakeHosts) -> None:
    hosts.statuses = [3]
    fresh = RemoteCommands()
    with pytest.raises(HarnessError, match=r"root@10\.93\.0\.11:22: Process exited with status 3: running 'bash -s'"):
        fresh.register("svc", command())
    assert "svc" not in fresh.records and fresh.runs[0].exit_status == 3
    first = RemoteCommands()
    first.register("svc", command())
    hosts.statuses = [1]
    second = RemoteCommands.following(first)
    with pytest.raises(HarnessError, match="oops"):
        second.register("svc", command(stdin="echo changed"))
    assert second.records["svc"].inputs["stdin"] == "echo hi", "a failed update leaves the recorded inputs"
    third = RemoteCommands.following(second)
    third.register("svc", command(stdin="echo changed"))
    assert hosts.calls[-1][2] == "echo changed", "the next run tries the update again"


def test_destroy_deletes_in_reverse_order_and_stops_at_a_failure(hosts: FakeHosts) -> None:
    state = RemoteCommands()
    for name in ("a", "b", "c"):
        state.register(name, command(delete=f"delete {name}"))
    state.register("gate", command())
    hosts.calls.clear()
    hosts.statuses = [0, 1]
    with pytest.raises(HarnessError):
        state.destroy()
    assert [call[1] for call in hosts.calls] == ["delete c", "delete b"]
    assert list(state.records) == ["a", "b"], "the failed delete and what it depends on stay"
    hosts.statuses = []
    assert state.destroy() == ["b", "a"] and not state.records


def test_rerun_runs_the_recorded_create_again(hosts: FakeHosts) -> None:
    state = RemoteCommands()
    state.register("svc", command(addPreviousOutputInEnv=False))
    run = state.rerun("svc")
    assert run.action == "rerun" and hosts.calls[-1] == ("10.93.0.11", "bash -s", "echo hi", {})

"""The container runner (targets/assets/pgha-run) in the real node image: it waits for the converge step's
files, reloads and restarts one process on request while the others keep running, and ends the container
when a process ends on its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from config.models import Host
from targets.base import File, Process, ServiceSpec
from targets.converge import converge_script
from targets.docker import CONVERGED, PROCESSES, RUNNER, RUNNER_SCRIPT, RunnerControl
from tests.tools import docker_boxes
from tests.tools.docker_boxes import ToolsEnv, wait_for

pytestmark = pytest.mark.tools

# Two processes: "steady" sleeps; "signals" logs each signal it gets (and ends on TERM).
# It says it is ready once its traps are set: a signal sent before that would end it without a word (the runner
# writes its pid file when it spawns it, before bash has read the traps).
SIGNALS = ("bash -c 'trap \"echo usr1 >> /tmp/signals.log\" USR1; trap \"echo term >> /tmp/signals.log; exit 0\" TERM;"
           " touch /tmp/signals.ready; while :; do sleep 0.2; done'")
# "slow" takes 2 s to end cleanly after a TERM, as Patroni does while it stops PostgreSQL and hands the
# leader key back.
SLOW = ("bash -c 'trap \"sleep 2; echo clean >> /tmp/slow.log; exit 0\" TERM; touch /tmp/slow.ready;"
        " while :; do sleep 0.2; done'")
READY = ("bash", "-c", "test -e /tmp/signals.ready && test -e /tmp/slow.ready")
PROCESS_LIST = f"steady\troot\tsleep infinity\nsignals\troot\t{SIGNALS}\nslow\troot\t{SLOW}\n"


@pytest.fixture
def runner(tools_env: ToolsEnv) -> Iterator[docker_boxes.Container]:
    name = f"pgha-runner-{uuid.uuid4().hex[:8]}"
    docker_boxes.docker("create", "--name", name, "--label", docker_boxes.LABEL, "--network", tools_env.network,
                        tools_env.image, RUNNER)
    box = docker_boxes.Container(name)
    box.put({PROCESSES: PROCESS_LIST})
    box.put({RUNNER: RUNNER_SCRIPT}, mode=0o755)
    docker_boxes.docker("start", name)
    yield box
    docker_boxes.docker("rm", "-f", name, check=False)


def pid(box: docker_boxes.Container, name: str) -> str:
    return box.exec("cat", f"/run/pgha/{name}.pid").stdout.strip()


def state(box: docker_boxes.Container) -> str:
    return docker_boxes.docker("inspect", "-f", "{{.State.Status}} {{.State.StartedAt}}", box.name).stdout.strip()


def test_it_waits_for_the_files_then_reloads_and_restarts_one_process(runner: docker_boxes.Container) -> None:
    box = runner
    wait_for("the runner waiting", lambda: "waiting for the converge step" in docker_boxes.docker(
        "logs", box.name).stdout, 30)
    assert box.exec("test", "-e", "/run/pgha/steady.pid").returncode != 0, "nothing starts before the files exist"
    box.exec("touch", CONVERGED, check=True)
    wait_for("both processes started", lambda: box.exec(*READY).returncode == 0
             and box.exec("test", "-s", "/run/pgha/steady.pid").returncode == 0, 30)
    started, steady, signals = state(box), pid(box, "steady"), pid(box, "signals")
    box.exec(RUNNER, "reload", "signals", "USR1", check=True)
    wait_for("the reload signal", lambda: "usr1" in box.exec("cat", "/tmp/signals.log").stdout, 10)
    assert pid(box, "signals") == signals, "a reload keeps the process"
    box.exec(RUNNER, "restart", "steady", check=True)
    assert pid(box, "steady") != steady, "a restart starts the process again"
    assert pid(box, "signals") == signals and state(box) == started, "the others and the container go on"
    # The positive control: a process that ends on its own ends the container (the restart policy decides).
    box.exec("kill", "-9", pid(box, "steady"), check=True)
    wait_for("the container to end", lambda: state(box).startswith("exited"), 30)
    log = docker_boxes.docker("cp", f"{box.name}:/tmp/signals.log", "-").stdout  # a tar stream of the file
    assert "term" in log, "the other process was stopped cleanly on the way out"


def test_a_stop_passes_the_term_on_to_every_process(runner: docker_boxes.Container) -> None:
    box = runner
    box.exec("touch", CONVERGED, check=True)
    wait_for("the processes started", lambda: box.exec(*READY).returncode == 0, 30)
    docker_boxes.docker("stop", "-t", "20", box.name)
    log = docker_boxes.docker("cp", f"{box.name}:/tmp/signals.log", "-").stdout
    assert "term" in log, "the process got the SIGTERM and ended cleanly"
    assert docker_boxes.docker("inspect", "-f", "{{.State.ExitCode}}", box.name).stdout.strip() in ("0", "143")


@pytest.mark.parametrize("grace_s", [20, 1])
def test_a_stop_waits_for_a_slow_clean_end(runner: docker_boxes.Container, grace_s: int) -> None:
    """The runner passes a stop's SIGTERM on once and stays until every process has ended, even when more
    signals arrive meanwhile (a second TERM once ended a supervisor early, and the container with it, the
    process killed halfway). The positive control: a grace shorter than the process's clean end (docker
    then kills it) leaves no trace of a clean end, so the check can see one that did not happen."""
    box = runner
    box.exec("touch", CONVERGED, check=True)
    wait_for("the processes started", lambda: box.exec(*READY).returncode == 0, 30)
    box.exec("kill", "-TERM", "1", check=True)  # a signal before the stop's own: the runner passes on one TERM
    docker_boxes.docker("stop", "-t", str(grace_s), box.name)
    log = docker_boxes.docker("cp", f"{box.name}:/tmp/slow.log", "-", check=False).stdout
    if grace_s > 2:
        assert "clean" in log, "the slow process ended cleanly before the container did"
    else:
        assert "clean" not in log, "the control: killed after 1 s, the slow process did not end cleanly"


def _converge(box: docker_boxes.Container, a: str, b: str, after: str = "[ \"$restart_rc\" = 0 ]") -> int:
    """Run the converge script of a service whose `signals` process reloads for /etc/a.conf and restarts for
    /etc/b.conf (read only when it starts) between two hooks that log; its exit status."""
    signals = Process("signals", ("unused",), on_change="reload", reload_signal="USR1",
                      reads=("/etc/a.conf", "/etc/b.conf"), restart_reads=("/etc/b.conf",),
                      before_restart="echo before >> /tmp/hooks.log",
                      after_restart=f"echo \"after $restart_rc\" >> /tmp/hooks.log; {after}")
    spec = ServiceSpec(role="probe", host=Host(name="probe", address=IPv4Address("10.0.0.1")), packages=(),
                       processes=(Process("steady", ("unused",), reads=()), signals),
                       files=(File("/etc/a.conf", a), File("/etc/b.conf", b)))
    script = converge_script(spec, [a, b], RunnerControl())
    return docker_boxes.docker("exec", "-i", box.name, "bash", "-s", "update", stdin=script.encode(),
                               check=False).returncode


def test_a_file_read_only_at_start_restarts_the_process_between_its_hooks_until_it_took(
        runner: docker_boxes.Container) -> None:
    box = runner
    assert _converge(box, "a1", "b1") == 0
    wait_for("the processes started", lambda: box.exec(*READY).returncode == 0, 30)
    first = pid(box, "signals")
    # The control: a file it re-reads is taken by the reload signal, the same process.
    assert _converge(box, "a2", "b1") == 0
    wait_for("the reload signal", lambda: "usr1" in box.exec("cat", "/tmp/signals.log").stdout, 10)
    assert pid(box, "signals") == first and box.exec("test", "-e", "/tmp/hooks.log").returncode != 0
    # The file it reads only when it starts: a restart between the hooks.
    assert _converge(box, "a2", "b2") == 0
    second = pid(box, "signals")
    assert second != first and box.exec("cat", "/tmp/hooks.log").stdout.split("\n")[:2] == ["before", "after 0"]
    # A restart whose last hook fails fails the run and stays to do: the next run, with no change, does it again.
    assert _converge(box, "a2", "b3", after="false") != 0
    third = pid(box, "signals")
    assert third != second
    assert _converge(box, "a2", "b3") == 0
    assert pid(box, "signals") != third
    assert box.exec("cat", "/tmp/hooks.log").stdout.split() == [
        "before", "after", "0", "before", "after", "0", "before", "after", "0"]
    # Done, nothing more restarts it.
    fourth = pid(box, "signals")
    assert _converge(box, "a2", "b3") == 0 and pid(box, "signals") == fourth

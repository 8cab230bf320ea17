"""The converge script both targets run on a service's host: the one path by which configuration reaches a
running service, on its first deployment and on every later one.

It writes the files whose content differs (and only those), applies a change to the processes the way
each process takes it (a reload signal, or a restart of that one process), starts what is not running,
and waits for the service's health when it must. A target supplies how processes are controlled on its
hosts (`Control`): systemd units on hosts, the container runner (targets/assets/pgha-run) in containers.
A file change therefore never recreates a container or a host's service: a PostgreSQL parameter that
needs a restart is left pending for the rolling step (operations/pending_restarts.py).
"""

from __future__ import annotations

import abc
import base64
import shlex

import pulumi

from render.paths import PG_HOME
from render.shell import HEALTH_DEADLINE_S, until_ok
from targets.base import Process, ServiceSpec, Storage, Target

# The home directory of a service user the program may create itself (as the user's package would).
HOMES = {"postgres": PG_HOME}


def write_file(path: str, content: str, mode: str, owner: str, flag: str = "changed") -> str:
    """Shell that writes `content` to `path`, setting `$flag` to 1 when the content differs.

    An unchanged file is not rewritten (only its owner and mode are enforced): a rewritten unit file
    makes systemd ask for a daemon-reload although nothing changed."""
    encoded = base64.b64encode(content.encode()).decode()
    q = shlex.quote(path)
    return (
        f"tmp=$(mktemp)\nbase64 -d > \"$tmp\" <<'PGHA_EOF'\n{encoded}\nPGHA_EOF\n"
        f"if ! cmp -s \"$tmp\" {q}; then\n  {flag}=1\n"
        f"  install -D -m {mode} -o {owner} -g {owner} \"$tmp\" {q}\n"
        f"else\n  chown {owner}:{owner} {q} && chmod {mode} {q}\nfi\nrm -f \"$tmp\"\n"
    )


def shared_dir(host: str, storage: Storage) -> str:
    """Converge shell for a directory shared by several hosts (the pgBackRest repository on NFS).

    Usually a mount point that exists before the service user does, owned by root: it is made the user's.
    Owned by other ids than the user's here it is refused, never taken: hosts whose user has other ids would
    take it from each other in turn, and each time the other hosts' writes (WAL archiving) fail. Ids are
    compared, not names: one name stands for other ids on another host."""
    q, owner = shlex.quote(storage.path), storage.owner
    refusal = (f"{host}: {storage.path} is shared and owned by uid:gid $have, but {owner} here is $want: every "
               f"host sharing it needs the same ids for {owner} (a new host takes them from the directory when "
               f"{owner} is created; on this one change them with usermod/groupmod)")
    return (f"test -d {q} || install -d -m 0750 -o {owner} -g {owner} {q}\n"
            f'have=$(stat -c %u:%g {q}); want="$(id -u {owner}):$(id -g {owner})"\n'
            f'if [ "$have" != "$want" ]; then\n'
            f'  if [ "${{have%%:*}}" = 0 ]; then chown {owner}:{owner} {q} && chmod 0750 {q}\n'
            f'  else echo "{refusal}" >&2; exit 1; fi\nfi')


def shared_owner(host: str, storage: Storage) -> str:
    """Shell run before the packages that create the shared directory's owner are installed: on a host where
    that user does not exist yet and the directory is another host's already, the user is created with the
    ids that own it (Debian's packages keep a user that exists), so that the hosts agree. Ids taken here by
    another user or group are refused before anything is installed."""
    q, owner = shlex.quote(storage.path), storage.owner
    where = f"{host}: {storage.path} belongs to uid:gid $uid:$gid (the hosts sharing it)"
    return f"""if ! getent passwd {owner} >/dev/null && [ -d {q} ] && [ "$(stat -c %u {q})" != 0 ]; then
  uid=$(stat -c %u {q}); gid=$(stat -c %g {q})
  if taken=$(getent passwd "$uid"); then
    echo "{where}, but uid $uid is ${{taken%%:*}}'s here: {owner} cannot have the ids of the other hosts" >&2; exit 1
  fi
  if taken=$(getent group "$gid") && [ "${{taken%%:*}}" != {owner} ]; then
    echo "{where}, but gid $gid is group ${{taken%%:*}} here: {owner} cannot have the ids of the other hosts" >&2
    exit 1
  fi
  if group=$(getent group {owner}) && [ "$(echo "$group" | cut -d: -f3)" != "$gid" ]; then
    echo "{where}, but group {owner} exists here with gid $(echo "$group" | cut -d: -f3)" >&2; exit 1
  fi
  getent group {owner} >/dev/null || groupadd --system --gid "$gid" {owner}
  useradd --system --uid "$uid" --gid "$gid" --home-dir {HOMES[owner]} --no-create-home --shell /bin/bash {owner}
  echo "{host}: {owner} created with uid:gid $uid:$gid, the owner of {storage.path} on the hosts sharing it"
fi
"""


class Control(abc.ABC):
    """How processes are started, reloaded and restarted on one target's hosts (shell snippets)."""

    @abc.abstractmethod
    def setup(self, spec: ServiceSpec) -> list[str]:
        """Shell run after the files are written and before any process is touched."""

    @abc.abstractmethod
    def running(self, process: Process) -> str:
        """A shell condition: the process is running (so a change reaches it by reload or restart)."""

    @abc.abstractmethod
    def act(self, process: Process, action: str) -> str:
        """Shell that reloads or restarts (`action`) a running process and returns when it took it."""

    @abc.abstractmethod
    def start(self, spec: ServiceSpec) -> list[str]:
        """Shell that starts every process of `spec` that is not running."""


# A process's restart begun and not finished (Process.restart_reads), one file per process name.
RESTART_PENDING_DIR = "/var/lib/pgha/restart-pending"
# Left by a converge that adopted data but did not start its service yet (ServiceSpec.on_adopt set defer=1).
DEFERRED = "/run/pgha/start-deferred"


def converge_script(spec: ServiceSpec, contents: list[str], control: Control, checks: list[str] | None = None,
                    adopt: str | None = None) -> str:
    """Idempotent: write files that changed, start what is stopped, apply changes, wait healthy.

    Its first argument is `create` when the command is created (a new deployment of the service there),
    `update` otherwise; `checks` run first (e.g. the refusal of data left by another deployment). A
    process that restarted is waited for even in a service that does not wait on its first deployment
    (etcd): the next member of a rolling change starts only after this one is healthy again. `adopt` is the
    spec's resolved `on_adopt` when the stack adopts data: a create that finds data held runs it before
    anything starts."""
    parts = ["set -euo pipefail", 'mode="${1:-update}"', *(checks or []), "changed=0", "restarted=0", "held=0",
             "defer=0"]
    # Whether a data directory held data before this run (a replaced container or host rejoining its peers),
    # asked before anything starts: a member started below writes its data directory at once.
    parts += [f'if [ -e {shlex.quote(f"{d.path}/{d.holds}")} ]; then held=1; fi' for d in spec.data_dirs if d.holds]
    for data in spec.data_dirs:
        parts.append(f"install -d -m {data.mode} -o {data.owner} -g {data.owner} {shlex.quote(data.path)}")
    parts += [shared_dir(spec.host.name, shared) for shared in spec.shared]
    flags: dict[str, str] = {}
    for i, (file, content) in enumerate(zip(spec.files, contents, strict=True)):
        flag = flags[file.path] = f"file{i}"
        parts.append(f"{flag}=0\n" + write_file(file.path, content, file.mode, file.owner, flag)
                     + f'if [ "${flag}" = 1 ]; then changed=1; fi')
    # Asked once the files are there (the probe may need them: etcd's client certificate), before this host's
    # processes change.
    if spec.wait_when and not spec.wait:
        parts.append(f"joining=0\nif {spec.wait_when}; then joining=1; fi")
    parts += control.setup(spec)
    for process in spec.processes:
        reads = [f.path for f in spec.files] if process.reads is None else list(process.reads)
        unknown = sorted(set(reads) - set(flags))
        if unknown:
            raise ValueError(f"{spec.host.name}: process {process.name} reads {unknown}, not files of its service")
        if not reads:
            continue  # it re-reads what it needs by itself (cron's /etc/cron.d): a change never touches it
        action = "reload" if process.on_change == "reload" else "restart"
        restarted = "\n  restarted=1" if action == "restart" else ""
        prepare = f"{process.before_change}\n  " if process.before_change else ""
        unknown = sorted(set(process.restart_reads) - set(reads))
        if unknown:
            raise ValueError(f"{spec.host.name}: process {process.name} restarts for {unknown}, which it does not read")
        took = " || ".join(f'[ "${flags[path]}" = 1 ]' for path in reads)
        first = ""
        if process.restart_reads:
            # Read only when it starts: their change restarts it, whatever its on_change.
            # Marked before anything is done, cleared once it is done: a run that failed between the two (the
            # files written, the restart not taken) restarts it again on the next run.
            pending = shlex.quote(f"{RESTART_PENDING_DIR}/{process.name}")
            must = " || ".join([*(f'[ "${flags[path]}" = 1 ]' for path in process.restart_reads), f"[ -e {pending} ]"])
            before = f"{process.before_restart}\n  " if process.before_restart else ""
            after = f"\n  {process.after_restart}" if process.after_restart else '\n  [ "$restart_rc" = 0 ]'
            said = f"{process.name}: restarted (it reads {', '.join(process.restart_reads)} only when it starts)"
            first = (f"if {control.running(process)} && {{ {must}; }}; then\n"
                     f"  install -d -m 0700 {RESTART_PENDING_DIR} && touch {pending}\n"
                     f"  {before}restart_rc=0\n  {control.act(process, 'restart')} || restart_rc=$?{after}\n"
                     f"  rm -f {pending}\n  echo {shlex.quote(said)}\n  restarted=1\nel")
        parts.append(
            f"{first}if {control.running(process)} && {{ {took}; }}; then\n"
            f"  {prepare}{control.act(process, action)}\n"
            f"  echo {shlex.quote(f'{process.name}: {action}ed')}{restarted}\nfi"
        )
    starting = control.start(spec)
    if spec.health:
        wait = until_ok(spec.health)
        if spec.wait:
            starting.append(wait)
        else:
            # Also when a new container or host takes over data it held before (rejoining its peers); a first
            # deployment does not wait: its peers start after it.
            joining = " || [ \"$joining\" = 1 ]" if spec.wait_when else ""
            starting.append(f'if [ "$restarted" = 1 ] || {{ [ "$mode" = create ] && [ "$held" = 1 ]; }}'
                            f'{joining}; then\n{wait}fi')
    if adopt:
        parts.append(f'if [ "$mode" = create ] && [ "$held" = 1 ]; then\n{adopt.rstrip()}\nfi')
        started = "\n".join(starting)
        parts.append(f'if [ "$defer" = 1 ]; then\n  install -d -m 0755 {shlex.quote(DEFERRED.rsplit("/", 1)[0])}\n'
                     f'  touch {DEFERRED}\n  echo "{spec.host.name}: the start waits for the adopted cluster"\n'
                     f'else\n{started}\nfi')
    else:
        parts += starting
    return "\n".join(parts) + "\n"


def deferred_start_script(spec: ServiceSpec, control: Control, deadline_s: int) -> str:
    """Bash (no secrets) that starts a service whose adopting converge deferred its start, once
    `spec.deferred_until` holds, and waits for its health; nothing when nothing was deferred."""
    if spec.deferred_until is None:
        raise ValueError(f"{spec.host.name}: {spec.role} defers no start (no deferred_until)")
    return "\n".join([
        "set -euo pipefail",
        f'if [ ! -e {DEFERRED} ]; then echo "{spec.host.name}: no start was deferred"; exit 0; fi',
        f"deadline=$((SECONDS + {deadline_s}))",
        f"until {spec.deferred_until}; do",
        f'  if [ $SECONDS -ge $deadline ]; then echo "{spec.host.name}: the adopted cluster did not come up within '
        f'{deadline_s} s: {spec.role} was not started" >&2; exit 1; fi',
        "  sleep 1",
        "done",
        *control.start(spec),
        f"rm -f {DEFERRED}",
        until_ok(spec.health) if spec.health else ":",
    ]) + "\n"


def converge_output(spec: ServiceSpec, control: Control, checks: list[str], adopt: bool) -> pulumi.Output[str]:
    """The converge script of `spec` once its files' contents are known (and, when the stack adopts data,
    its `on_adopt`): a secret when any file or the adoption holds one."""
    hook = spec.on_adopt if adopt else None
    values = pulumi.Output.all(*[f.content for f in spec.files], hook if hook is not None else "")
    script = values.apply(lambda v: converge_script(spec, [str(x) for x in v[:-1]], control, checks,
                                                    str(v[-1]) if hook is not None else None))
    return pulumi.Output.secret(script) if hook is not None or any(f.secret for f in spec.files) else script


def start_deferred(target: Target, name: str, spec: ServiceSpec, depends_on: list[pulumi.Resource],
                   parent: pulumi.Resource) -> pulumi.Resource:
    """A step that starts `spec`'s service where its adopting converge deferred the start (after
    `depends_on`: every member's converge), once `spec.deferred_until` holds."""
    return target.run_step(name, spec.host, deferred_start_script(spec, target.control, HEALTH_DEADLINE_S),
                           depends_on, parent)

"""SSH target: services on bare-metal Debian hosts, installed and converged by remote commands."""

from __future__ import annotations

import base64
import os
import shlex
import stat
from collections.abc import Mapping

import pulumi
import pulumi_command as command

from config.models import ClusterConfig, Host
from render.shell import until_ok
from targets.base import File, Placement, Process, ServiceSpec, Storage, Target

# Packaged units that would fight ours for the same ports and data: masked while pgha owns the host.
PACKAGED_UNITS = ("etcd", "patroni", "postgresql", "haproxy", "keepalived")
UNIT_DIR = "/etc/systemd/system"


def unit_name(process: Process) -> str:
    """The systemd unit that runs a process (its host's own service where it has one)."""
    return process.host_service or f"pgha-{process.name}"


def render_unit(spec: ServiceSpec, process: Process) -> str:
    """A systemd unit for one pgha process."""
    lines = [
        "# Managed by pgha (Pulumi); do not edit: changes are overwritten.",
        "[Unit]",
        f"Description=pgha {spec.role} {process.name} on {spec.host.name}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"User={process.user}",
        f"Group={process.user}",
        f"ExecStart={shlex.join(process.argv)}",
        f"ExecReload=/bin/kill -{process.reload_signal} $MAINPID",
        # Patroni stops PostgreSQL itself; killing the whole group would skip its clean shutdown.
        "KillMode=process",
        "TimeoutStopSec=60",
        "Restart=on-failure",
        "RestartSec=5",
        "LimitNOFILE=65536",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def _write_file(path: str, content: str, mode: str, owner: str, flag: str = "changed") -> str:
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


def install_script(packages: tuple[str, ...]) -> str:
    """Idempotent package installation that keeps Debian's packaged services from starting."""
    names = " ".join(packages)
    return f"""set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
mkdir -p /etc/postgresql-common
grep -qs '^create_main_cluster = false' /etc/postgresql-common/createcluster.conf \\
  || printf 'create_main_cluster = false\\n' >> /etc/postgresql-common/createcluster.conf
printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
installed=$(dpkg-query -W -f='${{db:Status-Status}}\n' {names} 2>/dev/null | grep -cx installed || true)
if [ "$installed" -ne {len(packages)} ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends \\
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold {names}
fi
for unit in {' '.join(PACKAGED_UNITS)}; do
  if systemctl list-unit-files "$unit.service" >/dev/null 2>&1; then
    systemctl mask --now "$unit.service" >/dev/null 2>&1 || true
  fi
done
"""


def _unclaimed(spec: ServiceSpec, adopt: bool) -> list[str]:
    """Shell run only by the converge command's create (a new deployment of this service on this host):
    data left in a data directory is refused, or adopted when the stack says so."""
    checks = []
    for data in spec.data_dirs:
        if data.holds is None:
            continue
        held = shlex.quote(f"{data.path}/{data.holds}")
        what = f"{spec.host.name}: {data.path} already holds data ({data.holds})"
        adopting = f"{what}: adopting it (pgha:adopt_existing_data)"
        refusal = (f"{what}: a new deployment does not adopt it, it may be the data of another deployment; "
                   "remove it or set pgha:adopt_existing_data: true")
        found = f"echo {shlex.quote(adopting)}" if adopt else f"echo {shlex.quote(refusal)} >&2; exit 1"
        checks.append(f'if [ "$mode" = create ] && [ -e {held} ]; then {found}; fi')
    return checks


def converge_script(spec: ServiceSpec, contents: list[str], adopt: bool = False) -> str:
    """Idempotent: write files and units that changed, start what is stopped, apply changes, wait healthy.
    Its first argument is `create` when the command is created, `update` otherwise."""
    parts = ["set -euo pipefail", 'mode="${1:-update}"', *_unclaimed(spec, adopt), "changed=0"]
    for data in spec.data_dirs:
        parts.append(f"install -d -m {data.mode} -o {data.owner} -g {data.owner} {shlex.quote(data.path)}")
    for shared in spec.shared:
        # Usually a mount point (NFS) that exists before the service user does: make it the user's.
        # chown only when needed, so a share prepared by hand (e.g. with root_squash) is left alone.
        q, owner = shlex.quote(shared.path), shared.owner
        parts.append(
            f"test -d {q} || install -d -m 0750 -o {owner} -g {owner} {q}\n"
            f'if [ "$(stat -c %U:%G {q})" != {owner}:{owner} ]; then chown {owner}:{owner} {q} && chmod 0750 {q}; fi'
        )
    for file, content in zip(spec.files, contents, strict=True):
        parts.append(_write_file(file.path, content, file.mode, file.owner))
    parts.append("units_changed=0")
    for process in spec.processes:
        if process.host_service:
            continue
        unit = f"{UNIT_DIR}/{unit_name(process)}.service"
        parts.append(_write_file(unit, render_unit(spec, process), "0644", "root", flag="units_changed"))
    parts.append('if [ "$units_changed" = 1 ]; then systemctl daemon-reload; fi')
    for process in spec.processes:
        unit = unit_name(process)
        action = "reload" if process.on_change == "reload" else "restart"
        parts.append(
            f"if systemctl is-active -q {unit}; then\n"
            f'  if [ "$changed" = 1 ]; then systemctl {action} {unit}; echo "{unit}: {action}ed"; fi\n'
            f"else\n  systemctl enable -q --now {unit}; echo \"{unit}: started\"\nfi\n"
            f"systemctl enable -q {unit}"
        )
    if spec.health and spec.wait:
        parts.append(until_ok(spec.health))
    return "\n".join(parts) + "\n"


def delete_script(spec: ServiceSpec, purge_data: bool) -> str:
    """Stop and disable the service, remove its units and files; data only when purging."""
    parts = ["set -u"]
    for process in spec.processes:
        if process.host_service:
            continue
        unit = unit_name(process)
        parts.append(f"systemctl disable --now {unit} 2>/dev/null || true")
        parts.append(f"rm -f {UNIT_DIR}/{unit}.service")
    parts.append("systemctl daemon-reload")
    parts += [f"rm -f {shlex.quote(f.path)}" for f in spec.files]
    if purge_data:
        parts += [f"rm -rf --one-file-system {shlex.quote(d.path)}" for d in spec.data_dirs]
    return "\n".join(parts) + "\n"


def agent_problem(agent_socket_path: str | None, environ: Mapping[str, str]) -> str | None:
    """Why pulumi-command would fail every command before it dials a host, or None: it uses the agent at
    `agent_socket_path`, else at SSH_AUTH_SOCK when set, and fails when that socket does not answer
    (pulumi-command provider/pkg/provider/remote/connection.go)."""
    path = agent_socket_path or environ.get("SSH_AUTH_SOCK") or None
    if path is None:
        return None
    where = "pgha:ssh.agent_socket_path" if agent_socket_path else "SSH_AUTH_SOCK"
    try:
        is_socket = stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        is_socket = False
    if not is_socket:
        return (f"{where}: {path} is not an SSH agent socket; pulumi-command would fail every remote command "
                "before dialing a host: start the agent, unset SSH_AUTH_SOCK, or set pgha:ssh.agent_socket_path")
    return None


class SshTarget(Target):
    """Places services on hosts over SSH; every step is a remote command that is safe to re-run."""

    kind = "ssh"

    def __init__(self, cfg: ClusterConfig, private_key: pulumi.Input[str]) -> None:
        super().__init__(cfg)
        if cfg.ssh is None:
            raise ValueError("ssh: settings are required for the ssh target")
        self.settings = cfg.ssh
        self.private_key = private_key

    def connection(self, host: Host) -> command.remote.ConnectionArgs:
        """How to reach `host`; the key stays a secret Output. Without `ssh.agent_socket_path` pulumi-command
        also offers the keys of the agent at SSH_AUTH_SOCK, when that is set (see agent_problem)."""
        return command.remote.ConnectionArgs(
            host=str(host.address),
            port=self.settings.port,
            user=self.settings.user,
            private_key=pulumi.Output.secret(self.private_key),
            agent_socket_path=self.settings.agent_socket_path,
            dial_error_limit=20,
        )

    def _shell(self, script_via_stdin: bool = True, *args: str) -> str:
        sudo = "" if self.settings.user == "root" else "sudo -n "
        return " ".join([f"{sudo}bash -s" if script_via_stdin else f"{sudo}bash -c", *args])

    def prepare(self, parent: pulumi.Resource) -> None:
        # Hosts exist already; each service's first step installs what it needs.
        return None

    def storage(self, name: str, path: str, owner: str, parent: pulumi.Resource) -> Storage:
        # A shared filesystem mounted at `path` on every user of it (see README); each service's
        # converge step checks the directory.
        return Storage(name=name, path=path, owner=owner, resource=None)

    def _place(self, name: str, spec: ServiceSpec, parent: pulumi.Resource) -> Placement:
        conn = self.connection(spec.host)
        install = command.remote.Command(
            f"{name}-install",
            connection=conn,
            create=self._shell(),
            stdin=install_script(spec.packages),
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=list(spec.depends_on)),
        )
        contents = pulumi.Output.all(*[f.content for f in spec.files])
        adopt = self.cfg.adopt_existing_data
        script = contents.apply(lambda values: converge_script(spec, [str(v) for v in values], adopt))
        if any(f.secret for f in spec.files):
            script = pulumi.Output.secret(script)
        converge = command.remote.Command(
            f"{name}-service",
            connection=conn,
            # The script is told which it is: only a create (a new deployment on this host) checks for data
            # left in the data directories.
            create=self._shell(True, "create"),
            update=self._shell(True, "update"),
            stdin=script,
            delete=f"{self._shell(False)} {shlex.quote(delete_script(spec, self.settings.purge_data_on_destroy))}",
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(
                parent=parent,
                depends_on=[install],
                additional_secret_outputs=["stdout", "stderr"],
                delete_before_replace=True,
            ),
        )
        units = tuple(File(f"{UNIT_DIR}/{unit_name(p)}.service", render_unit(spec, p)) for p in spec.processes
                      if not p.host_service)
        return Placement(ready=converge, published={}, files=(*spec.files, *units))

    def run_step(self, name: str, host: Host, script: str, depends_on: list[pulumi.Resource],
                 parent: pulumi.Resource, triggers: list[str] | None = None) -> pulumi.Resource:
        return command.remote.Command(
            name,
            connection=self.connection(host),
            create=self._shell(),
            stdin=script,
            triggers=triggers,
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on),
        )

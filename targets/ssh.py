"""SSH target: services on bare-metal Debian hosts, installed and converged by remote commands."""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_command as command

from catalog.roles import HOST_EXTRA_PACKAGES, POSTGRES
from config.host_keys import pin
from config.models import ClusterConfig, Host
from operations import packages as packages_op
from render.firewall import render_firewall, render_firewall_unit
from render.paths import FIREWALL_RULESET
from render.shell import rest_url
from targets import firewall
from targets.base import File, Placement, Process, ServiceSpec, Storage, Target, generation_triggers
from targets.converge import Control, converge_output, shared_owner, write_file

# Packaged units that would fight ours for the same ports and data: masked while pgha owns the host.
PACKAGED_UNITS = ("etcd", "patroni", "postgresql", "haproxy", "keepalived")
UNIT_DIR = "/etc/systemd/system"
ADMIN_FROM_EMPTY = ("pgha:firewall.admin_from is empty: the hosts' firewalls drop this machine's requests to "
                    "Patroni's REST API, so a rolling change keeps the configured order (the leader may not be last) "
                    "and removing PostgreSQL nodes is refused; list the address this machine connects from")
SAME_PINS = "cat >/dev/null; echo 'pgha-upgrade: the pins are the same: nothing to check'"


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


def install_script(packages: tuple[str, ...], pins: Mapping[str, str] | None = None, owners: str = "") -> str:
    """Idempotent installation of what is missing (pinned ones at their version) that keeps Debian's packaged
    services from starting. A version change of what is installed is the packages step's (operations/packages.py).
    `owners` runs first: the users of shared directories created with the ids the other hosts gave them."""
    names = " ".join(packages)
    wanted = " ".join(shlex.quote(a) for a in packages_op.pinned(packages, pins or {}))
    return f"""set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
mkdir -p /etc/postgresql-common
grep -qs '^create_main_cluster = false' /etc/postgresql-common/createcluster.conf \\
  || printf 'create_main_cluster = false\\n' >> /etc/postgresql-common/createcluster.conf
{owners}{packages_op.NO_PACKAGED_STARTS.rstrip()}
installed=$(dpkg-query -W -f='${{db:Status-Status}}\n' {names} 2>/dev/null | grep -cx installed || true)
if [ "$installed" -ne {len(packages)} ]; then
  apt-get update -qq
  {packages_op.APT_INSTALL} {wanted}
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


class SystemdControl(Control):
    """Processes as systemd units: pgha's own units written by the converge script, OS services as they are."""

    def setup(self, spec: ServiceSpec) -> list[str]:
        parts = ["units_changed=0"]
        for process in spec.processes:
            if process.host_service:
                continue
            unit = f"{UNIT_DIR}/{unit_name(process)}.service"
            parts.append(write_file(unit, render_unit(spec, process), "0644", "root", flag="units_changed"))
        parts.append('if [ "$units_changed" = 1 ]; then systemctl daemon-reload; fi')
        return parts

    def running(self, process: Process) -> str:
        return f"systemctl is-active -q {unit_name(process)}"

    def act(self, process: Process, action: str) -> str:
        return f"systemctl {action} {unit_name(process)}"

    def start(self, spec: ServiceSpec) -> list[str]:
        return [
            f"if ! systemctl is-active -q {unit}; then systemctl enable -q --now {unit}; echo \"{unit}: started\"; fi\n"
            f"systemctl enable -q {unit}"
            for unit in (unit_name(p) for p in spec.processes)
        ]


def delete_script(spec: ServiceSpec, purge_data: bool) -> str:
    """Stop and disable the service, remove its units and files; data only when purging."""
    parts = ["set -u", *filter(None, [spec.before_stop])]
    for process in spec.processes:
        if process.host_service:
            continue
        unit = unit_name(process)
        parts.append(f"systemctl disable --now {unit} 2>/dev/null || true")
        parts.append(f"rm -f {UNIT_DIR}/{unit}.service")
    parts.append("systemctl daemon-reload")
    parts += filter(None, [spec.after_stop])
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
    control = SystemdControl()

    def __init__(self, cfg: ClusterConfig, private_key: pulumi.Input[str],
                 known_hosts: tuple[str, str] | None = None) -> None:
        super().__init__(cfg)
        if cfg.ssh is None:
            raise ValueError("ssh: settings are required for the ssh target")
        self.settings = cfg.ssh
        self.private_key = private_key
        # Address -> the host key every command there checks: ssh.host_keys, then `known_hosts` ((path, text)
        # of ssh.known_hosts_file, read by the program).
        self.known_hosts = known_hosts
        self.host_keys = {address: key.line for address, key in cfg.pinned_host_keys(known_hosts).items()}
        self._gate_steps: list[pulumi.Resource] | None = None
        # (placement name, host, its firewall step's triggers, its parent) of every service whose host has the
        # firewall: each gets its step at the end of the deployment (settle), beside its other commands.
        self._guarded: list[tuple[str, Host, list[str] | None, pulumi.Resource]] = []

    def host_key(self, host: Host) -> str:
        """The key `host` must show; a host the stack no longer lists (its leave step runs there) needs one too."""
        address = str(host.address)
        if address not in self.host_keys:
            inline = {str(a): k for a, k in self.settings.host_keys.items()}
            try:
                pinned = pin([(host.name, address)], self.settings.port, inline, self.known_hosts)
            except ValueError as error:
                raise ValueError(f"pgha:{error} ({host.name} leaves the stack: its leave step runs there, so keep "
                                 "its key until it has left)") from None
            self.host_keys[address] = pinned[address].line
        return self.host_keys[address]

    def connection(self, host: Host) -> command.remote.ConnectionArgs:
        """How to reach `host`; the key stays a secret Output. Without `ssh.agent_socket_path` pulumi-command
        also offers the keys of the agent at SSH_AUTH_SOCK, when that is set (see agent_problem). The host must
        prove it holds the pinned host key: pulumi-command asks it for exactly that key's type and refuses any
        other key ("ssh: handshake failed: ssh: host key mismatch") before anything is sent."""
        return command.remote.ConnectionArgs(
            host=str(host.address),
            port=self.settings.port,
            user=self.settings.user,
            private_key=pulumi.Output.secret(self.private_key),
            agent_socket_path=self.settings.agent_socket_path,
            host_key=self.host_key(host),
            dial_error_limit=20,
        )

    def _shell(self, script_via_stdin: bool = True, *args: str) -> str:
        sudo = "" if self.settings.user == "root" else "sudo -n "
        return " ".join([f"{sudo}bash -s" if script_via_stdin else f"{sudo}bash -c", *args])

    def prepare(self, parent: pulumi.Resource) -> None:
        # Hosts exist already; each service's first step installs what it needs.
        fw = self.cfg.firewall_settings
        if fw is not None and fw.enabled and not fw.admin_from:
            pulumi.log.warn(ADMIN_FROM_EMPTY, parent)

    def storage(self, name: str, path: str, owner: str, parent: pulumi.Resource) -> Storage:
        # A shared filesystem mounted at `path` on every user of it (see README); each service's
        # converge step checks the directory.
        return Storage(name=name, path=path, owner=owner, resource=None)

    def _place(self, name: str, spec: ServiceSpec, parent: pulumi.Resource) -> Placement:
        conn = self.connection(spec.host)
        # A raised host generation (the host rebuilt empty) replaces every command: they run as on a new host.
        rebuilt = generation_triggers(self.cfg, spec.host) or None
        guarded = self.guarded
        packages = self.packages(spec)
        install = command.remote.Command(
            f"{name}-install",
            connection=conn,
            create=self._shell(),
            stdin=install_script(packages, self.settings.pins(packages),
                                 "".join(shared_owner(spec.host.name, s) for s in spec.shared)),
            triggers=rebuilt,
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=list(spec.depends_on)),
        )
        # The host firewall, before anything of the service listens (render/firewall.py, targets/firewall.py).
        guard = [self._firewall(name, spec.host, conn, install, rebuilt, parent)] if guarded else []
        before = [
            command.remote.Command(
                f"{name}-{step.name}",
                connection=conn,
                create=self._shell(),
                stdin=step.script,
                triggers=rebuilt,
                add_previous_output_in_env=False,
                opts=pulumi.ResourceOptions(parent=parent, depends_on=[install, *guard],
                                            additional_secret_outputs=["stdout", "stderr"]),
            )
            for step in spec.before_converge
        ]
        pins = self.settings.pins(packages)
        if pins:
            # One host after the other (`after`), PostgreSQL hosts after every one's pre-check.
            gates = self._gates(parent) if spec.role == POSTGRES.name else []
            before.append(command.remote.Command(
                f"{name}-packages",
                connection=conn,
                create=self._shell(),
                stdin=packages_op.render_upgrade(spec, pins, self.control),
                triggers=rebuilt,
                add_previous_output_in_env=False,
                opts=pulumi.ResourceOptions(parent=parent, depends_on=[install, *guard, *spec.after, *gates]),
            ))
        adopt = self.cfg.adopt_existing_data
        script = converge_output(spec, self.control, _unclaimed(spec, adopt), adopt)
        converge = command.remote.Command(
            f"{name}-service",
            connection=conn,
            # The script is told which it is: only a create (a new deployment on this host) checks for data
            # left in the data directories.
            create=self._shell(True, "create"),
            update=self._shell(True, "update"),
            stdin=script,
            delete=f"{self._shell(False)} {shlex.quote(delete_script(spec, self.settings.purge_data_on_destroy))}",
            triggers=rebuilt,
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(
                parent=parent,
                depends_on=[install, *guard, *spec.after, *before],
                additional_secret_outputs=["stdout", "stderr"],
                delete_before_replace=True,
            ),
        )
        units = tuple(File(f"{UNIT_DIR}/{unit_name(p)}.service", render_unit(spec, p)) for p in spec.processes
                      if not p.host_service)
        walls = (File(FIREWALL_RULESET, render_firewall(self.cfg, spec.host.address), kind="nftables"),
                 File(firewall.UNIT_PATH, render_firewall_unit())) if guarded else ()
        return Placement(ready=converge, published={}, files=(*spec.files, *units, *walls))

    def _firewall(self, name: str, host: Host, conn: command.remote.ConnectionArgs, install: pulumi.Resource,
                  rebuilt: list[str] | None, parent: pulumi.Resource) -> pulumi.Resource:
        """The service's firewall step on its host: every service there loads the same ruleset (the union of
        the host's roles) and holds a claim on it; the delete of the last one removes it."""
        self._guarded.append((name, host, rebuilt, parent))
        return command.remote.Command(
            f"{name}-firewall",
            connection=conn,
            create=self._checked_shell(),
            stdin=firewall.firewall_script(self.cfg, host, name),
            delete=f"{self._shell(False)} {shlex.quote(firewall.removal_script(name))}",
            triggers=rebuilt,
            add_previous_output_in_env=False,
            # Its delete drops the claim the create made: a replacement must not run them the other way round.
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[install], delete_before_replace=True),
        )

    @property
    def guarded(self) -> bool:
        """Whether the hosts get the host firewall (pgha:firewall.enabled, the default)."""
        fw = self.cfg.firewall_settings
        return fw is not None and fw.enabled

    def packages(self, spec: ServiceSpec) -> tuple[str, ...]:
        """What `spec`'s host installs for it: its packages, and nftables for the host firewall."""
        return (*spec.packages, *HOST_EXTRA_PACKAGES) if self.guarded else spec.packages

    def _checked_shell(self) -> str:
        # The firewall steps check the connection they came through ($SSH_CONNECTION, which sudo would drop).
        return "bash -s" if self.settings.user == "root" else "sudo -n --preserve-env=SSH_CONNECTION bash -s"

    def settle(self, depends_on: list[pulumi.Resource], parent: pulumi.Resource) -> list[pulumi.Resource]:
        # Each host's ruleset loaded whole once every step has run: what left the stack is closed only now.
        return [command.remote.Command(
            f"{name}-firewall-exact",
            connection=self.connection(host),
            create=self._checked_shell(),
            stdin=firewall.exact_script(self.cfg, host),
            triggers=rebuilt,
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(parent=owner, depends_on=depends_on),
        ) for name, host, rebuilt, owner in self._guarded]

    def boot_facts(self, spec: ServiceSpec) -> dict[str, Any]:
        packages = self.packages(spec)
        return {"packages": sorted(packages), "pins": self.settings.pins(packages)}

    def _gates(self, parent: pulumi.Resource) -> list[pulumi.Resource]:
        """The pre-check on every PostgreSQL host (operations/packages.py), declared once; it runs again
        only when their pins change (its trigger), not when the check's settings do."""
        if self._gate_steps is None:
            pins = self.settings.pins(POSTGRES.packages)
            self._gate_steps = [command.remote.Command(
                f"{self.cfg.name}-{node.name}-packages-precheck",
                connection=self.connection(node),
                create=self._shell(),
                update=f"{self._shell(False)} {shlex.quote(SAME_PINS)}",
                stdin=packages_op.render_gate(self.cfg, pins),
                triggers=[" ".join(f"{n}={v}" for n, v in pins.items())],
                add_previous_output_in_env=False,
                opts=pulumi.ResourceOptions(parent=parent),
            ) for node in self.cfg.postgres.nodes]
        return self._gate_steps

    def primary_urls(self, nodes: list[Host]) -> list[str]:
        # The machine running the program asks each host's Patroni REST API directly.
        return [rest_url(str(n.address), self.cfg.patroni.rest_api_port, "/primary") for n in nodes]

    def retire(self, name: str, host: Host, script: str, processes: tuple[Process, ...],
               depends_on: list[pulumi.Resource], parent: pulumi.Resource) -> pulumi.Resource:
        units = [unit_name(p) for p in processes if not p.host_service]
        listed = " ".join(units)
        stop = f"systemctl stop {listed}\necho 'pgha-leave: stopped {listed}'\n"
        return self.run_step(name, host, f"{script.rstrip()}\n{stop}", depends_on, parent)

    def run_step(self, name: str, host: Host, script: pulumi.Input[str], depends_on: list[pulumi.Resource],
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

"""Docker target: every service is a container on one network of the local Docker engine."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from config.models import ClusterConfig, Host
from operations import upgrade
from render.guards import render_volume_guard
from render.shell import local_rest, rest_url
from targets import image
from targets.base import File, Placement, Process, ServiceSpec, Storage, Target, digest, generation_triggers
from targets.converge import Control, converge_output

ASSETS = Path(__file__).resolve().parent / "assets"
RUNNER = "/usr/local/bin/pgha-run"
CONVERGED = "/etc/pgha/converged"
PROCESSES = "/etc/pgha/processes"
# Host ports for the n-th service publishing the same container port: port + n * PUBLISH_STRIDE.
PUBLISH_STRIDE = 100
STOP_GRACE_S = 60
RUNNER_SCRIPT = (ASSETS / "pgha-run").read_text()



def _processes(spec: ServiceSpec) -> str:
    return "".join(f"{p.name}\t{p.user}\t{shlex.join(p.argv)}\n" for p in spec.processes)


class RunnerControl(Control):
    """Processes under the container's runner (targets/assets/pgha-run): it starts them once the converge
    step wrote the marker, and reloads or restarts one process on request, inside the same container."""

    def setup(self, spec: ServiceSpec) -> list[str]:
        return []

    def running(self, process: Process) -> str:
        return f"[ -e {CONVERGED} ]"

    def act(self, process: Process, action: str) -> str:
        if action == "reload":
            return f"{RUNNER} reload {process.name} {process.reload_signal}"
        return f"{RUNNER} restart {process.name}"

    def start(self, spec: ServiceSpec) -> list[str]:
        return [f'if [ ! -e {CONVERGED} ]; then touch {CONVERGED}; echo "processes: started"; fi']


def _absent(container: str) -> str:
    """A shell condition: no container named `container` (quoted) exists."""
    return f"! docker inspect {container} >/dev/null 2>&1"


def _stopped(container: str) -> str:
    """A shell condition: the container named `container` (quoted) exists and does not run."""
    return f"[ \"$(docker inspect -f '{{{{.State.Running}}}}' {container})\" != true ]"


def _exec_unless(container: str, *skips: tuple[str, str]) -> str:
    """Shell (a local command) that runs the script on its stdin with bash in `container` (quoted), unless one
    of `skips` (shell condition, message) holds: then it drains stdin and says that skip's message."""
    branches = [f"{'if' if i == 0 else 'elif'} {condition}; then cat >/dev/null; echo {shlex.quote(message)}"
                for i, (condition, message) in enumerate(skips)]
    return "; ".join([*branches, f"else exec docker exec -i {container} bash -s; fi"])


class DockerTarget(Target):
    """Places services as containers (named volumes, a health check, a restart policy) whose files a converge
    step writes and applies, as on hosts."""

    kind = "docker"
    control = RunnerControl()

    def __init__(self, cfg: ClusterConfig) -> None:
        super().__init__(cfg)
        self.settings = cfg.docker_settings
        self.network: docker.Network | None = None
        self.image: docker.Image | None = None
        self.upgrade_gate: pulumi.Resource | None = None
        self.image_tag = image.image_tag(self.settings.base_image, self.settings.image_revision)

    def _labels(self, role: str) -> list[docker.ContainerLabelArgs]:
        return [
            docker.ContainerLabelArgs(label="pgha.cluster", value=self.cfg.name),
            docker.ContainerLabelArgs(label="pgha.role", value=role),
        ]

    def prepare(self, parent: pulumi.Resource) -> None:
        name = self.cfg.name
        self.network = docker.Network(
            f"{name}-network",
            name=name,
            driver="bridge",
            # An explicit gateway: Docker may report one only later, and a state that gains it would
            # replace the network and every container on it (ipam_config is a ForceNew set).
            ipam_configs=[docker.NetworkIpamConfigArgs(subnet=str(self.settings.subnet),
                                                       gateway=str(self.settings.subnet.network_address + 1))],
            labels=[docker.NetworkLabelArgs(label="pgha.cluster", value=name)],
            opts=pulumi.ResourceOptions(parent=parent),
        )
        self.image = docker.Image(
            f"{name}-image",
            image_name=self.image_tag,
            build=docker.DockerBuildArgs(
                context=image.CONTEXT,
                dockerfile=image.DOCKERFILE,
                args=image.build_args(self.settings.base_image, self.settings.image_revision),
                # The classic builder: BuildKit (the provider's default) resolves FROM in a registry,
                # and the base image here may exist only locally (scripts/base-image.sh).
                builder_version=docker.BuilderVersion.BUILDER_V1,
            ),
            skip_push=True,
            opts=pulumi.ResourceOptions(parent=parent),
        )
        # A new image replaces the containers: first the pre-checks, on the running cluster's leader
        # (operations/upgrade.py); nothing is replaced when they refuse. It runs again for every new image.
        leaders = " ".join(shlex.quote(self.container_name(n)) for n in self.cfg.postgres.nodes)
        api = self.cfg.patroni.rest_api_port
        self.upgrade_gate = command.local.Command(
            f"{name}-upgrade-precheck",
            create=(f"found=0; for c in {leaders}; do docker inspect \"$c\" >/dev/null 2>&1 || continue; found=1; "
                    f"if docker exec \"$c\" bash -c {shlex.quote(local_rest(api, '/primary', '-sf -o /dev/null'))}; "
                    "then exec docker exec -i \"$c\" bash -s; fi; done; "
                    "cat >/dev/null; if [ $found = 0 ]; then echo 'pgha-upgrade: no cluster runs yet: nothing to "
                    "check'; exit 0; fi; echo 'pgha-upgrade: refused: no PostgreSQL node answers as the leader' >&2; "
                    "exit 1"),
            # Only a new image (a replacement: create) checks; a change of the checks' settings alone does not.
            update="cat >/dev/null; echo 'pgha-upgrade: the image is the same: nothing to check'",
            stdin=upgrade.render_precheck(self.cfg),
            triggers=[self.image_tag],
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[self.image]),
        )

    def _volume(self, name: str, role: str, parent: pulumi.Resource, generation: int = 0) -> docker.Volume:
        # A host rebuilt (its generation raised) gets a volume of its own: the one it had is lost, and
        # Docker would otherwise create an unlabeled one under the old name.
        real = f"{name}-g{generation}" if generation else name
        # pulumi-docker adopts an existing volume of the same name silently: a guard runs first, once.
        guard = command.local.Command(
            f"{name}-unclaimed",
            create=render_volume_guard(real, self.cfg.name, self.cfg.adopt_existing_data),
            update=":",  # only a new deployment (the guard's create) asks; later changes never do
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(parent=parent),
        )
        return docker.Volume(
            name,
            name=real,
            labels=[
                docker.VolumeLabelArgs(label="pgha.cluster", value=self.cfg.name),
                docker.VolumeLabelArgs(label="pgha.role", value=role),
            ],
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[guard]),
        )

    def storage(self, name: str, path: str, owner: str, parent: pulumi.Resource) -> Storage:
        volume = self._volume(name, "storage", parent)
        return Storage(name=name, path=path, owner=owner, resource=volume)

    def _publish(self, port: int, host: Host) -> int:
        # By the host's place in its configured list, not by the order of placement (a rolling order would
        # otherwise move the published ports, which replaces containers).
        group = next(hosts for hosts in self.cfg.roles().values() if host in hosts)
        return port + group.index(host) * PUBLISH_STRIDE

    def _place(self, name: str, spec: ServiceSpec, parent: pulumi.Resource) -> Placement:
        if self.network is None or self.image is None:
            raise RuntimeError("DockerTarget.prepare() must run before place()")
        mounts = []
        for data in spec.data_dirs:
            volume = self._volume(f"{name}-{data.name}", spec.role, parent, self.cfg.generation(spec.host))
            mounts.append(docker.ContainerVolumeArgs(volume_name=volume.name, container_path=data.path))
        for shared in spec.shared:
            if not isinstance(shared.resource, docker.Volume):
                raise TypeError(f"{name}: shared storage '{shared.name}' was not declared by this target")
            mounts.append(docker.ContainerVolumeArgs(volume_name=shared.resource.name, container_path=shared.path))
        # Only what the container starts with is uploaded (uploads are ForceNew: a changed upload recreates
        # the container). The runner as content, not a source path: another checkout path does not replace
        # the containers (the provider reads `source` once and keeps the path in its state). The service's
        # own files arrive by the converge step below, so a configuration change never recreates a container.
        boot = (File(RUNNER, RUNNER_SCRIPT, mode="0755"), File(PROCESSES, _processes(spec)))
        uploads = [docker.ContainerUploadArgs(file=f.path, content=f.content, permissions=f.mode) for f in boot]
        address = str(self.settings.publish_address)
        published = {port: (address, self._publish(port, spec.host)) for port in spec.published_ports}
        where = shlex.quote(self.container_name(spec.host))
        # Members of a group are replaced one after another (a new image): each container waits for the one
        # before to be back and healthy, and a PostgreSQL node hands over first when it leads.
        # Every container waits for the upgrade's pre-checks: a refused upgrade replaces none.
        first = [*spec.depends_on, *spec.after, *filter(None, [self.upgrade_gate])]
        if spec.handover is not None:
            first.append(command.local.Command(
                f"{name}-handover",
                create=_exec_unless(
                    where, (_absent(where), "pgha-handover: a new container"),
                    (f"[ \"$(docker inspect -f '{{{{.Config.Image}}}}' {where})\" = {shlex.quote(self.image_tag)} ]",
                     f"pgha-handover: already on {self.image_tag}")),
                # It runs before a replacement only (a new image: new triggers, so a new step). A changed
                # script alone (e.g. HAProxy's check timing, which its drain waits for) is taken for the next one.
                update="cat >/dev/null; echo 'pgha-handover: the script changed; it runs before the next replacement'",
                stdin=spec.handover,
                triggers=[self.image_tag, *generation_triggers(self.cfg, spec.host)],
                add_previous_output_in_env=False,
                opts=pulumi.ResourceOptions(parent=parent, depends_on=first),
            ))
        container = docker.Container(
            name,
            name=self.container_name(spec.host),
            image=self.image.image_name,
            hostname=spec.host.name,
            command=[RUNNER],
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(
                    name=self.network.name, ipv4_address=str(spec.host.address), aliases=[spec.host.name]
                )
            ],
            volumes=mounts,
            uploads=uploads,
            ports=[
                docker.ContainerPortArgs(internal=port, external=host_port, ip=address)
                for port, (address, host_port) in published.items()
            ],
            capabilities=docker.ContainerCapabilitiesArgs(adds=list(spec.capabilities)) if spec.capabilities else None,
            healthcheck=docker.ContainerHealthcheckArgs(
                # Go's canonical form, as the provider reads them back: "120s" would read back as "2m0s" and
                # show an update after every refresh.
                tests=["CMD", *spec.health], interval="2s", timeout="5s", retries=3, start_period="2m0s"
            )
            if spec.health
            else None,
            restart="unless-stopped",
            destroy_grace_seconds=STOP_GRACE_S,
            # A raised host generation (a host rebuilt) is a new label: a new container, as on a new host.
            labels=self._labels(spec.role) + [docker.ContainerLabelArgs(label="pgha.generation", value=g)
                                              for g in generation_triggers(self.cfg, spec.host)],
            # Healthy only once the converge step delivered the files: that step waits, not the provider.
            wait=False,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=first),
        )
        # Not after this container: it may wait in a rolling chain for other nodes' converges, whose steps may
        # wait for this one (the leader's passwords step). A step runs in the container there is, if any.
        before = [
            command.local.Command(
                f"{name}-{step.name}",
                # A container that does not run is a host that is down: the step is for the nodes that run (the
                # leader applies, the others wait). Its converge then needs it running, or it is replaced.
                create=_exec_unless(where, (_absent(where),
                                            f"pgha: no container {self.container_name(spec.host)} yet: a new node"),
                                    (_stopped(where), f"pgha: the container {self.container_name(spec.host)} does "
                                                      "not run (its host is down): nothing to do there")),
                stdin=step.script,
                add_previous_output_in_env=False,
                opts=pulumi.ResourceOptions(parent=parent, depends_on=list(spec.depends_on),
                                            additional_secret_outputs=["stdout", "stderr"]),
            )
            for step in spec.before_converge
        ]
        script = converge_output(spec, self.control, [], self.cfg.adopt_existing_data)
        converge = command.local.Command(
            f"{name}-service",
            create=f"docker exec -i {where} bash -s create",
            update=f"docker exec -i {where} bash -s update",
            stdin=script,
            # A new container (a new image, or a ForceNew setting) starts empty: the step runs again for it.
            triggers=[container.id],
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(
                parent=parent,
                depends_on=[container, *spec.depends_on, *spec.after, *before],
                additional_secret_outputs=["stdout", "stderr"],
            ),
        )
        return Placement(ready=converge, published=published, files=(*spec.files, *boot))

    def boot_facts(self, spec: ServiceSpec) -> dict[str, Any]:
        # What recreates the container: its image, and what it boots with (runner, processes, ports, rights).
        boot = "\n".join([RUNNER_SCRIPT, _processes(spec), str(spec.host.address), repr(spec.published_ports),
                          repr(spec.capabilities), repr(spec.health), repr([d.path for d in spec.data_dirs])])
        return {"image": self.image_tag, "boot": digest(boot)}

    def primary_urls(self, nodes: list[Host]) -> list[str]:
        # The REST API of each PostgreSQL node is published on this machine (the one running the program).
        return [rest_url(str(self.settings.publish_address), self._publish(self.cfg.patroni.rest_api_port, n),
                         "/primary") for n in nodes]

    def container_name(self, host: Host) -> str:
        """The container that stands for `host`."""
        return f"{self.cfg.name}-{host.name}"

    def run_step(self, name: str, host: Host, script: pulumi.Input[str], depends_on: list[pulumi.Resource],
                 parent: pulumi.Resource, triggers: list[str] | None = None) -> pulumi.Resource:
        # The engine's machine runs `docker exec` against the same engine the provider uses (DOCKER_HOST).
        return command.local.Command(
            name,
            create=f"docker exec -i {shlex.quote(self.container_name(host))} bash -s",
            stdin=script,
            triggers=triggers,
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on),
        )

    def retire(self, name: str, host: Host, script: str, processes: tuple[Process, ...],
               depends_on: list[pulumi.Resource], parent: pulumi.Resource) -> pulumi.Resource:
        # A process that ends makes its container end, and the restart policy starts it again: the container
        # itself stops (its runner ends every process with a SIGTERM), and an explicit stop stays stopped.
        where = shlex.quote(self.container_name(host))
        return command.local.Command(
            name,
            create=(f"docker exec -i {where} bash -s && "
                    f"if [ \"$(docker inspect -f '{{{{.State.Running}}}}' {where})\" = true ]; then "
                    f"docker stop -t 120 {where} >/dev/null && echo 'stopped the container {where}'; fi"),
            stdin=script,
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on),
        )

    def client_addresses(self) -> list[str]:
        publish = self.settings.publish_address
        return [] if publish.is_unspecified else [str(publish)]

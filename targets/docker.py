"""Docker target: every service is a container on one network of the local Docker engine."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from config.models import ClusterConfig, Host
from render.guards import render_volume_guard
from targets import image
from targets.base import File, Placement, Process, ServiceSpec, Storage, Target, digest
from targets.converge import Control, converge_script

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


class DockerTarget(Target):
    """Places services as containers (named volumes, a health check, a restart policy) whose files a converge
    step writes and applies, as on hosts."""

    kind = "docker"

    def __init__(self, cfg: ClusterConfig) -> None:
        super().__init__(cfg)
        self.settings = cfg.docker_settings
        self._published_count: dict[int, int] = {}
        self.network: docker.Network | None = None
        self.image: docker.Image | None = None

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
            image_name=image.image_tag(self.settings.base_image),
            build=docker.DockerBuildArgs(
                context=image.CONTEXT,
                dockerfile=image.DOCKERFILE,
                args=image.build_args(self.settings.base_image),
                # The classic builder: BuildKit (the provider's default) resolves FROM in a registry,
                # and the base image here may exist only locally (scripts/base-image.sh).
                builder_version=docker.BuilderVersion.BUILDER_V1,
            ),
            skip_push=True,
            opts=pulumi.ResourceOptions(parent=parent),
        )

    def _volume(self, name: str, role: str, parent: pulumi.Resource) -> docker.Volume:
        # pulumi-docker adopts an existing volume of the same name silently: a guard runs first, once.
        guard = command.local.Command(
            f"{name}-unclaimed",
            create=render_volume_guard(name, self.cfg.name, self.cfg.adopt_existing_data),
            update=":",  # only a new deployment (the guard's create) asks; later changes never do
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(parent=parent),
        )
        return docker.Volume(
            name,
            name=name,
            labels=[
                docker.VolumeLabelArgs(label="pgha.cluster", value=self.cfg.name),
                docker.VolumeLabelArgs(label="pgha.role", value=role),
            ],
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[guard]),
        )

    def storage(self, name: str, path: str, owner: str, parent: pulumi.Resource) -> Storage:
        volume = self._volume(name, "storage", parent)
        return Storage(name=name, path=path, owner=owner, resource=volume)

    def _publish(self, port: int) -> int:
        index = self._published_count.get(port, 0)
        self._published_count[port] = index + 1
        return port + index * PUBLISH_STRIDE

    def _place(self, name: str, spec: ServiceSpec, parent: pulumi.Resource) -> Placement:
        if self.network is None or self.image is None:
            raise RuntimeError("DockerTarget.prepare() must run before place()")
        mounts = []
        for data in spec.data_dirs:
            volume = self._volume(f"{name}-{data.name}", spec.role, parent)
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
        published = {port: (str(self.settings.publish_address), self._publish(port)) for port in spec.published_ports}
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
            labels=self._labels(spec.role),
            # Healthy only once the converge step delivered the files: that step waits, not the provider.
            wait=False,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=list(spec.depends_on)),
        )
        where = shlex.quote(self.container_name(spec.host))
        before = [
            command.local.Command(
                f"{name}-{step.name}",
                create=f"docker exec -i {where} bash -s",
                stdin=step.script,
                add_previous_output_in_env=False,
                opts=pulumi.ResourceOptions(parent=parent, depends_on=[container, *spec.depends_on],
                                            additional_secret_outputs=["stdout", "stderr"]),
            )
            for step in spec.before_converge
        ]
        contents = pulumi.Output.all(*[f.content for f in spec.files])
        script = contents.apply(lambda values: converge_script(spec, [str(v) for v in values], RunnerControl()))
        if any(f.secret for f in spec.files):
            script = pulumi.Output.secret(script)
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
        return {"image": image.image_tag(self.settings.base_image), "boot": digest(boot)}

    def container_name(self, host: Host) -> str:
        """The container that stands for `host`."""
        return f"{self.cfg.name}-{host.name}"

    def run_step(self, name: str, host: Host, script: str, depends_on: list[pulumi.Resource],
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

    def client_addresses(self) -> list[str]:
        publish = self.settings.publish_address
        return [] if publish.is_unspecified else [str(publish)]

"""``RealMocks``: a ``pulumi.runtime.Mocks`` that creates every declared resource for real.

The Python SDK's mock monitor calls ``new_resource`` once per registered resource, from worker
threads (independent resources are registered concurrently, as the engine would), with the
inputs in engine shape. ``RealMocks`` dispatches on the type token, creates the Docker object,
random value or key and certificate (``certs.py``), and returns the provider-like output state.
Unknown types and unknown input keys raise, so a deployment never silently differs from what the program declared.

Remote commands (``command:remote:Command``) run over real SSH (``ssh.py``). A second deployment
of the same program can follow a first one (``previous``): generated values and remote commands
whose inputs did not change keep their recorded state, as the engine would keep them; changed
commands run their update. Docker resources have no such second run.
"""

from __future__ import annotations

import functools
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import docker
import pulumi
from docker import errors as docker_errors
from pulumi.runtime import MockCallArgs, MockResourceArgs

from . import certs, randoms
from .containers import create_container
from .docker_objects import CreateContext, build_image, create_network, create_volume
from .ssh import REMOTE_COMMAND, RemoteCommands
from .values import RUN_LABEL, HarnessError, UnsupportedInputError, check_keys, is_secret, make_secret, unwrap

Handler = Callable[[str, Mapping[str, Any]], tuple[str, dict[str, Any]]]
#: Providers whose resources are generated values (kept while their inputs stay), not docker objects.
GENERATED = ("random:", "tls:")
Creator = Callable[[str, Mapping[str, Any], CreateContext], tuple[str, dict[str, Any]]]
#: Removal order in destroy(): containers first, images last.
_KIND_ORDER = ("container", "volume", "network", "image")


class CreatedResource(NamedTuple):
    """One entry of the creation log. ``docker_id`` is None for random values."""

    type: str
    name: str
    docker_id: str | None
    kind: str  # "container", "volume", "network", "image" or "random" (any generated value, random or tls)
    detail: dict[str, Any]


class ResourceCreationError(HarnessError):
    """Creating one resource failed; the message names the type, the logical name and the cause."""

    def __init__(self, typ: str, name: str, cause: BaseException) -> None:
        super().__init__(f"creating {typ} '{name}' failed: {cause}")
        self.typ, self.name, self.cause = typ, name, cause


def docker_client() -> docker.DockerClient:
    """A client for the local engine (DOCKER_HOST etc. honored), with a timeout long enough for builds."""
    return docker.from_env(timeout=900)


class RealMocks(pulumi.runtime.Mocks):
    """Creates networks, volumes, images, containers and random values for real.

    Every container, network and volume carries the label ``pgha.e2e.run=<run_id>`` (plus
    ``extra_labels``) next to the declared ones; images are left unlabeled because they are kept
    as a build cache. ``created`` is the creation log, in the order objects came into existence.
    """

    def __init__(self, run_id: str | None = None, workdir: Path | None = None,
                 extra_labels: Mapping[str, str] | None = None, previous: RealMocks | None = None) -> None:
        self.run_id = run_id or time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        self.labels = {RUN_LABEL: self.run_id, **(extra_labels or {})}
        self.workdir = Path(workdir or os.getcwd()).resolve()
        self.created: list[CreatedResource] = []
        self.errors: list[ResourceCreationError] = []
        self._lock = threading.Condition()
        self._inflight = 0
        self._closed = False
        self._cancel = threading.Event()
        self._local = threading.local()
        self.previous = previous
        #: Remote commands: recorded inputs and state (taken over from ``previous``) and the runs made.
        self.remote: RemoteCommands = RemoteCommands.following(previous.remote if previous else None)
        #: Generated values (random, tls) by name: (type, unwrapped inputs, id, state), kept while their inputs stay.
        self.randoms: dict[str, tuple[str, Any, str, dict[str, Any]]] = dict(previous.randoms) if previous else {}
        docker_creators = {
            "docker:index/network:Network": create_network,
            "docker:index/volume:Volume": create_volume,
            "docker:index/image:Image": build_image,
            "docker:index/container:Container": create_container,
        }
        self._handlers: dict[str, Handler] = {
            typ: functools.partial(self._create_docker, typ, creator) for typ, creator in docker_creators.items()}
        self._handlers.update({
            "random:index/randomPassword:RandomPassword": _random_password,
            "random:index/randomString:RandomString": _random_string,
            "random:index/randomId:RandomId": _random_id,
            "tls:index/privateKey:PrivateKey": _generated(certs.private_key),
            "tls:index/selfSignedCert:SelfSignedCert": _generated(certs.self_signed_cert),
            "tls:index/certRequest:CertRequest": _generated(certs.cert_request),
            "tls:index/locallySignedCert:LocallySignedCert": _generated(certs.locally_signed_cert),
            REMOTE_COMMAND: self.remote.register,
        })

    # -- Mocks interface -------------------------------------------------------------------
    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        """Create the resource for real and return ``(id, output state)``."""
        if args.resource_id:
            raise HarnessError(f"{args.typ} '{args.name}': reading or importing existing resources "
                               f"(id {args.resource_id!r}) is not supported by the e2e harness")
        if args.custom is False:  # ComponentResource (e.g. pgha:index:*): nothing to create
            return "", {}
        if args.typ.startswith("pulumi:providers:"):
            return self._provider(args)
        if args.typ not in self._handlers:
            error = ResourceCreationError(args.typ, args.name, UnsupportedInputError(
                f"resource type {args.typ} is not supported by the e2e harness; "
                "add a handler in tests/e2e/harness/real_mocks.py"))
            with self._lock:
                self.errors.append(error)
            raise error
        if self.previous is not None and args.typ.startswith("docker:"):
            error = ResourceCreationError(args.typ, args.name, UnsupportedInputError(
                "a deployment following a previous one (previous=...) cannot update docker resources"))
            with self._lock:
                self.errors.append(error)
            raise error
        with self._tracked(args.typ, args.name):
            try:
                inputs = unwrap(args.inputs)
                kept = self.randoms.get(args.name)
                if args.typ.startswith(GENERATED) and kept and kept[:2] == (args.typ, inputs):
                    return kept[2], dict(kept[3])
                handler = self._handlers[args.typ]
                # Remote commands get the wrapped inputs: their recorded state keeps secrets marked.
                resource_id, state = handler(args.name, args.inputs if args.typ == REMOTE_COMMAND else inputs)
            except Exception as exc:
                error = ResourceCreationError(args.typ, args.name, exc)
                with self._lock:
                    self.errors.append(error)
                raise error from exc
            if args.typ.startswith(GENERATED):
                self._append(CreatedResource(args.typ, args.name, None, "random", {}))
                with self._lock:
                    self.randoms[args.name] = (args.typ, inputs, resource_id, state)
            # An input given as a secret stays secret in the state, as the engine would keep it.
            for key, value in args.inputs.items():
                if is_secret(value) and key in state:
                    state[key] = make_secret(state[key])
            return resource_id, state

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        """Provider functions (invokes) are not implemented: refuse every one."""
        raise UnsupportedInputError(f"function {args.token} is not supported by the e2e harness")

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Refuse every further creation and cancel running health waits (destroy() does this too)."""
        with self._lock:
            self._closed = True
            self._cancel.set()

    def destroy(self, remove_images: bool = False, timeout_s: float = 900.0,
                remote: bool = True) -> list[CreatedResource]:
        """Remove what this run created: containers (forced), volumes, networks, images if asked.

        With ``remote``, first run the ``delete`` of every recorded remote command, in reverse
        creation order (a failing one stops the destroy with its error, as ``pulumi destroy``).
        New creations are refused from now on; creations still running are cancelled where
        possible (health waits) and awaited up to ``timeout_s``. Returns what was removed and
        raises ``HarnessError`` listing every object that could not be removed.
        """
        deadline = time.monotonic() + timeout_s
        self.close()
        with self._lock:
            while self._inflight and self._lock.wait(max(0.0, deadline - time.monotonic())):
                pass
            if self._inflight:
                raise HarnessError(f"destroy: {self._inflight} creation(s) still running after {timeout_s}s")
            pending = list(self.created)
        if remote:
            self.remote.destroy()
        order = {kind: position for position, kind in enumerate(_KIND_ORDER)}
        ranked = sorted(((order.get(item.kind, -1), -index, item) for index, item in enumerate(pending)),
                        key=lambda entry: entry[:2])
        client, removed, failures = docker_client(), [], []
        for _, _, item in ranked:
            if item.kind == "image" and not remove_images:
                continue
            try:
                _remove(client, item)
            except docker_errors.NotFound:
                pass
            except docker_errors.APIError as exc:
                failures.append(f"{item.kind} {item.detail.get('name')} ({item.docker_id}): {exc.explanation}")
                continue
            removed.append(item)
            with self._lock:
                self.created.remove(item)
        if failures:
            raise HarnessError("destroy could not remove:\n  " + "\n  ".join(failures))
        return removed

    # -- internals ---------------------------------------------------------------------------
    @contextmanager
    def _tracked(self, typ: str, name: str) -> Iterator[None]:
        with self._lock:
            if self._closed:
                raise HarnessError(f"{typ} '{name}': the deployment is being torn down")
            self._inflight += 1
        try:
            yield
        finally:
            with self._lock:
                self._inflight -= 1
                self._lock.notify_all()

    def _append(self, item: CreatedResource) -> None:
        with self._lock:
            self.created.append(item)

    def _client(self) -> docker.DockerClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = docker_client()
        return client

    def _create_docker(self, typ: str, creator: Creator, name: str,
                       inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        def record(kind: str, docker_id: str, detail: dict[str, Any]) -> None:
            self._append(CreatedResource(typ, name, docker_id, kind, detail))

        return creator(name, inputs, CreateContext(self._client(), dict(self.labels), self.workdir,
                                                   self._cancel, record))

    def _provider(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        """Explicit providers are no-ops, except a docker provider aimed at another engine."""
        if args.typ == "pulumi:providers:docker":
            check_keys(f"docker.Provider '{args.name}'", unwrap(args.inputs), ("version",))
        return f"{args.name}-provider", dict(args.inputs)


def _generated(make: Callable[[Mapping[str, Any], str], dict[str, Any]]) -> Handler:
    """A handler for a generated value whose id is its name (pulumi-tls)."""
    def handler(name: str, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        return name, make(inputs, name)
    return handler


def _random_password(name: str, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return "none", randoms.password_state(inputs, f"random.RandomPassword '{name}'")


def _random_string(name: str, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    state = randoms.string_state(inputs, f"random.RandomString '{name}'")
    return state["result"], state


def _random_id(name: str, inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return randoms.random_id(inputs, f"random.RandomId '{name}'")


def _remove(client: docker.DockerClient, item: CreatedResource) -> None:
    if item.kind == "container":
        client.api.remove_container(item.docker_id, force=True, v=bool(item.detail.get("removeVolumes", True)))
    elif item.kind == "volume":
        client.api.remove_volume(item.docker_id, force=True)
    elif item.kind == "network":
        client.api.remove_network(item.docker_id)
    elif item.kind == "image":
        client.api.remove_image(item.detail["name"])


def cleanup_leftovers(label: str = RUN_LABEL, exclude_run: str | None = None) -> list[str]:
    """Remove every container, network and volume carrying ``label`` ("key" or "key=value").

    Meant for objects of earlier, interrupted runs (an engine restarted on the same data root
    keeps them). ``exclude_run`` spares one run id. Beware: with the bare key this also removes
    objects of a harness run that is going on right now in another process. Returns descriptions
    of what was removed.
    """
    client = docker_client()
    filters = {"label": [label]}

    def spared(labels: Mapping[str, str] | None) -> bool:
        return exclude_run is not None and (labels or {}).get(RUN_LABEL) == exclude_run

    removed: list[str] = []
    for container in client.api.containers(all=True, filters=filters):
        if not spared(container.get("Labels")):
            client.api.remove_container(container["Id"], force=True, v=True)
            removed.append(f"container {container['Names'][0].lstrip('/')}")
    for volume in client.api.volumes(filters=filters).get("Volumes") or []:
        if not spared(volume.get("Labels")):
            client.api.remove_volume(volume["Name"], force=True)
            removed.append(f"volume {volume['Name']}")
    for network in client.api.networks(filters=filters):
        if not spared(network.get("Labels")):
            client.api.remove_network(network["Id"])
            removed.append(f"network {network['Name']}")
    return removed

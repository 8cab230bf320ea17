"""Run the pgha program under Pulumi's mock runtime and record the resource graph it declares."""

from __future__ import annotations

import os
import secrets
import string
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pulumi
from pulumi.runtime import mocks as pmocks
from pulumi.runtime import settings as psettings

import targets.base as target_base
from local_engine.stack_file import secure_keys as stack_file_secure_keys
from local_engine.stack_file import stack_config as stack_file_config

LOOPBACK = {"127.0.0.1", "localhost", "::1"}

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "pgha"
SECRET_SIG = "4dabf18193072939515e22adb298388d"
SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270"


def is_secret(value: Any) -> bool:
    """True for a value the engine would store as a secret."""
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE


def reveal(value: Any) -> Any:
    """The value with every secret wrapper removed, recursively."""
    if is_secret(value):
        return reveal(value["value"])
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def stack_file(stack: str | os.PathLike[str]) -> Path:
    """`Pulumi.<stack>.yaml` in the project for a stack name, or the path itself for a stack file."""
    text = os.fspath(stack)
    if os.sep in text or text.endswith((".yaml", ".yml")):
        return Path(text)
    return ROOT / f"Pulumi.{text}.yaml"


def stack_name(stack: str | os.PathLike[str]) -> str:
    """The stack's name: as given, or from a stack file named `Pulumi.<name>.yaml` (else the file's stem)."""
    text = os.fspath(stack)
    if os.sep not in text and not text.endswith((".yaml", ".yml")):
        return text
    path = Path(text)
    if path.name.startswith("Pulumi.") and path.suffix in (".yaml", ".yml"):
        return path.name[len("Pulumi."):-len(path.suffix)]
    return path.stem


def stack_config(stack: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None, *,
                 project: str = PROJECT) -> tuple[dict[str, str], set[str]]:
    """The engine's flat config map for a stack (name or file), and the keys stored encrypted in it
    (local_engine.stack_file.stack_config)."""
    return stack_file_config(stack_file(stack), overrides, project=project)


def secure_keys(stack: str | os.PathLike[str]) -> set[str]:
    """The keys a stack file holds encrypted (`key: {secure: ...}`), with their namespace."""
    return stack_file_secure_keys(stack_file(stack), project=PROJECT)


@dataclass
class Registration:
    """One RegisterResource call as the engine saw it, and the state the (mock) provider answered with."""

    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    dependencies: list[str]
    inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    additional_secret_outputs: list[str] = field(default_factory=list)
    delete_before_replace: bool | None = None
    protect: bool = False
    registered_outputs: dict[str, Any] | None = None  # a component's register_outputs


@dataclass
class Graph:
    """Everything the program declared, in declaration order, plus its stack outputs."""

    resources: list[Registration] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    stack: str = ""
    project: str = PROJECT
    preview: bool = False

    def of_type(self, typ: str) -> list[Registration]:
        """Resources of one type token."""
        return [r for r in self.resources if r.type == typ]

    def named(self, name: str) -> Registration:
        """The resource with this logical name."""
        found = [r for r in self.resources if r.name == name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources named {name!r}")
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        """The resource with this URN."""
        return next(r for r in self.resources if r.urn == urn)


class FakeValues(pulumi.runtime.Mocks):
    """Mock provider: echoes inputs, fills generated values (random, ids) like the real providers."""

    def __init__(self, preview: bool = False, previous_outputs: Mapping[str, Any] | None = None) -> None:
        self.preview = preview
        self.previous_outputs = dict(previous_outputs or {})

    def new_resource(self, args: pmocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == "pulumi:pulumi:StackReference":
            # Read in a preview too: the stack's outputs of its last update (here: `previous_outputs`).
            return (args.name, {"name": args.inputs.get("name", args.name), "outputs": self.previous_outputs,
                                "secretOutputNames": []})
        if self.preview:
            return (None, state)  # outputs stay unknown, as in `pulumi preview`
        if args.typ == "random:index/randomPassword:RandomPassword":
            alphabet = string.ascii_letters + string.digits
            value = "".join(secrets.choice(alphabet) for _ in range(int(args.inputs["length"])))
            state["result"] = {SECRET_SIG: SECRET_VALUE, "value": value}
        elif args.typ == "random:index/randomId:RandomId":
            state["hex"] = secrets.token_hex(int(args.inputs["byteLength"]))
        elif args.typ == "tls:index/privateKey:PrivateKey":
            state["privateKeyPem"] = {SECRET_SIG: SECRET_VALUE, "value": _fake_pem("PRIVATE KEY", args.name)}
            state["publicKeyPem"] = _fake_pem("PUBLIC KEY", args.name)
        elif args.typ == "tls:index/certRequest:CertRequest":
            state["certRequestPem"] = _fake_pem("CERTIFICATE REQUEST", args.name)
        elif args.typ in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
            state["certPem"] = _fake_pem("CERTIFICATE", args.name)
        elif args.typ == "docker:index/image:Image":
            state["repoDigest"] = f"{args.inputs['imageName']}@sha256:{'0' * 64}"
        return (f"{args.name}-id", state)

    def call(self, args: pmocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        raise NotImplementedError(f"unexpected invoke {args.token}")


def _fake_pem(label: str, name: str) -> str:
    """A stand-in PEM block (not a usable key or certificate) naming the resource it came from."""
    return f"-----BEGIN {label}-----\n{name}\n-----END {label}-----\n"


class RecordingMonitor(pmocks.MockMonitor):
    """A MockMonitor that also keeps parents, dependencies, inputs and answered state of every registration."""

    def __init__(self, mocks: pulumi.runtime.Mocks, graph: Graph) -> None:
        super().__init__(mocks)
        self.graph = graph

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            rpc = pulumi.runtime.rpc
            self.graph.resources.append(
                Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    custom=bool(request.custom),
                    parent=request.parent,
                    dependencies=list(request.dependencies),
                    inputs=rpc.deserialize_properties(request.object, keep_unknowns=True),
                    outputs=rpc.deserialize_properties(response.object, keep_unknowns=True),
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                    delete_before_replace=request.deleteBeforeReplace if request.deleteBeforeReplaceDefined else None,
                    protect=bool(request.protect),
                )
            )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        """A component's registered outputs replace its outputs, as in the engine (the mock ignores them)."""
        outputs = pulumi.runtime.rpc.deserialize_properties(request.outputs, keep_unknowns=True)
        for reg in self.graph.resources:
            if reg.urn == request.urn:
                reg.registered_outputs = outputs
        return super().RegisterResourceOutputs(request)


def run_program(
    stack: str | os.PathLike[str],
    overrides: Mapping[str, Any] | None = None,
    *,
    preview: bool = False,
    secrets_config: Mapping[str, str] | None = None,
    mocks: pulumi.runtime.Mocks | None = None,
    body: Callable[[], Any] | None = None,
    previous_outputs: Mapping[str, Any] | None = None,
) -> Graph:
    """Evaluate the program (or `body`) for a stack (name or stack file) and return what it declared;
    `previous_outputs` are the stack's outputs of its last update (what a StackReference to it reads)."""
    name = stack_name(stack)
    graph = Graph(stack=name, preview=preview)
    secrets = {f"{PROJECT}:{k}": v for k, v in (secrets_config or {}).items()}
    config, secure = stack_config(stack, {**(overrides or {}), **secrets})
    pulumi.runtime.set_all_config(config, sorted(secure | set(secrets)))
    psettings.ROOT.set(None)
    mock = mocks or FakeValues(preview, previous_outputs)
    pulumi.runtime.set_mocks(mock, project=PROJECT, stack=name, preview=preview,
                             monitor=RecordingMonitor(mock, graph))
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if body is None:
        import program

        body = program.main

    @pulumi.runtime.test
    def evaluate() -> pulumi.Output[Any]:
        body()
        root = psettings.get_root_resource()
        outputs = dict(root.outputs)  # type: ignore[union-attr]

        def record(key: str) -> Callable[[Any], None]:
            def store(value: Any) -> None:
                graph.outputs[key] = value
            return store

        async def secrecy() -> None:
            for key, value in outputs.items():
                if isinstance(value, pulumi.Output) and await value.is_secret():
                    graph.secret_outputs.add(key)

        # One by one: in a preview, outputs known before anything is created are recorded, the others not.
        done = pulumi.Output.all(*(pulumi.Output.from_input(v).apply(record(k)) for k, v in outputs.items()))
        return pulumi.Output.all(done, pulumi.Output.from_input(secrecy()))  # type: ignore[arg-type]

    # Offline: the program asks no host but this machine (the ssh target's leader probe would reach the
    # stack's real hosts; the docker target's published ports are on loopback).
    probe = target_base.fetch_json
    target_base.fetch_json = lambda url: probe(url) if urlsplit(url).hostname in LOOPBACK else None
    try:
        evaluate()
    finally:
        target_base.fetch_json = probe
    return graph

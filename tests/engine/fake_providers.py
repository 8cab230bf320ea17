"""Stand-in providers for engine tests that need the whole program but no Docker or hosts: create answers at
once with the inputs and made-up computed outputs, any changed input is an update."""

from __future__ import annotations

from typing import Any

from local_engine.providers import Context, Diff, Provider, changed_keys
from local_engine.state import ResourceState
from local_engine.wire import make_secret

PEM = "-----BEGIN {0}-----\nfake\n-----END {0}-----\n"
COMPUTED: dict[str, dict[str, Any]] = {
    "random:index/randomPassword:RandomPassword": {"result": make_secret("FakePassword0123456789")},
    "random:index/randomId:RandomId": {"hex": "0a1b2c3d"},
    "tls:index/privateKey:PrivateKey": {"privateKeyPem": make_secret(PEM.format("PRIVATE KEY"))},
    "tls:index/certRequest:CertRequest": {"certRequestPem": PEM.format("CERTIFICATE REQUEST")},
    "tls:index/selfSignedCert:SelfSignedCert": {"certPem": PEM.format("CERTIFICATE")},
    "tls:index/locallySignedCert:LocallySignedCert": {"certPem": PEM.format("CERTIFICATE")},
    "docker:index/image:Image": {"repoDigest": "sha256:" + "0" * 64},
    "command:remote:Command": {"stdout": "", "stderr": ""},
    "command:local:Command": {"stdout": "", "stderr": ""},
}


class FakeProvider(Provider):
    """Any resource type: nothing is made, every change is an update."""

    def __init__(self, type_: str) -> None:
        self.type, self.source = type_, "tests/engine/fake_providers.py"
        self.created: list[str] = []

    def diff(self, old: ResourceState, inputs: dict[str, Any]) -> Diff:
        return Diff(changed=changed_keys(old.inputs, inputs))

    def create(self, ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.created.append(name)
        return f"{name}-id", {**inputs, **COMPUTED.get(self.type, {})}

    def update(self, ctx: Context, old: ResourceState, inputs: dict[str, Any], diff: Diff) -> dict[str, Any]:
        return {**old.outputs, **inputs}


def fakes() -> dict[str, Provider]:
    """A fake for every type the program declares."""
    return {t: FakeProvider(t) for t in COMPUTED | {"docker:index/container:Container": {},
                                                     "docker:index/network:Network": {},
                                                     "docker:index/volume:Volume": {}}}

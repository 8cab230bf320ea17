"""The manifest every placed service declares for the policy pack (the channel is described in catalog/manifest.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pulumi

from catalog.manifest import FILE_KINDS, SERVICE_MANIFEST

if TYPE_CHECKING:
    from targets.base import Placement, ServiceSpec


def manifest_properties(cluster: str, target: str, spec: ServiceSpec, placement: Placement) -> dict[str, Any]:
    """The manifest's properties: plain values, file contents as the very Outputs the target installs."""
    unknown = sorted({f.kind for f in placement.files} - {"", *FILE_KINDS})
    if unknown:
        raise ValueError(f"{spec.host.name}: unknown file kind(s) {', '.join(unknown)}; known: {', '.join(FILE_KINDS)}")
    return {
        "cluster": cluster,
        "role": spec.role,
        "node": spec.host.name,
        "address": str(spec.host.address),
        "target": target,
        "listeners": [{"address": s.address, "port": s.port, "what": s.what} for s in spec.listeners],
        "published": [{"address": address, "port": port, "what": f"container port {internal}"}
                      for internal, (address, port) in placement.published.items()],
        "files": [{"path": f.path, "mode": f.mode, "owner": f.owner, "kind": f.kind,
                   "content": pulumi.Output.secret(f.content) if f.secret else f.content}
                  for f in placement.files],
    }


class ServiceManifest(pulumi.ComponentResource):
    """What one placed service is, where it runs, what it listens on and every file it installs."""

    def __init__(self, name: str, cluster: str, target: str, spec: ServiceSpec, placement: Placement,
                 parent: pulumi.Resource) -> None:
        props = manifest_properties(cluster, target, spec, placement)
        super().__init__(SERVICE_MANIFEST, name, props, pulumi.ResourceOptions(parent=parent))
        # Stack policies see a component's registered outputs (the engine's AnalyzeStack gets final
        # outputs), resource policies its inputs: both carry the same properties.
        self.register_outputs(props)

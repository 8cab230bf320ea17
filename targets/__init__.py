"""Deployment targets: where and how the cluster's services run. Components use only this interface;
`targets.select` picks the concrete target for a stack."""

from targets.base import DataDir, File, HostStep, Listener, Placement, Process, ServiceSpec, Storage, Target

__all__ = ["DataDir", "File", "HostStep", "Listener", "Placement", "Process", "ServiceSpec", "Storage", "Target"]

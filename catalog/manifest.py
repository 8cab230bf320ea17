"""The service manifest: the declared, typed channel through which a placed service tells the policy pack
what it is, where it runs, what it listens on and which files it installs.

Every ``Target.place`` declares one ``pgha:index:ServiceManifest`` component beside the resources that
run the service; its properties (inputs and registered outputs alike) are plain values:

    cluster    the cluster name               role     a role of catalog.roles ("etcd", ...)
    node       the host's name                address  the host's IPv4 address
    target     "docker" or "ssh"
    listeners  [{address, port, what}]        sockets the service opens on its host ("0.0.0.0": all)
    published  [{address, port, what}]        ports published on the machine running the engine (docker)
    files      [{path, mode, owner, kind, content}]  every file it installs; kind is one of FILE_KINDS or
               "" for a file no policy reads; content is secret where it holds credentials, and unknown
               during a first preview
"""

from __future__ import annotations

from typing import Final

from catalog.roles import SERVICE_MANIFEST

__all__ = ["FILE_KINDS", "PROPERTIES", "SERVICE_MANIFEST"]

PROPERTIES: Final = ("cluster", "role", "node", "address", "target", "listeners", "published", "files")
# The configuration formats the pack reads, by the service that reads them.
FILE_KINDS: Final = ("etcd", "patroni", "haproxy", "keepalived", "pgbackrest", "cron", "nftables")

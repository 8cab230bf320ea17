"""The control plane: etcd and Patroni's REST API over TLS with client certificates, HAProxy's checks verifying
it, remote commands pinning their host's SSH key."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

if __package__:
    from . import extract, parsers
    from .checks_postgres import patroni_files
    from .inventory import StackView
else:  # run by the Pulumi policy host, with only the pack directory (and the project) on sys.path
    import extract  # type: ignore[no-redef]
    import parsers  # type: ignore[no-redef]
    from checks_postgres import patroni_files  # type: ignore[no-redef]
    from inventory import StackView  # type: ignore[no-redef]

Report = Callable[[str, str | None], None]
CLIENT_CERTIFICATE = ("optional", "required")


def check_rest_tls(view: StackView, settings: Mapping[str, Any], report: Report) -> None:
    """Patroni's REST API serves HTTPS, asks unsafe requests for a client certificate of the CA, takes them
    only from an allowlist, and requires the password."""
    for service, path, data in patroni_files(view):
        restapi = parsers.dig(data or {}, "restapi")
        if not isinstance(restapi, dict):
            report(f"{service.label}: {path} has no restapi section; Patroni would serve its REST API in plain "
                   "HTTP to anyone", service.urn)
            continue
        problems = []
        if not (restapi.get("certfile") and restapi.get("keyfile")):
            problems.append("no certfile/keyfile: plain HTTP, the password crosses the network in clear")
        if not restapi.get("cafile") or restapi.get("verify_client") not in CLIENT_CERTIFICATE:
            problems.append(f"verify_client is {restapi.get('verify_client')!r} (with cafile "
                            f"{restapi.get('cafile')!r}): unsafe requests need no client certificate")
        if not restapi.get("allowlist"):
            problems.append("no allowlist: unsafe requests are taken from any address")
        auth = restapi.get("authentication")
        if not (isinstance(auth, dict) and auth.get("username") and auth.get("password")):
            problems.append("no authentication: unsafe requests need no password")
        if problems:
            report(f"{service.label}: {path} restapi: " + "; ".join(problems), service.urn)


ETCD_URLS = ("listen-peer-urls", "listen-client-urls", "initial-advertise-peer-urls", "advertise-client-urls")
ETCD_SECTIONS = ("client-transport-security", "peer-transport-security")


def etcd_problems(data: Mapping[str, Any]) -> list[str]:
    """What lets an etcd member talk to anyone in clear or without a certificate of the cluster CA."""
    problems = []
    for key in ETCD_URLS:
        plain = [u for u in str(data.get(key) or "").split(",") if u.strip() and not u.strip().startswith("https://")]
        if plain:
            problems.append(f"{key} {', '.join(plain)} is not https")
    for section in ETCD_SECTIONS:
        tls = data.get(section)
        tls = tls if isinstance(tls, dict) else {}
        if not (tls.get("cert-file") and tls.get("key-file")):
            problems.append(f"{section} has no cert-file/key-file")
        if tls.get("client-cert-auth") is not True or not tls.get("trusted-ca-file"):
            problems.append(f"{section} does not require a client certificate of a trusted CA (client-cert-auth "
                            f"{tls.get('client-cert-auth')!r}, trusted-ca-file {tls.get('trusted-ca-file')!r})")
    return problems


def check_etcd_tls(view: StackView, settings: Mapping[str, Any], report: Report) -> None:
    """Every etcd member serves its client and peer ports over TLS only, requiring a client certificate of the
    cluster CA; Patroni connects over https, verifying etcd, with a client certificate and a user's password
    (etcd's access control, which the RBAC step enables, takes no certificate name through Patroni's gateway)."""
    for service in view.services:
        for path, content in service.known("etcd"):
            data = parsers.load_yaml(content)
            problems = etcd_problems(data) if isinstance(data, dict) else ["not a YAML mapping"]
            if problems:
                report(f"{service.label}: {path}: " + "; ".join(problems), service.urn)
    for service, path, data in patroni_files(view):
        etcd3 = parsers.dig(data or {}, "etcd3")
        etcd3 = etcd3 if isinstance(etcd3, dict) else {}
        problems = []
        if etcd3.get("protocol") != "https" or not etcd3.get("cacert"):
            problems.append(f"protocol {etcd3.get('protocol')!r} with cacert {etcd3.get('cacert')!r}: etcd is "
                            "not verified over TLS")
        if not (etcd3.get("cert") and etcd3.get("key")):
            problems.append("no client certificate (cert/key)")
        if not (etcd3.get("username") and etcd3.get("password")):
            problems.append("no username/password: etcd's access control cannot tell Patroni from another client")
        if problems:
            report(f"{service.label}: {path} etcd3: " + "; ".join(problems), service.urn)


def _verified_check(words: list[str]) -> bool:
    """A `server` line whose health check is HTTPS with the server verified against a CA file."""
    pairs = set(itertools.pairwise(words))
    return "check-ssl" in words and ("verify", "required") in pairs and any(a == "ca-file" for a, _ in pairs)


def check_haproxy_check_tls(view: StackView, settings: Mapping[str, Any], report: Report) -> None:
    """HAProxy's health checks of Patroni's REST API are HTTPS and verify the server (check-ssl, verify
    required, ca-file), on every server line or its section's default-server."""
    for service in view.services:
        for path, content in service.known("haproxy"):
            for section in parsers.haproxy_sections(content):
                defaults = [w for line in section.find("default-server") for w in line]
                plain = [words[1] for words in section.find("server") if len(words) > 1 and "check" in words
                         and not _verified_check(words + defaults)]
                if plain:
                    report(f"{service.label}: {path} {section.kind} {section.name}: the checks of "
                           f"{', '.join(plain)} are not HTTPS verified against the cluster CA (check-ssl verify "
                           "required ca-file ...): a stand-in for Patroni's REST API could route the writes",
                           service.urn)


def check_host_key(resource_type: str, name: str, props: dict[str, Any], settings: Mapping[str, Any],
                   report: Report) -> None:
    """A remote command's connection pins the host's SSH key (connection.hostKey)."""
    if resource_type != extract.REMOTE_COMMAND:
        return
    connection = props.get("connection")
    if not isinstance(connection, Mapping):
        report(f"{name}: no connection to check", None)
        return
    key = connection.get("hostKey")
    if extract.is_unknown(key):
        return  # a value the preview cannot see yet
    if not extract.text(key):
        report(f"{name}: connection to {connection.get('host')} has no hostKey: pulumi-command then accepts any "
               "host key, and a machine in the middle receives what the command sends (passwords, keys on "
               "stdin); pin it (pgha:ssh.host_keys)", None)

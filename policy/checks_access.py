"""Access checks: generated credentials only, none on command lines or in env, authenticated HAProxy stats."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from catalog import limits

if __package__:
    from . import extract, parsers
    from .inventory import Service, StackView
else:  # run by the Pulumi policy host, with only the pack directory (and the project) on sys.path
    import extract  # type: ignore[no-redef]
    import parsers  # type: ignore[no-redef]
    from inventory import Service, StackView  # type: ignore[no-redef]

Report = Callable[[str, str | None], None]

PATRONI_SECRETS = (
    ("restapi", "authentication", "password"),
    ("ctl", "authentication", "password"),
    ("postgresql", "authentication", "superuser", "password"),
    ("postgresql", "authentication", "replication", "password"),
    ("postgresql", "authentication", "rewind", "password"),
    ("etcd3", "password"),
    ("etcd", "password"),
)
_CIPHER_PASS = re.compile(r"^repo\d+-cipher-pass$")
# PGPASSWORD, DB_SECRET, API_KEY, ...; not KEYBOARD, PASSTHROUGH or PWD (the working directory).
CREDENTIAL_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|(^|_)(PASS|KEY|APIKEY)(_|$)", re.I)
URL_CREDENTIAL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:[^@\s/]+@", re.I)
INLINE_CREDENTIAL = (
    re.compile(r"\b[A-Z0-9_]*(PASSWORD|PASSWD|SECRET|TOKEN)[A-Z0-9_]*=(?![\s;|&]|$|\"\"|''|\"?\$)", re.I),
    re.compile(r"--password[= ](?![-\s$])\S+", re.I),
    re.compile(r"\bsshpass\s+-p\s*\S+"),
    URL_CREDENTIAL,
)


def credential_fields(service: Service) -> Iterator[tuple[str, str, bool]]:
    """(where, value, VRRP-truncated) of every credential the service's rendered files hold."""
    for path, content in service.known("patroni"):
        data = parsers.load_yaml(content) or {}
        for keys in PATRONI_SECRETS:
            value = parsers.dig(data, *keys)
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                yield f"{path} {'.'.join(keys)}", str(value), False
    for path, content in service.known("haproxy"):
        for section in parsers.haproxy_sections(content):
            for words in section.find("stats", "auth"):
                if len(words) > 2 and ":" in words[2]:
                    yield f"{path} {section.kind} {section.name} stats auth", words[2].split(":", 1)[1], False
            for words in section.lines:
                if section.kind == "userlist" and words[0] == "user" and len(words) > 3:
                    yield f"{path} userlist {section.name} user {words[1]}", words[3], False
    for path, content in service.known("keepalived"):
        for instance, keywords in parsers.keepalived_instances(content).items():
            for auth in keywords.get("auth_pass", []):
                yield f"{path} vrrp_instance {instance} auth_pass", auth, True
    for path, content in service.known("pgbackrest"):
        for ini_section, entries in parsers.ini_sections(content).items():
            for key, secret in entries.items():
                if _CIPHER_PASS.match(key):
                    yield f"{path} [{ini_section}] {key}", secret, False


def is_generated(value: str, passwords: set[str], truncated: bool) -> bool:
    """The value is one of the stack's generated passwords (or, for VRRP, the first 8 characters of one)."""
    if value in passwords:
        return True
    length = limits.VRRP_PASS_LENGTH
    return truncated and len(value) == length and any(p[:length] == value for p in passwords)


def check_credentials(view: StackView, settings: Mapping[str, Any], report: Report) -> None:
    """Rendered credentials come from RandomPassword; no generated password in command text or container inputs."""
    for service in view.services:
        for where, value, truncated in credential_fields(service):
            if not is_generated(value, view.passwords, truncated):
                report(f"{service.label}: {where} is a literal, not the result of a "
                       f"{extract.RANDOM_PASSWORD} in this stack; generate it with pulumi-random or read it "
                       "with require_secret", service.urn)
    if not view.passwords:
        return
    for resource, props in view.resources:
        fields: dict[str, Any]
        if resource.resource_type in extract.COMMANDS:
            fields = {key: props.get(key) for key in ("create", "update", "delete")}
        elif resource.resource_type == extract.CONTAINER:
            fields = {key: value for key, value in props.items() if key != "uploads"}
        else:
            continue
        for key, value in fields.items():
            if any(p in s for s in extract.strings(value) for p in view.passwords):
                report(f"{resource.name}: {key} contains a generated password; command text and container "
                       "settings end up in logs, `ps`, `docker inspect` and error output: pass it on stdin or in "
                       "an uploaded file", resource.urn)


def check_container_env(resource_type: str, name: str, props: dict[str, Any], settings: Mapping[str, Any],
                        report: Report) -> None:
    """No credential-named variable with a value, and no URL with a password, in a container's env."""
    if resource_type != extract.CONTAINER:
        return
    envs = props.get("envs")
    for entry in envs if isinstance(envs, list) else []:
        line = extract.text(entry)
        if line is None:
            continue
        var, _, value = line.partition("=")
        if var.upper().endswith("_FILE") or not value:
            continue  # *_FILE variables point at a file that holds the secret
        if CREDENTIAL_NAME.search(var):
            report(f"{name}: env {var} carries a credential value; a container's environment shows in "
                   "`docker inspect` and to every process in it: upload the secret as a file (mode 0600)", None)
        elif URL_CREDENTIAL.search(value):
            report(f"{name}: env {var} holds a URL with an embedded password; upload it as a file instead", None)


def check_command_text(resource_type: str, name: str, props: dict[str, Any], settings: Mapping[str, Any],
                       report: Report) -> None:
    """A command's create/update/delete text assigns or passes no credential inline."""
    if resource_type not in extract.COMMANDS:
        return
    for key in ("create", "update", "delete"):
        command = extract.text(props.get(key))
        if command and any(p.search(command) for p in INLINE_CREDENTIAL):
            report(f"{name}: {key} passes a credential inline; command text shows in logs, `ps` and the "
                   "provider's error output: feed secrets on stdin", None)


def check_stats_auth(view: StackView, settings: Mapping[str, Any], report: Report) -> None:
    """Every HAProxy section serving the stats page requires `stats auth` (above all when bound to `*`)."""
    for service in view.services:
        for path, content in service.known("haproxy"):
            defaults_on = defaults_auth = False
            for section in parsers.haproxy_sections(content):
                enabled = bool(section.find("stats", "enable") or section.find("stats", "uri"))
                auth = bool(section.find("stats", "auth") or section.find("http-request", "auth"))
                if section.kind == "defaults":
                    defaults_on, defaults_auth = enabled, auth
                    continue
                if section.kind not in {"frontend", "listen", "backend"} or not (enabled or defaults_on):
                    continue
                if auth or defaults_auth:
                    continue
                binds = [w[1] for w in section.find("bind") if len(w) > 1]
                split = [parsers.split_bind(b) for b in binds]
                wildcard = any(s is not None and s[0] in parsers.WILDCARDS for s in split)
                where = ", ".join(binds) or "its frontend's address"
                extra = " It listens on every address of the host." if wildcard else ""
                report(f"{service.label}: {path} {section.kind} {section.name} serves the stats page on {where} "
                       "without `stats auth`; the page is plain HTTP and shows every backend: add `stats auth "
                       f"USER:PASSWORD` with a generated password and bind it to a private address.{extra}",
                       service.urn)


def check_shutdown_sessions(view: StackView, settings: Mapping[str, Any], report: Report) -> None:
    """Servers carry `on-marked-down shutdown-sessions`, so clients leave a demoted primary at once."""

    def has_it(words: list[str]) -> bool:
        return any(words[i:i + 2] == ["on-marked-down", "shutdown-sessions"] for i in range(len(words)))

    for service in view.services:
        for path, content in service.known("haproxy"):
            defaults_ok = False
            for section in parsers.haproxy_sections(content):
                section_ok = any(has_it(w) for w in section.find("default-server"))
                if section.kind == "defaults":
                    defaults_ok = section_ok
                    continue
                if defaults_ok or section_ok:
                    continue
                missing = [w[1] for w in section.find("server") if len(w) > 1 and not has_it(w)]
                if missing:
                    report(f"{service.label}: {path} {section.kind} {section.name}: servers {', '.join(missing)} "
                           "lack `on-marked-down shutdown-sessions`; clients stay connected to a dead or demoted "
                           "primary until `timeout server`", service.urn)

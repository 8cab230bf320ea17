"""The file-format readers the policies rely on, on the corner cases of each format."""

from __future__ import annotations

import pytest

from policy import extract, parsers


def test_haproxy_words_resolve_escapes_and_drop_comments() -> None:
    sections = parsers.haproxy_sections("listen stats # the page\n    stats auth u:p\\ a\\#b  # note\n")
    assert [(s.kind, s.name, s.lines) for s in sections] == [("listen", "stats", [["stats", "auth", "u:p a#b"]])]


@pytest.mark.parametrize(("address", "expected"), [
    ("*:5000", ("*", 5000)), (":5000", ("", 5000)), ("10.0.0.1:7000", ("10.0.0.1", 7000)),
    ("[::]:5432", ("::", 5432)), ("ipv4@0.0.0.0:8008", ("0.0.0.0", 8008)), ("/run/socket", None), ("*:x", None),
])
def test_split_bind(address: str, expected: tuple[str, int] | None) -> None:
    assert parsers.split_bind(address) == expected


def test_hba_rules_with_netmask_and_comments() -> None:
    rules = parsers.hba_rules(["# comment", "host replication rep 10.0.0.0 255.255.255.0 scram-sha-256",
                               "local all all peer", "hostssl all all all md5 # any"])
    assert rules is not None
    assert [(r.type, r.address, r.method) for r in rules] == [
        ("host", "10.0.0.0/24", "scram-sha-256"), ("local", None, "peer"), ("hostssl", "all", "md5")]
    assert rules[0].covers("10.0.0.7") and not rules[0].covers("10.0.1.7") and rules[2].covers("192.0.2.1")
    assert parsers.hba_rules("host all all 0.0.0.0/0 trust") is None


def test_keepalived_instances_read_nested_blocks_and_both_comment_styles() -> None:
    text = ("vrrp_instance VI_1 {  # main\n    virtual_router_id 51\n    authentication {\n        auth_pass abc ! x\n"
            "    }\n}\nvrrp_instance VI_2 {\n    virtual_router_id 52\n}\n")
    found = parsers.keepalived_instances(text)
    assert found["VI_1"]["virtual_router_id"] == ["51"] and found["VI_1"]["auth_pass"] == ["abc"]
    assert found["VI_2"]["virtual_router_id"] == ["52"]


def test_cron_entries_skip_variables_and_comments() -> None:
    entries = parsers.cron_entries("SHELL=/bin/bash\n# x\n15 1 * * 0 postgres /bin/backup full\n@daily root b\n")
    assert [(e.schedule, e.user, e.command) for e in entries] == [
        ("15 1 * * 0", "postgres", "/bin/backup full"), ("@daily", "root", "b")]


@pytest.mark.parametrize(("path", "kind"), [
    ("/etc/patroni/patroni.yml", "patroni"), ("/etc/pgha/etcd.yml", "etcd"), ("/etc/haproxy/haproxy.cfg", "haproxy"),
    ("/etc/cron.d/pgha-backup", "cron"), ("/etc/pgbackrest/pgbackrest.conf", "pgbackrest"), ("/etc/x.conf", None),
])
def test_file_kinds(path: str, kind: str | None) -> None:
    assert parsers.file_kind(path) == kind


def test_plain_unwraps_engine_proxies_and_marks_unknowns() -> None:
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

    props = unknown_checking_proxy({"a": [{"content": UNKNOWN_STRING_VALUE}, "x"], "b": UNKNOWN_STRING_VALUE})
    value = extract.plain(props)
    assert value["a"][1] == "x" and extract.is_unknown(value["a"][0]["content"]) and extract.is_unknown(value["b"])
    assert extract.container_files({"uploads": value["a"][:1]}) == {}  # no file name: skipped
    assert extract.service_files(extract.REMOTE_COMMAND, {"stdin": UNKNOWN_STRING_VALUE}) is None

"""The file-format readers the policies rely on, on the corner cases of each format."""

from __future__ import annotations

import pytest

from policy import extract, parsers
from policy.evaluate import ROOT


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


def test_plain_unwraps_engine_proxies_and_marks_unknowns() -> None:
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

    props = unknown_checking_proxy({"a": [{"content": UNKNOWN_STRING_VALUE}, "x"], "b": UNKNOWN_STRING_VALUE})
    value = extract.plain(props)
    assert value["a"][1] == "x" and extract.is_unknown(value["a"][0]["content"]) and extract.is_unknown(value["b"])


FORBIDDEN = ("base64", "b64decode", "PGHA_EOF", "heredoc", "shlex", ".name.endswith", "removeprefix",
             "removesuffix")


def reverse_engineering(text: str) -> list[str]:
    """What in a policy module's source would read a target's encoding or resource names backwards."""
    return [needle for needle in FORBIDDEN if needle in text]


def test_the_pack_reads_no_resource_name_script_or_encoding() -> None:
    """The pack reads what services declare (their manifests), never how a target happens to encode it."""
    assert reverse_engineering("data = base64.b64decode(x)\nname.removesuffix('-service')") == [
        "base64", "b64decode", "removesuffix"], "the scan sees what it looks for"
    sources = {path.name: path.read_text() for path in (ROOT / "policy").glob("*.py")
               if path.name not in ("offline.py", "evaluate.py", "engine.py")}  # the offline runner, not the pack
    assert {"pack.py", "inventory.py", "extract.py", "parsers.py"} <= set(sources)
    for name, text in sources.items():
        assert reverse_engineering(text) == [], f"policy/{name}"

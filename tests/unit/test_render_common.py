"""Tests for render.common: the managed-file header and the strict template environment."""

from __future__ import annotations

import jinja2
import pytest
import yaml

import render
from render import common
from tests.golden_util import FAKE_CREDS, load


def test_header_uses_the_comment_character() -> None:
    assert common.header("--") == f"-- {common.HEADER}\n"
    assert common.with_header("a: 1\n") == f"# {common.HEADER}\na: 1\n"


def test_header_goes_after_a_shebang() -> None:
    text = common.with_header("#!/bin/bash\nset -e\n")
    assert text.splitlines()[:3] == ["#!/bin/bash", f"# {common.HEADER}", "set -e"]


def test_undefined_template_variable_is_an_error() -> None:
    with pytest.raises(jinja2.UndefinedError):
        common.render_template("haproxy.cfg.j2")


def test_dump_yaml_keeps_order_and_quotes_what_needs_it() -> None:
    data = {"z": "on", "a": "x: #y", "m": ["'\"\\"]}
    text = common.dump_yaml(data)
    assert text.startswith(f"# {common.HEADER}\n")
    assert list(yaml.safe_load(text)) == ["z", "a", "m"]
    assert yaml.safe_load(text) == data


def test_every_rendered_file_starts_with_the_header() -> None:
    cfg = load("dev")
    pg, ha, etcd = cfg.postgres.nodes[0], cfg.haproxy.nodes[0], cfg.etcd.members[0]
    texts = {
        "etcd": (render.render_etcd(cfg, etcd), "#"),
        "patroni": (render.render_patroni(cfg, pg, FAKE_CREDS), "#"),
        "sql": (render.render_post_bootstrap_sql(cfg, FAKE_CREDS), "--"),
        "post-bootstrap": (render.render_post_bootstrap_script(cfg), "#"),
        "haproxy": (render.render_haproxy(cfg, ha, FAKE_CREDS), "#"),
        "keepalived": (render.render_keepalived(cfg, ha, FAKE_CREDS), "#"),
        "pgbackrest": (render.render_pgbackrest(cfg, pg, FAKE_CREDS), "#"),
        "cron": (render.render_backup_cron(cfg), "#"),
        "backup": (render.render_backup_script(cfg), "#"),
    }
    for name, (text, comment) in texts.items():
        lines = text.splitlines()
        first = 1 if lines[0].startswith("#!") else 0
        assert lines[first] == f"{comment} {common.HEADER}", name
        assert text.endswith("\n"), name

"""Tests for render.pgbackrest: golden files, repository options, the schedule and the backup script."""

from __future__ import annotations

import dataclasses

import pytest

from render.paths import BACKUP_SCRIPT, PG_DATA, PG_SOCKET_DIR, PG_TLS_CA
from render.pgbackrest import render_backup_cron, render_backup_script, render_pgbackrest
from tests.golden_util import FAKE_CREDS, VARIANTS, assert_golden, load


def _ini(text: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, value = line.split("=", 1)
        assert key not in current, f"duplicate {key}"
        current[key] = value
    return sections


@pytest.mark.parametrize("variant", VARIANTS)
def test_golden(variant: str) -> None:
    cfg = load(variant)
    for node in cfg.postgres.nodes:
        assert_golden(f"{variant}/pgbackrest-{node.name}.conf", render_pgbackrest(cfg, node, FAKE_CREDS))
    assert_golden(f"{variant}/pgha-backup.cron", render_backup_cron(cfg))
    assert_golden(f"{variant}/pgha-backup.sh", render_backup_script(cfg))


@pytest.mark.parametrize("variant", VARIANTS)
def test_repository_and_stanza(variant: str) -> None:
    cfg = load(variant)
    b = cfg.backup
    ini = _ini(render_pgbackrest(cfg, cfg.postgres.nodes[0], FAKE_CREDS))
    assert set(ini) == {"global", cfg.stanza}
    g = ini["global"]
    assert g["repo1-path"] == b.repo_path
    assert (g["repo1-retention-full"], g["repo1-retention-diff"]) == (str(b.retention_full), str(b.retention_diff))
    assert g["compress-type"] == b.compress_type
    assert g["process-max"] == str(b.process_max)
    assert (g["start-fast"], g["delta"], g["archive-async"]) == ("y", "y", "n")
    assert "archive-push-queue-max" not in g, "drops WAL silently when reached"
    if b.cipher_type == "none":
        assert "repo1-cipher-type" not in g and "repo1-cipher-pass" not in g
    else:
        assert (g["repo1-cipher-type"], g["repo1-cipher-pass"]) == (b.cipher_type, FAKE_CREDS.cipher)
    assert ini[cfg.stanza] == {
        "pg1-path": PG_DATA,
        "pg1-port": str(cfg.postgres.port),
        "pg1-socket-path": PG_SOCKET_DIR,
    }


@pytest.mark.parametrize("cipher", [" lead", "trail ", "new\nline", ""])
def test_a_cipher_pass_the_ini_file_cannot_hold_is_an_error(cipher: str) -> None:
    cfg = load("dev")
    creds = dataclasses.replace(FAKE_CREDS, cipher=cipher)
    with pytest.raises(ValueError, match=r"credentials\.cipher"):
        render_pgbackrest(cfg, cfg.postgres.nodes[0], creds)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cron_schedules(variant: str) -> None:
    cfg = load(variant)
    b = cfg.backup
    jobs = [line for line in render_backup_cron(cfg).splitlines() if line and line[0] not in "#SP"]
    expected = [f"{b.full_schedule} postgres {BACKUP_SCRIPT} full", f"{b.diff_schedule} postgres {BACKUP_SCRIPT} diff"]
    if b.incr_schedule:
        expected.append(f"{b.incr_schedule} postgres {BACKUP_SCRIPT} incr")
    assert jobs == expected
    assert all(len(job.split()) == 8 for job in jobs)


def test_backup_script_follows_the_leader() -> None:
    cfg = load("dev")
    script = render_backup_script(cfg)
    lines = [line.strip() for line in script.splitlines()]
    assert lines[0] == "#!/bin/bash"
    assert "set -euo pipefail" in lines
    assert "full|diff|incr|check) ;;" in lines
    assert f"exec pgbackrest --stanza={cfg.stanza} check" in lines
    url = f"https://127.0.0.1:{cfg.patroni.rest_api_port}/primary"  # HTTPS, verified with the cluster CA
    check = lines.index(f'if ! curl --cacert {PG_TLS_CA} -sf -o /dev/null --max-time 5 "{url}"; then')
    create = lines.index(f"pgbackrest --stanza={cfg.stanza} stanza-create")
    backup = lines.index(f'pgbackrest --stanza={cfg.stanza} --type="$type" backup')
    assert check < create < backup
    # Not the primary: exit 0 before pgBackRest runs, except a check without a running leader.
    leaving = lines.index("exit 0", check)
    assert leaving < create and lines[leaving - 1] == 'echo "pgha-backup: this node is not the primary; nothing to do"'
    assert "exit 1" in lines[check:leaving]
    assert f'{cfg.patroni.rest_api_port}/cluster"; }} | python3 -c \'' in lines[check + 3]

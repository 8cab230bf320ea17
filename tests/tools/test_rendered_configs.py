"""Every rendered file checked by the real tool of the deployed version, inside the pgha-node image."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from render import (
    render_backup_script,
    render_etcd,
    render_haproxy,
    render_keepalived,
    render_patroni,
    render_pgbackrest,
    render_post_bootstrap_script,
)
from render.etcd import initial_cluster_token
from render.keepalived import render_haproxy_ready
from render.paths import (
    BACKUP_SCRIPT,
    DCS_SYNC_SCRIPT,
    HAPROXY_CONFIG,
    HAPROXY_READY_SCRIPT,
    KEEPALIVED_CONFIG,
    PATRONI_CONFIG,
    PG_DATA,
    PGBACKREST_CONFIG,
    POST_BOOTSTRAP_SCRIPT,
)
from render.patroni import render_dcs_sync_script
from tests.golden_util import FAKE_CREDS, VARIANTS
from tests.tools import docker_boxes
from tests.tools.cluster_tls import ToolsCA
from tests.tools.conftest import ETCDCTL, local_endpoint
from tests.tools.docker_boxes import BoxFactory, Clusters, ToolsEnv, variant_config

pytestmark = pytest.mark.tools

# Patroni 4.0.7's validator schema types synchronous_mode as a boolean, although Patroni itself
# accepts "quorum" (global_config.is_quorum_commit_mode); that one complaint is expected.
QUORUM_VALIDATOR_GAP = "bootstrap.dcs.synchronous_mode quorum is not a boolean"


# --- etcd -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_etcd_members_form_the_rendered_cluster(variant: str, etcd_clusters: Clusters) -> None:
    cfg = variant_config(variant)
    first = etcd_clusters[variant][0]
    listed = json.loads(
        first.exec(*ETCDCTL, local_endpoint(cfg.etcd.client_port), "member", "list", "-w", "json", check=True).stdout
    )  # fmt: skip
    got = {m["name"]: (m["peerURLs"], m["clientURLs"]) for m in listed["members"]}
    assert got == {
        m.name: ([f"https://{m.address}:{cfg.etcd.peer_port}"], [f"https://{m.address}:{cfg.etcd.client_port}"])
        for m in cfg.etcd.members
    }
    for member in etcd_clusters[variant]:
        effective = _etcd_effective_config(member.logs())
        assert effective["initial-cluster-token"] == initial_cluster_token(cfg)
        assert effective["auto-compaction-mode"] == "periodic"
        assert effective["auto-compaction-retention"] == "1h0m0s"
        assert (effective["heartbeat-interval"], effective["election-timeout"]) == ("100ms", "1s")


def _etcd_effective_config(logs: str) -> dict[str, object]:
    for line in logs.splitlines():
        if line.startswith("{") and '"starting an etcd server"' in line:
            return json.loads(line)  # type: ignore[no-any-return]
    raise AssertionError(f"etcd never logged its configuration:\n{logs[-2000:]}")


# The config file's TLS sections and the flags their keys stand for (etcd's embed/config.go securityConfig).
SECURITY_FLAGS = {"client-transport-security": {"cert-file": "cert-file", "key-file": "key-file",
                                                "trusted-ca-file": "trusted-ca-file",
                                                "client-cert-auth": "client-cert-auth"},
                  "peer-transport-security": {"cert-file": "peer-cert-file", "key-file": "peer-key-file",
                                              "trusted-ca-file": "peer-trusted-ca-file",
                                              "client-cert-auth": "peer-client-cert-auth",
                                              "allowed-cn": "peer-cert-allowed-cn"}}


def unknown_etcd_keys(config_text: str, help_text: str) -> list[str]:
    """Keys of an etcd config file that are not etcd flags (etcd ignores unknown keys silently); a TLS
    section's keys by the flags they stand for."""
    flags = set(re.findall(r"^\s+--([a-z0-9-]+)", help_text, re.M))
    unknown = []
    for key, value in yaml.safe_load(config_text).items():
        if key in SECURITY_FLAGS:
            unknown += [f"{key}.{k}" for k in value if SECURITY_FLAGS[key].get(k) not in flags]
        elif key not in flags:
            unknown.append(key)
    return unknown


def test_etcd_config_keys_are_real_flags(boxes: BoxFactory) -> None:
    box = boxes("etcd-help")
    help_text = box.exec("etcd", "--help", check=True).stdout
    cfg = variant_config("dev")
    text = render_etcd(cfg, cfg.etcd.members[0])
    assert unknown_etcd_keys(text, help_text) == []
    # The check can fail: a misspelt key is caught.
    assert unknown_etcd_keys(text.replace("auto-compaction-mode", "auto-compaction-mod"), help_text) == [
        "auto-compaction-mod"
    ]
    assert unknown_etcd_keys(text.replace("allowed-cn", "allowed-cns"), help_text) == [
        "peer-transport-security.allowed-cns"]


# --- Patroni --------------------------------------------------------------------------------------


def _validate_patroni(box: docker_boxes.Container, text: str) -> tuple[int, list[str]]:
    box.put({PATRONI_CONFIG: text})
    result = box.exec("patroni", "--validate-config", PATRONI_CONFIG)
    return result.returncode, [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


@pytest.mark.parametrize("variant", VARIANTS)
def test_patroni_validates_every_node(variant: str, boxes: BoxFactory, etcd_clusters: Clusters) -> None:
    # On the private network with this variant's etcd running: the validator connects to every
    # etcd3 host, checks bin_dir holds the PostgreSQL 17 binaries and that listen ports are free.
    cfg = variant_config(variant)
    box = boxes(f"patroni-{variant}")
    expected = [QUORUM_VALIDATOR_GAP] if cfg.patroni.synchronous_mode == "quorum" else []
    for node in cfg.postgres.nodes:
        code, problems = _validate_patroni(box, render_patroni(cfg, node, FAKE_CREDS))
        assert problems == expected, f"{node.name}: {problems}"
        assert code == (1 if expected else 0)


def test_patroni_validation_can_fail(boxes: BoxFactory, etcd_clusters: Clusters) -> None:
    cfg = variant_config("dev")
    conf = yaml.safe_load(render_patroni(cfg, cfg.postgres.nodes[0], FAKE_CREDS))
    conf["bootstrap"]["dcs"]["ttl"] = 5
    conf["postgresql"]["bin_dir"] = "/usr/lib/postgresql/15/bin"
    box = boxes("patroni-broken")
    code, problems = _validate_patroni(box, yaml.safe_dump(conf))
    assert code != 0
    assert any(p.startswith("bootstrap.dcs.ttl 5") for p in problems), problems
    assert any(p.startswith("postgresql.bin_dir") for p in problems), problems


# --- HAProxy and keepalived -----------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_haproxy_accepts_every_node(variant: str, boxes: BoxFactory) -> None:
    cfg = variant_config(variant)
    box = boxes(f"haproxy-{variant}")
    for node in cfg.haproxy.nodes:
        box.put({HAPROXY_CONFIG: render_haproxy(cfg, node, FAKE_CREDS), **ToolsCA().haproxy_files(node)})
        result = box.exec("haproxy", "-c", "-V", "-f", HAPROXY_CONFIG)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "Configuration file is valid" in output
        assert "WARNING" not in output and "ALERT" not in output, output


def test_haproxy_check_can_fail(boxes: BoxFactory) -> None:
    cfg = variant_config("dev")
    text = render_haproxy(cfg, cfg.haproxy.nodes[0], FAKE_CREDS).replace("shutdown-sessions", "shutdown-sesions")
    box = boxes("haproxy-broken")
    box.put({HAPROXY_CONFIG: text, **ToolsCA().haproxy_files(cfg.haproxy.nodes[0])})
    result = box.exec("haproxy", "-c", "-f", HAPROXY_CONFIG)
    assert result.returncode != 0
    assert "shutdown-sesions" in result.stdout + result.stderr


def test_haproxy_stats_take_the_rendered_password(tools_env: ToolsEnv) -> None:
    # haproxy -c cannot tell whether the escaped password reads back as the one we meant: log in.
    cfg = variant_config("dev")
    node = cfg.haproxy.nodes[0]
    proxy = docker_boxes.start(
        "pgha-tools-haproxy-run",
        cmd=("haproxy", "-db", "-f", HAPROXY_CONFIG),
        network=tools_env.network,
        ip=str(node.address),
        files={HAPROXY_CONFIG: render_haproxy(cfg, node, FAKE_CREDS), **ToolsCA().haproxy_files(node)},
    )
    url = f"http://{node.address}:{cfg.haproxy.stats_port}/;csv"

    def status(password: str) -> str:
        args = ("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "-u", f"stats:{password}")
        return proxy.exec(*args, url).stdout

    docker_boxes.wait_for("haproxy answers on its stats address", lambda: status("wrong") == "401", deadline_s=20)
    assert status(FAKE_CREDS.stats) == "200"
    csv = proxy.exec("curl", "-sf", "-u", f"stats:{FAKE_CREDS.stats}", url, check=True).stdout
    for listener in ("postgres_read_write", "postgres_read_only"):
        for pg in cfg.postgres.nodes:
            assert f"\n{listener},{pg.name}," in csv


@pytest.mark.parametrize("variant", VARIANTS)
def test_keepalived_accepts_every_node(variant: str, boxes: BoxFactory) -> None:
    cfg = variant_config(variant)
    box = boxes(f"keepalived-{variant}")
    for node in cfg.haproxy.nodes:
        box.put({KEEPALIVED_CONFIG: render_keepalived(cfg, node, FAKE_CREDS)})
        # The track script must exist and be root's, or keepalived disables it (and says so).
        box.put({HAPROXY_READY_SCRIPT: render_haproxy_ready()}, mode=0o755)
        # keepalived -t exits 0 for a file that does not exist: make sure it is there.
        box.exec("test", "-s", KEEPALIVED_CONFIG, check=True)
        result = box.exec("keepalived", "-t", "-f", KEEPALIVED_CONFIG)
        assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_keepalived_check_can_fail(boxes: BoxFactory) -> None:
    cfg = variant_config("dev")
    text = render_keepalived(cfg, cfg.haproxy.nodes[0], FAKE_CREDS)
    text = re.sub(r"virtual_router_id \d+", "virtual_router_id 300", text)
    box = boxes("keepalived-broken")
    box.put({KEEPALIVED_CONFIG: text})
    box.put({HAPROXY_READY_SCRIPT: render_haproxy_ready()}, mode=0o755)
    result = box.exec("keepalived", "-t", "-f", KEEPALIVED_CONFIG)
    assert result.returncode != 0
    assert "300" in result.stdout + result.stderr


# --- pgBackRest options ---------------------------------------------------------------------------


def pgbackrest_option_problems(config_text: str, outputs: list[str]) -> list[str]:
    """Options of the file that no `<command> command begin` line shows with the file's value."""
    seen: set[str] = set()
    for output in outputs:
        for line in output.splitlines():
            if " command begin " in line:
                seen.update(re.findall(r"(--[a-z0-9-]+(?:=\S+)?)", line))
    problems = [
        line
        for output in outputs
        for line in output.splitlines()
        if "WARN:" in line or re.search(r"ERROR: \[03\d\]", line)
    ]
    for line in config_text.splitlines():
        if not line or line[0] in "#[":
            continue
        key, value = line.split("=", 1)
        wanted = {"y": f"--{key}", "n": f"--no-{key}"}.get(value, f"--{key}={value}")
        if key.endswith("cipher-pass"):
            wanted = f"--{key}=<redacted>"
        if wanted not in seen:
            problems.append(f"{key}={value} not in effect")
    return problems


@pytest.mark.parametrize("variant", VARIANTS)
def test_pgbackrest_takes_every_option(variant: str, boxes: BoxFactory) -> None:
    # Option parsing happens before anything else and each command logs the options in effect, so
    # running the commands PostgreSQL and the backup script use (without a database: they stop at
    # the first file they miss) shows whether every line of the file was understood.
    cfg = variant_config(variant)
    text = render_pgbackrest(cfg, cfg.postgres.nodes[0], FAKE_CREDS)
    box = boxes(f"pgbackrest-{variant}", files={PGBACKREST_CONFIG: text})
    outputs = []
    for command in (("backup",), ("archive-push", f"{PG_DATA}/pg_wal/000000010000000000000001")):
        result = box.exec("pgbackrest", f"--stanza={cfg.stanza}", *command, user="postgres")
        outputs.append(result.stdout + result.stderr)
    assert pgbackrest_option_problems(text, outputs) == []
    # The check can fail: a misspelt option and an invalid value are both reported.
    broken = text.replace("start-fast=y", "start-fasst=y").replace("process-max=", "process-max=x")
    box.put({PGBACKREST_CONFIG: broken})
    result = box.exec("pgbackrest", f"--stanza={cfg.stanza}", "backup", user="postgres")
    problems = pgbackrest_option_problems(broken, [result.stdout + result.stderr])
    assert any("start-fasst" in p for p in problems) and any("process-max" in p for p in problems), problems


# --- scripts --------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_scripts_parse(variant: str, boxes: BoxFactory) -> None:
    cfg = variant_config(variant)
    scripts = {
        POST_BOOTSTRAP_SCRIPT: render_post_bootstrap_script(cfg),
        BACKUP_SCRIPT: render_backup_script(cfg),
        DCS_SYNC_SCRIPT: render_dcs_sync_script(cfg),
    }
    box = boxes(f"scripts-{variant}", files=scripts)
    for path in scripts:
        result = box.exec("bash", "-n", path)
        assert (result.returncode, result.stderr) == (0, ""), path
    box.put({"/tmp/broken": render_backup_script(cfg).replace("esac", "")})
    assert box.exec("bash", "-n", "/tmp/broken").returncode != 0

"""A stranger on the cluster network, holding no cluster credentials, tries what an attacker would; the same
tries from the cluster's own hosts show each refusal is the rule's, not a network failure (the controls)."""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import tarfile
from collections.abc import Iterator

import docker

from render.etcd import ETCDCTL_ARGS
from render.paths import (
    ETCD_CONFIG,
    ETCD_TLS_CERT,
    ETCD_TLS_KEY,
    HAPROXY_TLS_CLIENT,
    PATRONI_ETCD_CERT,
    PATRONI_ETCD_KEY,
    PG_BIN,
)
from tests.e2e.scenarios import ClusterUnderTest
from tests.tools.docker_boxes import ensure_image

PSQL = f"{PG_BIN}/psql"
WRONG = "not-the-password"
TLS_DIR = "/etc/patroni/tls"
# Patroni's unsafe endpoints: each changes the cluster. The safe ones answer anyone, over TLS.
UNSAFE = (("POST", "/reload"), ("POST", "/restart"), ("DELETE", "/restart"), ("POST", "/reinitialize"),
          ("POST", "/switchover"), ("DELETE", "/switchover"), ("POST", "/failover"), ("PATCH", "/config"),
          ("PUT", "/config"), ("POST", "/failsafe"))
SAFE = ("/", "/health", "/cluster", "/config", "/history", "/patroni", "/leader", "/replica")
# A CA of the stranger's own and a client certificate it signed (openssl in the stranger).
OTHER_CA = ("mkdir -p /tmp/rogue && cd /tmp/rogue && "
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 1 "
            "-subj /CN=rogue-ca 2>/dev/null && "
            "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key -out client.csr "
            "-subj /CN=pg-1 2>/dev/null && "
            "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 1 "
            "2>/dev/null && echo made")


class Stranger:
    """A container of the node image (psql, curl, openssl, etcdctl) at an address no rule lists."""

    def __init__(self, container: docker.models.containers.Container, address: str) -> None:
        self.container = container
        self.address = address

    def run(self, *argv: str, env: dict[str, str] | None = None) -> str:
        """What the command printed (stdout and stderr); its exit status is not the point."""
        _, output = self.container.exec_run(list(argv), environment=env)
        return str(output.decode(errors="replace"))


@contextlib.contextmanager
def stranger(c: ClusterUnderTest, address: str) -> Iterator[Stranger]:
    """A stranger at `address` on the cluster's network for the block."""
    client = docker.from_env()
    name = f"{c.name}-stranger"
    for old in client.containers.list(all=True, filters={"name": f"^{name}$"}):
        old.remove(force=True)
    container = client.containers.create(ensure_image(), ["sleep", "infinity"], name=name, network_disabled=False)
    try:
        client.networks.get("bridge").disconnect(container)
        client.networks.get(c.hosts.network).connect(container, ipv4_address=address)  # type: ignore[attr-defined]
        container.start()
        yield Stranger(container, address)
    finally:
        container.remove(force=True)


def etcd_address(c: ClusterUnderTest, member: str) -> str:
    """The address etcd member `member` advertises (its etcd.yml)."""
    conf = c.hosts.exec(member, "cat", ETCD_CONFIG)
    url = next(line.split()[-1] for line in conf.splitlines() if line.startswith("advertise-client-urls:"))
    return url.removeprefix("https://").rsplit(":", 1)[0]


def firewall_drops_strangers(c: ClusterUnderTest, s: Stranger) -> None:
    """ssh target: each host's firewall drops the stranger's connections to every cluster port (no answer, not
    even a refusal), while a member reaches the same ports (the control)."""
    leader = c.patroni.leader()
    assert leader
    other = next(n for n in c.pg_nodes if n != leader)
    targets = {"PostgreSQL": (leader, c.addresses[leader], 5432), "Patroni REST": (leader, c.addresses[leader], 8008),
               "HAProxy read-write": (c.haproxy[0], c.vip, c.rw.port),
               "etcd client": (c.etcd[0], etcd_address(c, c.etcd[0]), 2379)}
    probe = "timeout 4 bash -c '</dev/tcp/{}/{}' 2>&1; echo rc=$?"
    for what, (_, address, port) in targets.items():
        said = s.run("bash", "-c", probe.format(address, port))
        assert "rc=124" in said, f"{what} ({address}:{port}) from a stranger: {said}"  # dropped: the wait ran out
        said = c.hosts.exec(other, "bash", "-c", probe.format(address, port), check=False)
        assert "rc=0" in said, f"{what} ({address}:{port}) from the member {other}: {said}"
    print(f"a stranger at {s.address}: {', '.join(targets)} dropped by the hosts' firewalls; a member gets in")


@contextlib.contextmanager
def firewall_opened_to(c: ClusterUnderTest, address: str) -> Iterator[None]:
    """Every host's firewall let `address` in for the block (a rule the tests add by hand), so the layers behind
    it are tried on their own; then each host loads its ruleset again, which has no such rule."""
    rule = f"nft insert rule inet pgha input ip saddr {address} accept comment pgha-e2e-opened"
    for node in c.all_hosts:
        c.hosts.exec(node, "bash", "-c", rule)
    try:
        yield
    finally:
        for node in c.all_hosts:
            c.hosts.exec(node, "systemctl", "restart", "pgha-firewall")
            assert "pgha-e2e-opened" not in c.hosts.exec(node, "nft", "list", "table", "inet", "pgha"), node


def curl(method: str, url: str, *extra: str, password: bool = False) -> list[str]:
    """curl printing the HTTP status (000: no HTTP answer), the password (when asked) from the environment."""
    auth = ["--variable", "%PGHA_REST_PASSWORD", "--expand-user", "patroni:{{PGHA_REST_PASSWORD}}"] if password else []
    return ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "-X", method, *extra, *auth, url]


def rest_refuses_strangers(c: ClusterUnderTest, s: Stranger) -> None:
    """The REST API: reads over TLS only; every unsafe endpoint refused to a stranger, without the password
    and with the real one (a stolen password alone is no use), and a certificate of another CA refused at the
    handshake; from a member, its certificate gets to the password check (the control)."""
    leader = c.patroni.leader()
    assert leader
    other = next(n for n in c.pg_nodes if n != leader)
    base = f"{c.addresses[leader]}:8008"
    password = c.hosts.exec(leader, "python3", "-c", "import yaml; print(yaml.safe_load(open("
                            "'/etc/patroni/patroni.yml'))['restapi']['authentication']['password'])").strip()
    env = {"PGHA_REST_PASSWORD": password}
    s.container.put_archive("/tmp", _tar("ca.crt", c.ca_certificate))
    for path in SAFE:
        tls = s.run(*curl("GET", f"https://{base}{path}", "--cacert", "/tmp/ca.crt")).strip()
        plain = s.run(*curl("GET", f"http://{base}{path}")).strip()
        assert tls in {"200", "503"} and plain == "000", f"GET {path}: over TLS {tls}, in plain text {plain}"
    assert "made" in s.run("bash", "-c", OTHER_CA)
    rogue = ("--cert", "/tmp/rogue/client.crt", "--key", "/tmp/rogue/client.key")
    for method, path in UNSAFE:
        url = f"https://{base}{path}"
        without = s.run(*curl(method, url, "--cacert", "/tmp/ca.crt")).strip()
        stolen = s.run(*curl(method, url, "--cacert", "/tmp/ca.crt", password=True), env=env).strip()
        forged = s.run(*curl(method, url, "--cacert", "/tmp/ca.crt", *rogue, password=True), env=env).strip()
        assert (without, stolen, forged) == ("403", "403", "000"), \
            f"{method} {path} from a stranger: no password {without}, the real one {stolen}, another CA's cert {forged}"
    # The controls, from a member: without its certificate refused, with it and a wrong password asked for one.
    member = ("--cacert", f"{TLS_DIR}/ca.crt", "--cert", f"{TLS_DIR}/server.crt", "--key", f"{TLS_DIR}/server.key")
    no_cert = c.hosts.exec(other, *curl("POST", f"https://{base}/reload", "--cacert", f"{TLS_DIR}/ca.crt",
                                        password=True), env=env, check=False).strip()
    wrong = c.hosts.exec(other, *curl("POST", f"https://{base}/reload", *member, password=True),
                         env={"PGHA_REST_PASSWORD": WRONG}, check=False).strip()
    assert (no_cert, wrong) == ("403", "401"), f"from {other}: no certificate {no_cert}, wrong password {wrong}"
    print(f"a stranger at {s.address}: {len(SAFE)} reads answered over TLS only; {len(UNSAFE)} unsafe endpoints "
          "refused without the password and with it (403), a certificate of another CA refused at the handshake")


def _tar(name: str, text: str) -> bytes:
    data = text.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def psql(conninfo: str) -> list[str]:
    return [PSQL, f"{conninfo} connect_timeout=5 password={WRONG}", "-XtAc", "SELECT 1"]


def postgres_refuses_strangers(c: ClusterUnderTest, s: Stranger) -> None:
    """pg_hba by role: from a stranger every role is refused by address before any password; from a member the
    superuser and the application roles are refused too, replication and rewind reach the password check; through
    HAProxy a stranger's connection is closed, a cluster host's reaches PostgreSQL's password check."""
    leader = c.patroni.leader()
    assert leader
    other = next(n for n in c.pg_nodes if n != leader)
    target = f"host={c.addresses[leader]} port=5432 sslmode=require"
    db = c.rw.dbname
    tries = {"superuser": f"{target} user=postgres dbname=postgres",
             "replication": f"{target} user=replicator replication=true",
             "rewind": f"{target} user=rewind dbname=postgres",
             "application": f"{target} user={c.rw.user} dbname={db}",
             "read-only": f"{target} user={c.ro.user} dbname={db}"}
    for role, conninfo in tries.items():
        said = s.run(*psql(conninfo))
        # "no pg_hba.conf entry for host ..." (for a replication connection: "... for replication connection
        # from host ...")
        assert "no pg_hba.conf entry for" in said and f'host "{s.address}"' in said, f"{role} from a stranger: {said}"
    for role in ("superuser", "application", "read-only"):
        said = c.hosts.exec(other, *psql(tries[role]), check=False)
        assert "no pg_hba.conf entry" in said, f"{role} from the member {other}: {said}"
    for role in ("replication", "rewind"):  # the controls: the member's address and role are admitted
        said = c.hosts.exec(other, *psql(tries[role]), check=False)
        assert "password authentication failed" in said, f"{role} from the member {other}: {said}"
    through = f"host={c.vip} port={c.rw.port} sslmode=require user={c.rw.user} dbname={db}"
    said = s.run(*psql(through))
    assert "password authentication failed" not in said and ("closed the connection" in said or "reset" in said
                                                              or "SSL SYSCALL" in said), f"through HAProxy: {said}"
    said = c.hosts.exec(other, *psql(through), check=False)
    assert "password authentication failed" in said, f"through HAProxy from the member {other}: {said}"
    print(f"a stranger at {s.address}: every role refused by pg_hba on {leader}, its connection through HAProxy "
          "closed; from a member only replication and rewind reach the password check")


def etcd_refuses_strangers(c: ClusterUnderTest, s: Stranger) -> None:
    """etcd: a stranger can neither write nor delete Patroni's keys. Plain HTTP gets no answer (the port speaks
    TLS only); TLS without a client certificate, or with another CA's, fails the handshake; a certificate of the
    cluster CA is no right by itself: HAProxy's (its name is no etcd user) and Patroni's (nameless) without the
    password are denied, and the peer port refuses any that is not a member's. The controls: Patroni's
    certificate with its password writes under Patroni's prefix (and only there), root on a member reads the
    leader key, a member's certificate gets into the peer port."""
    member = c.etcd[0]
    address = etcd_address(c, member)
    client, peer = f"{address}:2379", f"{address}:2380"
    node = c.pg_nodes[0]
    conf = c.hosts.exec(node, "python3", "-c", "import json, yaml; print(json.dumps(yaml.safe_load(open("
                        "'/etc/patroni/patroni.yml'))))")
    patroni = json.loads(conf)
    prefix = f"{patroni['namespace']}{patroni['scope']}/"
    probe, leader_key = f"{prefix}pgha-e2e-attack", f"{prefix}leader"
    files = {"ca.crt": c.ca_certificate,
             "haproxy.pem": c.hosts.exec(c.haproxy[0], "cat", HAPROXY_TLS_CLIENT),
             "patroni.crt": c.hosts.exec(node, "cat", PATRONI_ETCD_CERT),
             "patroni.key": c.hosts.exec(node, "cat", PATRONI_ETCD_KEY)}
    for name, text in files.items():
        s.container.put_archive("/tmp", _tar(name, text))
    assert "made" in s.run("bash", "-c", OTHER_CA)

    def etcdctl(endpoint: str, *tls: str, env: dict[str, str] | None = None, what: tuple[str, ...] = ()) -> str:
        args = ("etcdctl", "--dial-timeout=3s", "--command-timeout=5s", f"--endpoints={endpoint}", *tls)
        return s.run("bash", "-c", f"{shlex.join(args + what)} 2>&1; echo rc=$?", env=env).strip()

    def attempts(endpoint: str, *tls: str, env: dict[str, str] | None = None) -> list[str]:
        return [etcdctl(endpoint, *tls, env=env, what=("put", probe, "forged")),
                etcdctl(endpoint, *tls, env=env, what=("del", leader_key))]

    ca = ("--cacert=/tmp/ca.crt",)
    tries = {
        "plain HTTP": attempts(f"http://{client}"),
        "TLS without a certificate": attempts(f"https://{client}", *ca),
        "another CA's certificate": attempts(f"https://{client}", *ca, "--cert=/tmp/rogue/client.crt",
                                             "--key=/tmp/rogue/client.key"),
        "HAProxy's certificate": attempts(f"https://{client}", *ca, "--cert=/tmp/haproxy.pem",
                                          "--key=/tmp/haproxy.pem"),
        "Patroni's certificate without the password": attempts(f"https://{client}", *ca, "--cert=/tmp/patroni.crt",
                                                               "--key=/tmp/patroni.key"),
    }
    for what, said in tries.items():
        assert all(not out.endswith("rc=0") for out in said), f"etcd from a stranger with {what}: {said}"
    for what in ("HAProxy's certificate", "Patroni's certificate without the password"):
        # In through the handshake, stopped by access control.
        assert all("permission denied" in out or "user name is empty" in out for out in tries[what]), tries[what]
    # The controls: Patroni's certificate and password write under its prefix, nowhere else.
    login = {"ETCDCTL_USER": f"{patroni['etcd3']['username']}:{patroni['etcd3']['password']}"}
    patroni_tls = (*ca, "--cert=/tmp/patroni.crt", "--key=/tmp/patroni.key")
    allowed = etcdctl(f"https://{client}", *patroni_tls, env=login, what=("put", probe, "by patroni"))
    outside = etcdctl(f"https://{client}", *patroni_tls, env=login, what=("put", "/pgha-e2e-outside", "x"))
    cleaned = etcdctl(f"https://{client}", *patroni_tls, env=login, what=("del", probe))
    assert allowed.endswith("rc=0") and "permission denied" in outside and cleaned.endswith("rc=0"), \
        f"with Patroni's password: under its prefix {allowed}; outside {outside}; cleaning {cleaned}"
    assert "pgha-e2e" not in c.hosts.exec(member, *ETCDCTL_ARGS, "--endpoints=https://127.0.0.1:2379", "get",
                                          "--prefix", "/pgha-e2e"), "nothing written outside the prefix"
    assert leader_key in c.hosts.exec(member, *ETCDCTL_ARGS, "--endpoints=https://127.0.0.1:2379", "get",
                                      leader_key), "root on a member reads the leader key"
    # The peer port: a certificate of the cluster CA that is not a member's is refused at the handshake; the
    # control, from the same stranger with a member's certificate and key (copied off the member), gets in. (The
    # peer port answers HTTP/1.1 only.)
    for name, path in (("member.crt", ETCD_TLS_CERT), ("member.key", ETCD_TLS_KEY)):
        s.container.put_archive("/tmp", _tar(name, c.hosts.exec(member, "cat", path)))
    # curl's error goes to the same stream as its status (--stderr -): docker interleaves two streams at random.
    peer_probe = ["curl", "-sS", "--stderr", "-", "-o", "/dev/null", "-w", "\ncode=%{http_code}\n", "--http1.1",
                  "--max-time", "5", "--cacert", "/tmp/ca.crt"]
    stranger_peer = s.run(*peer_probe, "--cert", "/tmp/haproxy.pem", f"https://{peer}/version").strip()
    member_peer = s.run(*peer_probe, "--cert", "/tmp/member.crt", "--key", "/tmp/member.key",
                        f"https://{peer}/version").strip()
    # Refused: the peer port's TLS alert. Admitted: past the handshake (etcd's raft transport then gives an HTTP
    # client like curl an empty reply or an answer).
    admitted = "bad certificate" not in member_peer and ("code=200" in member_peer or "(52)" in member_peer)
    assert "alert bad certificate" in stranger_peer and "code=000" in stranger_peer.splitlines() and admitted, \
        f"etcd's peer port: HAProxy's certificate: {stranger_peer}; a member's: {member_peer}"
    print(f"a stranger at {s.address}: etcd put/del refused ({', '.join(tries)}); Patroni's password writes under "
          "its prefix only; the peer port admits members only")

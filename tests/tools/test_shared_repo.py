"""The shell that keeps a directory shared by several hosts (the pgBackRest repository on NFS) owned by the same
ids everywhere, run as root in a container of the node image (Debian, PostgreSQL installed, real useradd and
postgresql-common): the converge step takes a fresh mount point and refuses one owned by other ids, and the
install step gives a new host's postgres the ids of the others."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from targets.base import Storage
from targets.converge import shared_dir, shared_owner
from tests.tools.docker_boxes import BoxFactory, Container

pytestmark = pytest.mark.tools
REPO = Storage(name="repo", path="/srv/pgbackrest", owner="postgres")


@pytest.fixture
def host(boxes: BoxFactory) -> Iterator[Container]:
    box = boxes("shared-repo")
    box.exec("install", "-d", REPO.path, user="root", check=True)
    yield box


def run(box: Container, script: str) -> subprocess.CompletedProcess[str]:
    return box.exec("bash", "-c", f"set -euo pipefail\n{script}", user="root")


def ids(box: Container, what: str) -> str:
    return box.exec("stat", "-c", "%u:%g", what, check=True).stdout.strip()


def postgres_ids(box: Container) -> str:
    return box.exec("bash", "-c", "echo $(id -u postgres):$(id -g postgres)", check=True).stdout.strip()


def test_converge_takes_a_fresh_mount_point_and_refuses_one_of_other_ids(host: Container) -> None:
    own = postgres_ids(host)
    assert ids(host, REPO.path) == "0:0"
    taken = run(host, shared_dir("pg-9", REPO))
    assert taken.returncode == 0, taken.stderr
    assert ids(host, REPO.path) == own, "a mount point owned by root becomes postgres's (the control)"
    assert run(host, shared_dir("pg-9", REPO)).returncode == 0 and ids(host, REPO.path) == own

    # Another host's postgres made it, under other ids: taking it would stop that host's WAL archiving.
    host.exec("chown", "150:150", REPO.path, user="root", check=True)
    refused = run(host, shared_dir("pg-9", REPO))
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"pg-9: /srv/pgbackrest is shared and owned by uid:gid 150:150, but postgres here is {own}: every host "
        "sharing it needs the same ids for postgres (a new host takes them from the directory when postgres is "
        "created; on this one change them with usermod/groupmod)")
    assert ids(host, REPO.path) == "150:150", "left as it was"


def test_a_new_host_takes_the_ids_of_the_hosts_sharing_the_repository(host: Container) -> None:
    assert run(host, shared_owner("pg-9", REPO)).stdout == "", "postgres exists: nothing to do"
    drop = "userdel postgres && (groupdel postgres 2>/dev/null || true)"
    host.exec("bash", "-c", drop, user="root", check=True)
    # The control: configuring Debian's package on a host without postgres creates it, under ids of its own.
    reconfigure = ("dpkg-reconfigure", "--frontend=noninteractive", "postgresql-common")
    host.exec(*reconfigure, user="root", check=True)
    assert postgres_ids(host) not in ("150:160", "0:0")
    host.exec("bash", "-c", drop, user="root", check=True)
    assert run(host, shared_owner("pg-9", REPO)).stdout == "", "a root-owned mount point: the package creates it"

    host.exec("chown", "42:42", REPO.path, user="root", check=True)  # _apt's uid on Debian
    refused = run(host, shared_owner("pg-9", REPO))
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("pg-9: /srv/pgbackrest belongs to uid:gid 42:42 (the hosts sharing it), but "
                                      "uid 42 is _apt's here: postgres cannot have the ids of the other hosts")
    assert host.exec("getent", "passwd", "postgres").returncode == 2, "nothing created"

    host.exec("chown", "150:160", REPO.path, user="root", check=True)
    made = run(host, shared_owner("pg-9", REPO))
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == ("pg-9: postgres created with uid:gid 150:160, the owner of /srv/pgbackrest on the "
                                   "hosts sharing it")
    assert host.exec("getent", "passwd", "postgres", check=True).stdout.split(":")[2:4] == ["150", "160"]
    # Debian's package, configured now as on a host installed after this step, keeps that user.
    configured = host.exec(*reconfigure, user="root")
    assert configured.returncode == 0, configured.stdout + configured.stderr
    assert postgres_ids(host) == "150:160"
    assert ids(host, "/var/lib/postgresql") == "150:160"
    assert run(host, shared_dir("pg-9", REPO)).returncode == 0, "the converge after it accepts the repository"

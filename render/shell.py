"""Shell building blocks shared by the ssh target and the day-2 steps (bash, run as root on a cluster host)."""

from __future__ import annotations

import shlex

from render.paths import PG_TLS_CA, REST_SCHEME

HEALTH_DEADLINE_S = 300
# curl to a Patroni REST API from a PostgreSQL node: HTTPS, the server verified against the cluster CA.
REST_CURL = f"curl --cacert {PG_TLS_CA}"


def rest_url(host: str, port: int, path: str = "") -> str:
    """A Patroni REST API URL (`host` may be a shell expansion such as $address)."""
    return f"{REST_SCHEME}://{host}:{port}{path}"


def python_rest_context() -> str:
    """Python source (one expression) of the TLS context urlopen uses for a Patroni REST API on a node."""
    return f"__import__('ssl').create_default_context(cafile={PG_TLS_CA!r})"


def local_rest(port: int, path: str, curl_args: str = "-sf", host: str = "127.0.0.1",
               cacert: str = PG_TLS_CA) -> str:
    """A shell command asking the Patroni REST API on `host` (this node's by default; a shell expansion such
    as $address too) for `path`: over HTTPS, verified against `cacert`; over plain HTTP when Patroni still
    speaks it (a node deployed before the REST API's TLS, on the deployment that moves it, or a node that
    leaves the cluster in that deployment)."""
    return (f'{{ curl --cacert {cacert} {curl_args} "{rest_url(host, port, path)}" || '
            f'curl {curl_args} "http://{host}:{port}{path}"; }}')


def python_rest_open(port: int) -> str:
    """Python source defining `rest_open(path, timeout)`: urlopen of this node's Patroni REST API, over HTTPS
    verified against the cluster CA, or over plain HTTP when the server does not speak TLS (see local_rest).
    An HTTP error status (503 on /primary of a replica) is raised as urlopen raises it."""
    return f"""
def rest_open(path, timeout=5):
    import ssl, urllib.error, urllib.request
    try:
        return urllib.request.urlopen("{rest_url("127.0.0.1", port)}" + path, timeout=timeout,
                                      context=ssl.create_default_context(cafile={PG_TLS_CA!r}))
    except urllib.error.HTTPError:
        raise
    except urllib.error.URLError as error:
        # Only a server that does not speak TLS is asked again over HTTP; one that fails verification is not.
        if not isinstance(error.reason, ssl.SSLError) or isinstance(error.reason, ssl.SSLCertVerificationError):
            raise
    return urllib.request.urlopen("http://127.0.0.1:{port}" + path, timeout=timeout)
"""


def until_ok(check: tuple[str, ...], deadline_s: int = HEALTH_DEADLINE_S) -> str:
    """Bash that retries `check` every second until it succeeds (then shows its output); at the deadline it
    fails with the check's last output."""
    return (
        f"deadline=$((SECONDS + {deadline_s}))\n"
        f"until out=$({shlex.join(check)} 2>&1); do\n"
        f"  if [ $SECONDS -ge $deadline ]; then echo {shlex.quote(f'not healthy after {deadline_s}s: ')}"
        f"{shlex.quote(shlex.join(check)[:200])} >&2; printf '%s\\n' \"$out\" | tail -n 20 >&2; exit 1; fi\n"
        f"  sleep 1\ndone\n"
        f"[ -z \"$out\" ] || printf '%s\\n' \"$out\"\n"
    )


def step_script(*parts: str) -> str:
    """A step's whole script: strict bash, then the parts in order."""
    return "set -euo pipefail\n" + "".join(parts)


def has_running_leader(api_port: int) -> str:
    """A shell condition: this node's Patroni (/cluster) sees a running leader in its cluster."""
    return (f'{local_rest(api_port, "/cluster", "-sf --max-time 5")} | python3 -c \'\n'
            "import json, sys\n"
            'members = json.load(sys.stdin).get("members", [])\n'
            'sys.exit(not any(m.get("role") == "leader" and m.get("state") == "running" for m in members))\' '
            "2>/dev/null")

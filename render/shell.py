"""Shell building blocks shared by the ssh target and the day-2 steps (bash, run as root on a cluster host)."""

from __future__ import annotations

import shlex

HEALTH_DEADLINE_S = 300


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
    return (f'curl -sf --max-time 5 "http://127.0.0.1:{api_port}/cluster" | python3 -c \'\n'
            "import json, sys\n"
            'members = json.load(sys.stdin).get("members", [])\n'
            'sys.exit(not any(m.get("role") == "leader" and m.get("state") == "running" for m in members))\' '
            "2>/dev/null")

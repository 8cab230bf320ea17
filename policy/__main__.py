"""Entry point the Pulumi policy host runs: serves the pgha-policy pack to the engine (never returns)."""

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

# The host runs `python <pack dir>`, which puts the pack first on sys.path; make sure of it however it starts.
# The pack lives in the project and shares its role table and limits (catalog/, standard library only).
PACK_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(PACK_DIR), str(PACK_DIR.parent)]

import pack  # noqa: E402 - after the path set-up above

PolicyPack(
    name=pack.PACK_NAME,
    policies=pack.POLICIES,
    enforcement_level=EnforcementLevel.MANDATORY,
    description="HA minimums and safety rules for the pgha PostgreSQL cluster (etcd, Patroni, HAProxy, pgBackRest)",
)

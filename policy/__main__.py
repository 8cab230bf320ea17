"""Entry point the Pulumi policy host runs: serves the pgha-policy pack to the engine (never returns)."""

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

# The host runs `python <pack dir>`, which puts the pack first on sys.path; make sure of it however it starts.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pack

PolicyPack(
    name=pack.PACK_NAME,
    policies=pack.POLICIES,
    enforcement_level=EnforcementLevel.MANDATORY,
    description="HA minimums and safety rules for the pgha PostgreSQL cluster (etcd, Patroni, HAProxy, pgBackRest)",
)

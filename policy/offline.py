"""Offline policy check: evaluate a stack under the mock runtime and run the pgha-policy pack over what it declares."""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import pulumi
import yaml

from policy import evaluate, pack
from policy.engine import Violation, analyze, load_pack_config, policy_resources

PACK_DIR = Path(__file__).resolve().parent
PLACEHOLDER_KEY = "offline-policy-check-placeholder (never used to connect)"
EPILOG = """\
STACK is a stack name (dev, prod: Pulumi.<STACK>.yaml in the project) or the path of a stack file.
Exit status: 0 without mandatory violations (advisory ones are printed), 1 with any, or when the
stack configuration or the program fails before the policies can run."""


def pack_version() -> str:
    """The version in PulumiPolicy.yaml, which `pulumi preview` prints next to the pack's name."""
    data = yaml.safe_load((PACK_DIR / "PulumiPolicy.yaml").read_text()) or {}
    return str(data.get("version", "0.0.1"))


def load_body(spec: str) -> Callable[[], Any]:
    """`module:function` -> the callable to evaluate instead of the program's main()."""
    module, _, function = spec.partition(":")
    if not module or not function:
        raise ValueError(f"--program: expected MODULE:FUNCTION, got {spec!r}")
    if str(evaluate.ROOT) not in sys.path:
        sys.path.insert(0, str(evaluate.ROOT))
    try:
        target = getattr(importlib.import_module(module), function, None)
    except ImportError as error:
        raise ValueError(f"--program: cannot import {module}: {error}") from None
    if not callable(target):
        raise ValueError(f"--program: {spec} is not a function")
    return target  # type: ignore[no-any-return]


def parse_secrets(pairs: list[str]) -> dict[str, str]:
    """`KEY=VALUE` pairs (KEY with or without `pgha:`) -> {KEY: VALUE}."""
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError("--secret: expected KEY=VALUE")
        found[key.removeprefix("pgha:")] = value
    return found


def render(violations: list[Violation], stack_urn: str, version: str, out: TextIO) -> None:
    """Print violations the way `pulumi preview` lists them: level, pack, policy, resource; then the message."""
    out.write("Policy Violations:\n")
    for i, violation in enumerate(violations):
        urn = violation.urn or stack_urn
        kind = urn.split("::")[-2].rsplit("$", 1)[-1]
        if i:
            out.write("\n")
        out.write(f"    [{violation.level.value}]  {pack.PACK_NAME} v{version}  {violation.policy} "
                  f"({urn.rsplit('::', 1)[-1]}: {kind})\n")
        for line in f"{violation.description}\n{violation.message}".splitlines():
            out.write(f"    {line}\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m policy.offline", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stack", help="stack name (dev, prod) or path of a Pulumi.<stack>.yaml file")
    parser.add_argument("--secret", action="append", default=[], metavar="KEY=VALUE",
                        help="a secret pgha: config value, e.g. sshPrivateKey=...; repeatable")
    parser.add_argument("--preview", action="store_true",
                        help="evaluate like the first `pulumi preview`: generated values are unknown")
    parser.add_argument("--policy-pack-config", metavar="FILE",
                        help="policy config JSON, as for `pulumi preview --policy-pack-config`")
    parser.add_argument("--program", metavar="MODULE:FUNCTION",
                        help="evaluate this function instead of program.main (tests compose components directly)")
    return parser


def main(argv: list[str] | None = None, *, body: Callable[[], Any] | None = None,
         out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the check and return its exit status; `body` replaces program.main (a test hook)."""
    out, err = out or sys.stdout, err or sys.stderr
    args = _parser().parse_args(argv)
    try:
        path = evaluate.stack_file(args.stack)
        if not path.is_file():
            raise ValueError(f"no stack file {path}")
        secrets = parse_secrets(args.secret)
        if "pgha:sshPrivateKey" in evaluate.secure_keys(path) and "sshPrivateKey" not in secrets:
            secrets["sshPrivateKey"] = PLACEHOLDER_KEY
            err.write("note: pgha:sshPrivateKey is encrypted in the stack file: using a throwaway placeholder "
                      "key (the offline check never connects to a host)\n")
        config, _ = evaluate.stack_config(args.stack, {f"pgha:{k}": v for k, v in secrets.items()})
        pack_config = load_pack_config(Path(args.policy_pack_config) if args.policy_pack_config else None)
        body = load_body(args.program) if args.program else body
    except (OSError, ValueError, yaml.YAMLError) as error:
        err.write(f"error: {error}\n")
        return 1
    if config.get("pgha:target") == "ssh" and "sshPrivateKey" not in secrets:
        secrets["sshPrivateKey"] = PLACEHOLDER_KEY
        err.write("note: pgha:sshPrivateKey not given: using a throwaway placeholder key "
                  "(the offline check never connects to a host)\n")

    try:
        graph = evaluate.run_program(args.stack, preview=args.preview, secrets_config=secrets, body=body)
    except pulumi.RunError as error:
        err.write(f"error: {error}\nno policy ran: the program stopped before declaring any resource\n")
        return 1
    except Exception as error:  # what the program raised, as `pulumi preview` would show it
        err.write("".join(traceback.format_exception_only(error)))
        err.write("error: the program failed; no policy ran\n")
        return 1

    view = policy_resources(graph)
    version = pack_version()
    try:
        violations = analyze(pack.POLICIES, view, pack_config, pack.PACK_NAME, version)
    except ValueError as error:
        err.write(f"error: {error}\n")
        return 1
    if violations:
        render(violations, view.stack_urn, version, out)
        out.write("\n")
    mandatory = sum(1 for v in violations if v.level.value == "mandatory")
    out.write(f"Policy Packs run:\n    {pack.PACK_NAME}  v{version}  ({len(pack.POLICIES)} policies over "
              f"{len(graph.resources)} resources of stack {graph.stack}{', as a preview' if graph.preview else ''})\n")
    if violations:
        out.write(f"{mandatory} mandatory and {len(violations) - mandatory} advisory policy violation(s)\n")
    else:
        out.write("no policy violations\n")
    return 1 if mandatory else 0


if __name__ == "__main__":
    sys.exit(main())

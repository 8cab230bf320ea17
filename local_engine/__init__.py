"""The local engine: runs a Pulumi program for real, first deployment and every later one, without a Pulumi CLI.

No Pulumi CLI or provider plugin can be installed on these machines, so this package stands in for
``pulumi preview``, ``pulumi up`` and ``pulumi destroy``: it runs the unmodified program in this
process (the SDK's mock runtime carries the registrations to ``monitor.EngineMonitor``), keeps the
stack's state, diffs every later deployment against it, prints the plan, then creates, updates,
replaces and deletes real Docker objects, runs real commands over SSH and on this machine, and makes
real random values, keys and certificates, as the real engine and providers would (the rules and
their sources are in ``engine.py`` and each provider's module). Anything it does not implement (a
resource type, an input, a resource option) is refused by name.

| resource type | create | diff: update in place | diff: replace | delete |
|---|---|---|---|---|
| docker:index/container:Container | create, networks, uploads, start, wait healthy | restart, memory, cpu (ContainerUpdate); healthcheck, wait, destroy_grace_seconds, ... state only | every other input; delete-before-replace | stop (grace), remove |
| docker:index/network:Network | create | - | every input (ipam set against what Read stored); delete-before-replace when named | remove (retried) |
| docker:index/volume:Volume | create (an existing one is adopted) | - | every input; delete-before-replace when named | remove (retried) |
| docker:index/image:Image | classic build (BuildKit refused) | any input or context file: rebuild | never | nothing |
| command:remote:Command | create over SSH | any input but triggers, connection included: update or create again | triggers | delete, with the stored stdin |
| command:local:Command | create (/bin/sh -c) | any input but triggers | triggers | delete, with the stored stdin |
| random:index/randomPassword, randomString, randomId | generate | - | every input | forget |
| tls:index/privateKey, certRequest, selfSignedCert, locallySignedCert | generate, sign | - | every input; a certificate within early_renewal_hours | forget |
| components (any custom=False type) | state only | inputs | - | state only |
| pulumi:pulumi:StackReference (read) | this stack's own outputs of its last update, secret ones secret, in a preview too; any other stack refused | - | - | - |

Engine behaviour: create-before-delete replacement with the old resource deleted after the program,
delete-before-replace with the cascade to dependents through inputs, deletes of undeclared resources
in reverse dependency order, parallel steps (4 x CPUs), no new step after a failure, aliases,
``replace_on_changes``, ``delete_before_replace``, ``additional_secret_outputs``, ``protect`` (refuses
the delete), secret propagation into state, RegisterResourceOutputs of components, the program's log
messages (``pulumi.log``) shown under the plan as the CLI's diagnostics. Refused: imports and reads of
existing resources other than a StackReference to the stack itself, explicit providers, ``ignore_changes``, ``retain_on_delete``,
``deleted_with``, ``replace_with``, remote components, invokes, refresh.

    from local_engine import Stack
    stack = Stack("dev", project_dir, project="pgha")
    update = stack.up(program.main)     # preview, plan, update
    update.plan.changes()               # {"pgha-dev-haproxy-haproxy-1": "replace", ...}
    stack.destroy()
"""

from __future__ import annotations

from typing import Any

__all__ = ["EngineError", "Plan", "Stack", "Step", "Update", "UpdateFailedError"]


def __getattr__(name: str) -> Any:
    """Lazy exports: the offline policy check imports ``local_engine.stack_file`` without docker or paramiko."""
    if name in ("Stack", "Update", "UpdateFailedError"):
        from local_engine import engine

        return getattr(engine, name)
    if name in ("Plan", "Step"):
        from local_engine import plan

        return getattr(plan, name)
    if name == "EngineError":
        from local_engine.wire import EngineError

        return EngineError
    raise AttributeError(name)

"""Steps and plans: what a deployment does to each resource, and why, before and after it does it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

Op = Literal["same", "create", "update", "replace", "delete"]
#: The symbols `pulumi preview` prints for each operation.
SYMBOLS = {"same": " ", "create": "+", "update": "~", "replace": "+-", "delete": "-"}


@dataclass(frozen=True)
class Step:
    """One operation on one resource. ``keys`` are the inputs that differ from the state, ``replace_keys``
    those that force a replacement; ``why`` says it in words."""

    op: Op
    urn: str
    type: str
    name: str
    custom: bool = True
    keys: tuple[str, ...] = ()
    replace_keys: tuple[str, ...] = ()
    delete_before_replace: bool = False
    why: str = ""

    def line(self) -> str:
        """One line of the plan, like `pulumi preview --diff` prints it."""
        order = " (delete before replace)" if self.op == "replace" and self.delete_before_replace else ""
        why = f": {self.why}" if self.why else ""
        return f"{SYMBOLS[self.op]:>2} {self.type} {self.name} {self.op}{order}{why}"


@dataclass
class Plan:
    """What a preview says a deployment will do, or what a deployment did, in step order."""

    steps: list[Step] = field(default_factory=list)
    # What the program logged while it ran (pulumi.log), as `pulumi preview` prints it under "Diagnostics".
    diagnostics: list[str] = field(default_factory=list)

    def of(self, name: str, type_: str | None = None) -> Step:
        """The step of the resource with this name (and type, where names repeat across types)."""
        found = [s for s in self.steps if s.name == name and (type_ is None or s.type == type_)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} steps for {name!r}" + (f" of type {type_}" if type_ else ""))
        return found[0]

    def ops(self, custom_only: bool = True) -> dict[str, Op]:
        """Resource name -> operation (provider resources only by default; components never act)."""
        return {s.name: s.op for s in self.steps if s.custom or not custom_only}

    def changes(self, custom_only: bool = True) -> dict[str, Op]:
        """Resource name -> operation, for every resource that is not left as it is."""
        return {name: op for name, op in self.ops(custom_only).items() if op != "same"}

    def counts(self) -> dict[str, int]:
        """How many provider resources each operation touches."""
        found: dict[str, int] = {}
        for step in self.steps:
            if step.custom:
                found[step.op] = found.get(step.op, 0) + 1
        return found

    def render(self, title: str = "Plan", steps: Iterable[Step] | None = None) -> str:
        """The plan as text: one line per provider resource that changes, then the counts."""
        chosen = [s for s in (self.steps if steps is None else steps) if s.custom and s.op != "same"]
        lines = [f"{title}:"] + [f"  {s.line()}" for s in chosen]
        counts = self.counts()
        summary = ", ".join(f"{counts[op]} to {op}" for op in ("create", "update", "replace", "delete") if op in counts)
        lines.append(f"  {summary or 'no changes'}; {counts.get('same', 0)} unchanged")
        if self.diagnostics:
            lines += ["Diagnostics:", *(f"  {line}" for text in self.diagnostics for line in text.splitlines())]
        return "\n".join(lines)

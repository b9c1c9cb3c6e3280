"""What a constraint kind is: the reference instruction it implements, how its arguments are drawn, the
sentence that asks for it, the checker, and how a witness answer is shaped to meet it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from personahub_dagster.core.instructions.draft import Draft

Pick = Callable[[int], int]  # pick(n) → 0..n-1, seeded
Args = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    """``id`` is the reference's instruction id (IFEval's ``detectable_format:title``, IFBench's
    ``count:numbers``); ``args`` are that instruction's keyword arguments, named as the reference names
    them, so the same ``(id, args)`` runs in the reference's own checker."""

    id: str
    family: str  # ifeval | ifbench
    draw: Callable[[Pick, str], Args]  # (pick, the request) → args
    says: Callable[[Args], str]
    check: Callable[[str, Args], bool]
    shape: Callable[[Draft, Args], None] = lambda d, a: None  # set the draft up to meet it
    # while it fails on the rendered draft: one step nearer (a sentence more); False when that cannot help
    grow: Callable[[Draft, Args, str], bool] | None = None
    why: str = ""  # what to know about it (a semantics kept on purpose, a reference quirk)


def one_of(pick: Pick, options: tuple | list) -> Any:
    return options[pick(len(options))]


def compare(found: int, relation: str, n: int) -> bool:
    """IFEval's two relations: ``less than`` is strict, ``at least`` is not."""
    return found < n if relation == "less than" else found >= n


def grow_if(d: Draft, a: Args, relation_key: str) -> bool:
    """One more sentence for an "at least" count; a "less than" one is never helped by growing."""
    return a[relation_key] == "at least" and d.grow()


def set_fields(**fields: Any) -> Callable[[Draft, Args], None]:
    """A shape that sets draft fields (a value, or a function of the args)."""

    def shape(d: Draft, a: Args) -> None:
        for key, value in fields.items():
            setattr(d, key, value(a) if callable(value) else value)

    return shape

"""TODO markers: values a drafted plan leaves for a person to fill in.

``drctl client new`` and ``drctl plan import`` write what they cannot know (a server's protection
class, its RPO/RTO, its dependencies and checks, a contact) as a string starting with ``TODO``,
often followed by what is expected (``"TODO: dr | backup-tested | backup-only"``). Validation
reports each marker as one problem at its field, saying what to write there, and drops the other
problems found at or under that field (a ``TODO`` class is not also "not one of ...").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

MARKER = "TODO"


def is_todo(value: Any) -> bool:
    return isinstance(value, str) and value.strip().startswith(MARKER)


def todo_hint(value: str) -> str:
    hint = value.strip()[len(MARKER) :].lstrip(" :-")
    return hint


def find_todos(doc: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every TODO marker of a document as ``(field path parts, the marker's text)``, in document
    order (iterative: a hostile document nests at most as deep as the YAML loader allows)."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [(path, doc)]
    while stack:
        where, value = stack.pop()
        if is_todo(value):
            yield where, value
        elif isinstance(value, dict):
            stack.extend((where + (k,), v) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((where + (i,), v) for i, v in reversed(list(enumerate(value))))


def todo_message(value: str) -> str:
    hint = todo_hint(value)
    expected = f" ({hint})" if hint else ""
    return f"still a TODO{expected}: fill it in, then run `drctl validate` again"


def under(path: str, todo_paths: list[str]) -> bool:
    """Whether the field ``path`` is a TODO field or inside one (``servers[0].checks`` covers
    ``servers[0].checks[1].port``)."""
    return any(path == t or path.startswith((t + ".", t + "[")) for t in todo_paths)

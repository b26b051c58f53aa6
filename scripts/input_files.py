"""Reading the files a user hands to drctl (plans, stack files, ``Pulumi.yaml``) without letting one
of them crash, hang or stall a command.

- :func:`read_input_text`: a regular file only (a directory, FIFO or device is named as such
  instead of being read or blocking on open), at most :data:`MAX_INPUT_BYTES`, UTF-8.
- :func:`parse_yaml`: YAML 1.1 like ``yaml.safe_load``, but bounded: nesting at most
  :data:`MAX_DEPTH` levels, at most :data:`MAX_NODES` values once aliases are expanded (a
  "billion laughs" document is refused before anything walks it), keys must be text and unique
  (the Pulumi CLI refuses duplicates too; YAML would keep the last one silently).

Every refusal is an :class:`InputFileError` (exit 1) whose message is ``FILE: where: what`` with a
line and column when the problem has one. libyaml parses when PyYAML was built with it (fast, and
its parser keeps no Python recursion); composing the nodes stays in Python so the limits apply
while the document is read, not after.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from typing import Any, cast

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from drctl.errors import InvalidInput

MAX_INPUT_BYTES = 10 * 1024 * 1024
MAX_DEPTH = 64
# A plan server is ~75 values: room for plans of over 2,500 servers, while a refusal costs at most
# a few seconds of composing (an alias bomb is refused at its alias, without expanding it).
MAX_NODES = 200_000
# PyYAML's own parser is only re-run for its plainer syntax-error wording on files this small.
_REPARSE_BYTES = 1024 * 1024


class InputFileError(InvalidInput):
    """A file given to drctl cannot be used; ``where`` is ``(file)`` or ``line L, column C``."""

    def __init__(self, file: str, where: str, reason: str) -> None:
        self.file, self.where, self.reason = file, where, reason
        super().__init__(f"{file}: {where}: {reason}")


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB" if n >= 1024 * 1024 else f"{n} bytes"


def read_input_text(path: str | os.PathLike[str], *, what: str, max_bytes: int = MAX_INPUT_BYTES) -> str:
    """The text of ``path``, a regular UTF-8 file of at most ``max_bytes``.

    ``what`` names the file's role in messages (``plan``, ``stack file``). Raises
    :class:`InputFileError`; see :func:`is_missing` to tell an absent file from an unusable one."""
    file = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below anyway.
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise InputFileError(file, "(file)", f"cannot read the {what}: {e.strerror}") from e
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputFileError(
                file,
                "(file)",
                f"cannot read the {what}: it is a directory; give the path of the {what} file itself",
            )
        if not stat.S_ISREG(st.st_mode):
            raise InputFileError(
                file,
                "(file)",
                f"cannot read the {what}: not a regular file; give the path of the {what} file itself",
            )
        if st.st_size > max_bytes:
            raise InputFileError(
                file,
                "(file)",
                f"cannot read the {what}: it is {_size(st.st_size)}, a {what} is at most "
                f"{_size(max_bytes)}; is this the right file?",
            )
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as e:
        raise InputFileError(file, "(file)", f"cannot read the {what}: {e.strerror}") from e
    finally:
        os.close(fd)
    if total > max_bytes:  # grew while being read
        raise InputFileError(
            file, "(file)", f"cannot read the {what}: it grew past {_size(max_bytes)} while being read"
        )
    data = b"".join(chunks)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputFileError(
            file, f"line {line}", f"not UTF-8 text (byte {e.start}); save the {what} as UTF-8"
        ) from e


class _Limits(Exception):
    """Raised inside the composer; becomes an :class:`InputFileError` in :func:`parse_yaml`."""

    def __init__(self, node_or_event: Any, reason: str) -> None:
        super().__init__(reason)
        self.mark, self.reason = node_or_event.start_mark, reason


class _BoundedComposer(Composer):
    """PyYAML's composer, counting depth and the size of every node with its aliases expanded."""

    max_depth = MAX_DEPTH
    max_nodes = MAX_NODES

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._total = 0  # values composed so far, aliases counted at their expanded size
        self._sizes: dict[int, int] = {}  # id(node) -> expanded size; absent while being composed

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        # peek_event comes from the parser class this composer is mixed with.
        event = cast(Any, self).peek_event()
        if isinstance(event, AliasEvent):
            node = super().compose_node(parent, index)
            if id(node) not in self._sizes:
                raise _Limits(event, f"alias *{event.anchor} refers to a value that contains it")
            self._count(event, self._sizes[id(node)])
            return node
        self._depth += 1
        if self._depth > self.max_depth:
            raise _Limits(event, f"values nested more than {self.max_depth} levels deep; flatten the file")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        size = 1
        if isinstance(node, MappingNode):
            pairs: list[tuple[Node, Node]] = node.value
            size += sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in pairs)
        elif isinstance(node, SequenceNode):
            items: list[Node] = node.value
            size += sum(self._sizes[id(x)] for x in items)
        self._sizes[id(node)] = size
        self._count(event, 1)  # its children were counted as they were composed
        return node

    def _count(self, event: Any, size: int) -> None:
        self._total += size
        if self._total > self.max_nodes:
            raise _Limits(
                event,
                f"more than {self.max_nodes} values once aliases are expanded (an alias bomb or a "
                "runaway file); write the values out or split the file",
            )


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _text_key(loader: Any, key_node: Node) -> str:
    if not isinstance(key_node, ScalarNode):
        raise ConstructorError(
            None, None, "a key must be plain text, not a list or a mapping", key_node.start_mark
        )
    key = loader.construct_object(key_node, deep=True)
    if not isinstance(key, str):
        raise ConstructorError(
            None,
            None,
            f"key {key_node.value!r} is read as {type(key).__name__}, not text; quote it",
            key_node.start_mark,
        )
    return key


def _construct_mapping(loader: Any, node: MappingNode, deep: bool = False) -> dict:
    """Keys are text and unique among the mapping's own keys (merged ``<<: *base`` keys may be
    overridden, as YAML defines)."""
    seen: dict[str, Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        key = _text_key(loader, key_node)
        if key in seen:
            raise ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    loader.flatten_mapping(node)
    for key_node, _ in node.value:
        _text_key(loader, key_node)
    return loader.construct_mapping(node, deep=deep)


def _construct_timestamp(loader: Any, node: ScalarNode) -> Any:
    """An unquoted date that is no date (``2027-02-30``) is an error located at its line, not a
    ValueError from deep inside PyYAML."""
    try:
        return SafeConstructor.construct_yaml_timestamp(loader, node)
    except ValueError as e:
        raise ConstructorError(
            None, None, f"{node.value!r} is not a valid date or time ({e})", node.start_mark
        ) from None


def _loader_class(fast: bool, *, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> type:
    """A loader: the bounded composer over libyaml's event parser (``fast``) or PyYAML's own."""
    if fast:
        from yaml._yaml import CParser  # the libyaml binding

        parser_bases: tuple[type, ...] = (CParser,)
    else:
        parser_bases = (yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser)

    class Loader(_BoundedComposer, *parser_bases, SafeConstructor, Resolver):  # type: ignore[misc]
        def __init__(self, stream: str) -> None:
            if fast:
                CParser.__init__(self, stream)
            else:
                yaml.reader.Reader.__init__(self, stream)
                yaml.scanner.Scanner.__init__(self)
                yaml.parser.Parser.__init__(self)
            _BoundedComposer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    Loader.max_nodes, Loader.max_depth = max_nodes, max_depth
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)
    return Loader


_FAST_LOADER = _loader_class(fast=True) if yaml.__with_libyaml__ else None
_PURE_LOADER = _loader_class(fast=False)
_SYNTAX_ERRORS = (yaml.reader.ReaderError, yaml.scanner.ScannerError, yaml.parser.ParserError)


def parse_yaml(text: str, file: str, *, loader: type | None = None) -> Any:
    """The document in ``text`` (``None`` when empty). Raises :class:`InputFileError` located by
    line and column for a syntax error or a limit (see the module docstring)."""
    loader = loader or _FAST_LOADER or _PURE_LOADER
    try:
        try:
            return yaml.load(text, Loader=loader)  # SafeConstructor: no arbitrary objects
        except _SYNTAX_ERRORS:
            if loader is not _FAST_LOADER or len(text) > _REPARSE_BYTES:
                raise
            # libyaml found a syntax error: PyYAML's own parser says what it expected in plainer
            # words (same line and column), so the message is the one drctl always gave.
            return yaml.load(text, Loader=_PURE_LOADER)
    except _Limits as e:
        raise InputFileError(file, f"line {e.mark.line + 1}, column {e.mark.column + 1}", e.reason) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        what = e.problem or e.context or "unreadable YAML"
        if e.context and e.problem and e.context_mark is not None:
            what += f" ({e.context} started at line {e.context_mark.line + 1})"
        raise InputFileError(file, where, f"YAML syntax error: {what}") from None
    except yaml.YAMLError as e:
        raise InputFileError(file, "(file)", f"YAML syntax error: {e}") from None
    except RecursionError:  # a limit above should always come first; never a traceback
        raise InputFileError(file, "(file)", "values nested too deeply; flatten the file") from None


def load_yaml_file(path: str | os.PathLike[str], *, what: str) -> Any:
    """:func:`read_input_text` then :func:`parse_yaml`."""
    return parse_yaml(read_input_text(path, what=what), os.fspath(path))


def is_missing(e: InputFileError) -> bool:
    """Whether ``e`` says the file does not exist (as opposed to unusable)."""
    cause = e.__cause__
    return isinstance(cause, OSError) and cause.errno == errno.ENOENT


def loads_json(data: str | bytes | bytearray) -> Any:
    """``json.loads`` for documents drctl did not write itself (objects in a store, files another
    host wrote): absurdly nested JSON raises ValueError, like any other malformed document, instead
    of a RecursionError that every caller would have to know about."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None

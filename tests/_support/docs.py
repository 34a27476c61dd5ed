"""The generated part of the docs: docs/configuration.md's option table, built from ``StreamOptions``.

Names and defaults come from the dataclass itself; each option's type (as written) and its documentation
(the attribute docstring under the field) are read from the source of ``litestar_resumable/_options.py``
with :mod:`ast`, so the table cannot say anything the code does not. ``tests/test_docs.py`` checks that
the file shows this table; after changing an option, rewrite it with (from the repository root)::

    .venv/bin/python tests/_support/docs.py
"""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
from pathlib import Path

from litestar_resumable import StreamOptions

ROOT = Path(__file__).resolve().parent.parent.parent
OPTIONS_SOURCE = ROOT / "litestar_resumable" / "_options.py"
CONFIGURATION = ROOT / "docs" / "configuration.md"
START = "<!-- options: generated from StreamOptions by tests/_support/docs.py; do not edit -->"
END = "<!-- options: end -->"
REGENERATE = ".venv/bin/python tests/_support/docs.py"
_MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    annotation: str
    default: str
    doc: str


def _one_line(text: str) -> str:
    """A docstring as one Markdown line: reST's ``literal`` becomes `literal`, whitespace one space."""
    return re.sub(r"``(.+?)``", r"`\1`", " ".join(text.split()))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _default(value: object, source: str) -> str:
    """A field's default as users write it: literals by value (bytes also in MiB), others as in the source."""
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, bool | float) or value is None:
        return f"`{value!r}`"
    if isinstance(value, int):
        shown = f"`{value}`"
        return f"{shown} ({value // _MIB} MiB)" if value >= _MIB and value % _MIB == 0 else shown
    return f"`{source}`"


def _docstring(node: ast.stmt | None) -> str | None:
    """The text of a bare string statement (an attribute docstring), else None."""
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
        return None
    return node.value.value if isinstance(node.value.value, str) else None


def _class(tree: ast.Module, name: str) -> ast.ClassDef:
    return next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == name)


def options(source: str | None = None) -> list[Option]:
    """Every field of ``StreamOptions``, in order, with its type, default and attribute docstring."""
    text = OPTIONS_SOURCE.read_text(encoding="utf-8") if source is None else source
    body = _class(ast.parse(text), "StreamOptions").body
    written: dict[str, tuple[str, str, str]] = {}
    for node, after in zip(body, [*body[1:], None], strict=True):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        doc = _docstring(after)
        if doc is None:
            raise ValueError(f"StreamOptions.{name} has no docstring under it in {OPTIONS_SOURCE.name}")
        annotation = ast.get_source_segment(text, node.annotation) or ""
        default = "" if node.value is None else ast.get_source_segment(text, node.value) or ""
        written[name] = (annotation, default, doc)
    fields = dataclasses.fields(StreamOptions)
    if [field.name for field in fields] != list(written):
        raise ValueError(f"the fields of StreamOptions and of its source differ: {list(written)}")
    return [
        Option(
            field.name,
            written[field.name][0],
            _default(field.default, written[field.name][1]),
            _one_line(written[field.name][2]),
        )
        for field in fields
    ]


def aliases(source: str | None = None) -> dict[str, str]:
    """The module's type aliases that option types name (``ConflictPolicy``, ``OwnerFunction``)."""
    text = OPTIONS_SOURCE.read_text(encoding="utf-8") if source is None else source
    found: dict[str, str] = {}
    for node in ast.parse(text).body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id[:1].isupper()
            and isinstance(node.value, ast.Subscript)
        ):
            found[node.targets[0].id] = ast.get_source_segment(text, node.value) or ""
    return found


def option_table() -> str:
    """The Markdown block that docs/configuration.md shows between ``START`` and ``END``."""
    rows = options()
    lines = [
        START,
        "| option | type | default | what it does |",
        "|---|---|---|---|",
        *(f"| `{o.name}` | `{_cell(o.annotation)}` | {_cell(o.default)} | {_cell(o.doc)} |" for o in rows),
    ]
    named = {name: value for name, value in aliases().items() if any(name in o.annotation for o in rows)}
    if named:
        lines += ["", "Types: " + "; ".join(f"`{name}` is `{value}`" for name, value in named.items()) + "."]
    lines.append(END)
    return "\n".join(lines)


def shown(path: Path = CONFIGURATION) -> str:
    """The block the file shows now, markers included."""
    text = path.read_text(encoding="utf-8")
    return text[text.index(START) : text.index(END) + len(END)]


def rewrite(path: Path = CONFIGURATION) -> bool:
    """Put the current table into ``path``; True if that changed the file."""
    text = path.read_text(encoding="utf-8")
    start, end = text.index(START), text.index(END) + len(END)
    new = text[:start] + option_table() + text[end:]
    if new == text:
        return False
    path.write_text(new, encoding="utf-8")
    return True


if __name__ == "__main__":
    changed = rewrite()
    sys.stdout.write(f"{CONFIGURATION.relative_to(ROOT)}: {'rewritten' if changed else 'up to date'}\n")

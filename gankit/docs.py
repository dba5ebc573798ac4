"""The parts of docs/plugins.md that are read off the code: every ``gankit.nn`` layer with
its signature and meaning, and every member of the plugin protocols with its arguments.

``python -m gankit.docs [FILE]`` rewrites each part between its marker comments in FILE
(docs/plugins.md by default); ``--check`` changes nothing and exits 1 where FILE differs.
A layer or a protocol member without a docstring is an error: the docs are the docstrings.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import sys
import textwrap
import typing
from pathlib import Path

COMMAND = "python -m gankit.docs"

PROTOCOLS = [("gankit.backend", "Backend"), ("gankit.backend", "Trainer"), ("gankit.backend", "World"),
             ("gankit.backend", "Primitives"), ("gankit.data", "Dataset"), ("gankit.data", "DataContext"),
             ("gankit.events", "Exporter"), ("gankit.evaluation", "Metric"),
             ("gankit.evaluation", "FeatureExtractor"), ("gankit.evaluation", "ExtractorContext"),
             ("gankit.evaluation", "Features")]
"""What a plugin implements, or receives from gankit, by its public name."""


class UndocumentedError(Exception):
    """A layer or a protocol member has no docstring to show."""


def markdown(docstring: str) -> str:
    """A docstring as one table cell: one line, Markdown's backticks, ``|`` escaped."""
    return cell(" ".join(docstring.split()).replace("``", "`"))


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def _arguments(node: ast.arguments) -> str:
    """A method's arguments as its source writes them, without ``self``."""
    def one(argument: ast.arg, default: ast.expr | None) -> str:
        text = argument.arg + (f": {ast.unparse(argument.annotation)}" if argument.annotation else "")
        return text if default is None else text + (" = " if argument.annotation else "=") + ast.unparse(default)

    positional = node.posonlyargs + node.args
    defaults = [None] * (len(positional) - len(node.defaults)) + node.defaults
    parts = [one(a, d) for a, d in zip(positional, defaults)][1:]
    if node.vararg or node.kwonlyargs:
        parts.append("*" + (node.vararg.arg if node.vararg else ""))
    parts += [one(a, d) for a, d in zip(node.kwonlyargs, node.kw_defaults)]
    return ", ".join(parts + ([f"**{node.kwarg.arg}"] if node.kwarg else []))


def _layer_signature(cls: type) -> str:
    def default(f: dataclasses.Field) -> str:
        if f.default is not dataclasses.MISSING:
            return f" = {f.default!r}"
        return "" if f.default_factory is dataclasses.MISSING else f" = {f.default_factory()!r}"

    return f"{cls.__name__}({', '.join(f'{f.name}: {f.type}{default(f)}' for f in dataclasses.fields(cls))})"


def _own_docstring(cls: type) -> str:
    """The class's docstring; dataclasses make one from the signature when it has none."""
    doc = cls.__doc__ or ""
    if not doc.strip() or doc.startswith(f"{cls.__name__}("):
        raise UndocumentedError(f"gankit.nn.{cls.__name__} has no docstring; say what it computes and its shapes")
    return inspect.cleandoc(doc)


def layers() -> str:
    from gankit import nn

    rows = [(_layer_signature(cls), _own_docstring(cls)) for cls in (*typing.get_args(nn.Layer), nn.Network,
                                                                     nn.Architecture)]
    return "\n".join(["| `gankit.nn` | meaning |", "|---|---|",
                      *(f"| `{cell(signature)}` | {markdown(doc)} |" for signature, doc in rows)])


def _members(cls: type) -> list[tuple[str, str]]:
    """(signature, docstring) of each public attribute and method written in the class."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    found = []
    for index, node in enumerate(tree.body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            after = tree.body[index + 1] if index + 1 < len(tree.body) else None
            is_doc = isinstance(after, ast.Expr) and isinstance(getattr(after, "value", None), ast.Constant)
            found.append((f"{node.target.id}: {ast.unparse(node.annotation)}", after.value.value if is_doc else ""))
        elif isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
            found.append((f"{node.name}({_arguments(node.args)}){returns}", ast.get_docstring(node) or ""))
    undocumented = [signature for signature, doc in found if not doc.strip()]
    if undocumented:
        raise UndocumentedError(f"{cls.__module__}.{cls.__name__}: give {', '.join(undocumented)} a docstring")
    return found


def protocols() -> str:
    parts = []
    for module, name in PROTOCOLS:
        cls = getattr(importlib.import_module(module), name)
        summary = inspect.cleandoc(cls.__dict__.get("__doc__") or "").split("\n\n")[0]
        if not summary:
            raise UndocumentedError(f"{module}.{name} has no docstring; say what implements it or who gets it")
        parts += [f"**`{module}.{name}`**: {markdown(summary)}", "", "| member | meaning |", "|---|---|",
                  *(f"| `{cell(signature)}` | {markdown(doc)} |" for signature, doc in _members(cls)), ""]
    return "\n".join(parts).rstrip("\n")


SECTIONS = {"gankit.nn layers": ("layers", layers), "protocols": ("protocols", protocols)}
"""Each generated part: its opening marker's name, its end marker's word, and what renders it."""


def render(text: str) -> str:
    """``text`` with every generated part rendered afresh between its markers."""
    for name, (word, make) in SECTIONS.items():
        begin, end = f"<!-- {name}: generated by {COMMAND} -->", f"<!-- end of generated {word} -->"
        start = text.find(begin)
        stop = text.find(end, start)
        if start < 0 or stop < 0:
            raise UndocumentedError(f"the file has no {begin} ... {end} part")
        text = f"{text[:start]}{begin}\n{make()}\n{text[stop:]}"
    return text


def main(argv: list[str]) -> int:
    check = "--check" in argv
    path = Path(next((a for a in argv if a != "--check"), "docs/plugins.md"))
    try:
        text = path.read_text()
        fresh = render(text)
    except (OSError, UndocumentedError) as error:
        print(f"error: {path}: {error}", file=sys.stderr)
        return 2
    if fresh == text:
        return 0
    if check:
        print(f"{path} differs from the code; run: {COMMAND} {path}", file=sys.stderr)
        return 1
    path.write_text(fresh)
    print(f"rewrote the generated parts of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

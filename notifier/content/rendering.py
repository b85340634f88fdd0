"""Template checking and rendering in a Jinja2 sandbox.

Templates are written by support staff and rendered with data sent by API callers, so both
sides are untrusted. Three layers keep rendering safe:

1. **At save time** ``check_source`` parses the template and refuses anything a notification
   does not need: attributes or keys starting with ``_`` (the way to ``__class__`` and
   ``__globals__``), names that are not declared variables (``settings``, ``config``,
   ``self``), ``include``/``extends``/``import``/macros, the power operator, filters outside
   an allowlist and loops nested more than two deep.
2. **At render time** ``ImmutableSandboxedEnvironment`` blocks unsafe attribute access and
   mutation of the caller's data, ``StrictUndefined`` turns a missing variable into an error
   instead of an empty string, and ``*`` is checked so ``"x" * 10**9`` cannot exhaust memory.
3. **Output** is capped per part, and HTML parts are autoescaped.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import (
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    UndefinedError,
    meta,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

ALLOWED_FILTERS = frozenset(
    {
        "abs", "capitalize", "center", "default", "d", "e", "escape", "first", "float",
        "format", "int", "join", "last", "length", "count", "list", "lower", "replace",
        "round", "safe", "sort", "string", "striptags", "sum", "title", "trim", "truncate",
        "unique", "upper", "urlencode", "wordcount", "wordwrap", "min", "max", "reverse",
        "dictsort", "indent", "batch", "slice", "tojson",
    }
)  # fmt: skip
FORBIDDEN_NODES: tuple[type[nodes.Node], ...] = (
    nodes.Extends,
    nodes.Include,
    nodes.Import,
    nodes.FromImport,
    nodes.Macro,
    nodes.CallBlock,
    nodes.Block,
    nodes.Pow,
    nodes.Scope,
    nodes.EvalContextModifier,
)
MAX_LOOP_DEPTH = 2
# Largest string or list a single ``*`` may build while rendering.
MAX_PRODUCT_LENGTH = 100_000
# Largest rendered part, in characters.
MAX_OUTPUT = {"subject": 1_000, "body": 100_000, "html": 1_000_000}


class TemplateRejected(ValueError):
    """A template breaks a rule. ``fields`` maps each offending part to its problems."""

    def __init__(self, problems: list[str], *, field: str = "template") -> None:
        self.fields: dict[str, list[str]] = {field: list(problems)}
        super().__init__("; ".join(problems))

    @property
    def problems(self) -> list[str]:
        return [problem for problems in self.fields.values() for problem in problems]

    @classmethod
    def from_fields(cls, fields: dict[str, list[str]]) -> TemplateRejected:
        error = cls([])
        error.fields = {name: problems for name, problems in fields.items() if problems}
        error.args = ("; ".join(f"{n}: {p}" for n, ps in error.fields.items() for p in ps),)
        return error


class TemplateRenderError(ValueError):
    """Rendering failed: a missing variable, a sandbox violation or an oversized output."""


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    subject: str
    body: str
    html: str


class _NotifierSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if sized and len(seq) * times > MAX_PRODUCT_LENGTH:
                    raise SecurityError("multiplication result would be too large")
            return operator.mul(left, right)
        return super().call_binop(context, operator_name, left, right)


def _environment(*, autoescape: bool) -> _NotifierSandbox:
    env = _NotifierSandbox(
        autoescape=autoescape, undefined=StrictUndefined, auto_reload=False, cache_size=400
    )
    env.globals.clear()  # no range, lipsum, cycler, joiner, namespace, dict
    env.filters = {name: env.filters[name] for name in ALLOWED_FILTERS if name in env.filters}
    env.tests = {name: env.tests[name] for name in ("defined", "none", "number", "string")}
    return env


_TEXT_ENV = _environment(autoescape=False)
_HTML_ENV = _environment(autoescape=True)


def check_source(source: str, *, declared: Iterable[str], html: bool = False) -> None:
    """Raise ``TemplateRejected`` if ``source`` breaks a rule; see the module docstring."""
    env = _HTML_ENV if html else _TEXT_ENV
    try:
        ast = env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateRejected([f"syntax error on line {exc.lineno}: {exc.message}"]) from exc

    problems: list[str] = []
    for node in ast.find_all(FORBIDDEN_NODES):
        problems.append(f"'{_describe(node)}' is not allowed in notification templates")
    accessed = [node.attr for node in ast.find_all(nodes.Getattr)]
    accessed += [_const(node.arg) for node in ast.find_all(nodes.Getitem)]
    for attr in accessed:
        if isinstance(attr, str) and attr.startswith("_"):
            problems.append(f"access to '{attr}' is not allowed")
    for node in ast.find_all(nodes.Filter):
        if node.name not in ALLOWED_FILTERS:
            problems.append(f"filter '{node.name}' is not allowed")
    for node in ast.find_all(nodes.Test):
        if node.name not in env.tests:
            problems.append(f"test '{node.name}' is not allowed")
    if _loop_depth(ast) > MAX_LOOP_DEPTH:
        problems.append(f"loops may be nested at most {MAX_LOOP_DEPTH} deep")
    undeclared = sorted(meta.find_undeclared_variables(ast) - set(declared))
    if undeclared:
        problems.append("undeclared variables: " + ", ".join(undeclared))
    if problems:
        raise TemplateRejected(sorted(set(problems), key=problems.index))


def render_message(
    *, subject: str, body: str, html: str, variables: Mapping[str, Any]
) -> RenderedMessage:
    """Render the three parts of a message with ``variables``.

    Raises ``TemplateRenderError`` naming the part that failed and why.
    """
    return RenderedMessage(
        subject=_render_part("subject", subject, variables, html=False),
        body=_render_part("body", body, variables, html=False),
        html=_render_part("html", html, variables, html=True),
    )


def _render_part(part: str, source: str, variables: Mapping[str, Any], *, html: bool) -> str:
    if not source:
        return ""
    env = _HTML_ENV if html else _TEXT_ENV
    limit = MAX_OUTPUT[part]
    try:
        template = env.from_string(source)
        return _bounded_join(template.generate(dict(variables)), limit, part)
    except UndefinedError as exc:
        raise TemplateRenderError(f"{part}: {exc.message}") from exc
    except SecurityError as exc:
        raise TemplateRenderError(f"{part}: {exc}") from exc
    except TemplateError as exc:
        raise TemplateRenderError(f"{part}: {exc.message or type(exc).__name__}") from exc
    except (TypeError, ValueError, ArithmeticError, RecursionError) as exc:
        raise TemplateRenderError(f"{part}: {type(exc).__name__}: {exc}") from exc


def _bounded_join(chunks: Iterator[str], limit: int, part: str) -> str:
    out: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise TemplateRenderError(f"{part}: rendered output exceeds {limit} characters")
        out.append(chunk)
    return "".join(out).strip()


def _loop_depth(node: nodes.Node, depth: int = 0) -> int:
    deepest = depth
    for child in node.iter_child_nodes():
        child_depth = depth + 1 if isinstance(child, nodes.For) else depth
        deepest = max(deepest, _loop_depth(child, child_depth))
    return deepest


def _const(node: nodes.Node) -> Any:
    return node.value if isinstance(node, nodes.Const) else None


def _describe(node: nodes.Node) -> str:
    if isinstance(node, nodes.Pow):
        return "**"
    return type(node).__name__.lower()

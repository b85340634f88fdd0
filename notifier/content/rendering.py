"""Template checking and rendering in a Jinja2 sandbox.

Templates are written by support staff and rendered with data sent by API callers, so both
sides are untrusted. Three layers keep rendering safe:

1. **At save time** ``check_source`` parses the template and refuses anything a notification
   does not need: attributes or keys starting with ``_`` (the way to ``__class__`` and
   ``__globals__``), ``str.format`` (whose format string reaches attributes where no check
   can see them), calls other than a few read-only methods, names that are not declared
   variables (``settings``, ``config``) and ``self``, ``include``/``extends``/``import``/
   macros, the block forms of ``filter`` and ``set``, the power operator, filters and tests
   outside an allowlist, recursive loops and loops nested more than two deep.
2. **At render time** the environment in ``content.sandbox`` blocks unsafe attribute access,
   mutation of the caller's data and calls outside a few methods; ``StrictUndefined`` turns
   a missing variable into an error instead of an empty string; no value a template builds
   may pass ``MAX_VALUE_LENGTH`` characters (``"x" * 10**9`` fails before allocating); loops
   have a budget, and a render has a deadline.
3. **Output** is capped per part, and HTML parts are autoescaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError

from notifier.content.sandbox import (
    ALLOWED_FILTERS,
    ALLOWED_TESTS,
    CALLABLE_METHODS,
    compile_template,
    environment,
    render_budget,
)

# str.format and format_map read "{0.__class__}" inside a string, out of check_source's
# sight; the sandbox would stop that while rendering, but refusing them on save tells the
# author at once.
FORMAT_METHODS = frozenset({"format", "format_map"})
FORBIDDEN_NODES: dict[type[nodes.Node], str] = {
    nodes.Extends: "{% extends %}",
    nodes.Include: "{% include %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from ... import %}",
    nodes.Macro: "{% macro %}",
    nodes.CallBlock: "{% call %}",
    nodes.Block: "{% block %}",
    # The block forms collect their whole body in memory before the output cap sees it.
    nodes.FilterBlock: "{% filter %}",
    nodes.AssignBlock: "{% set %}...{% endset %}",
    nodes.Scope: "a scoped block",
    nodes.EvalContextModifier: "{% autoescape %}",
    nodes.Pow: "the ** operator",
}
MAX_LOOP_DEPTH = 2
# Largest rendered part, in characters.
MAX_OUTPUT = {"subject": 1_000, "body": 100_000, "html": 1_000_000}
MIN_REDACTED_LENGTH = 3


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


def check_source(source: str, *, declared: Iterable[str], html: bool = False) -> None:
    """Raise ``TemplateRejected`` if ``source`` breaks a rule; see the module docstring."""
    try:
        ast = environment(html=html).parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateRejected([f"syntax error on line {exc.lineno}: {exc.message}"]) from exc

    problems = _broken_rules(ast)
    try:
        undeclared = sorted(meta.find_undeclared_variables(ast) - set(declared))
    except TemplateSyntaxError as exc:
        # Finding variables compiles the template, which fails on an unknown filter or test;
        # those are named above already. Anything else is an error of its own.
        if not problems:
            problems.append(f"syntax error on line {exc.lineno}: {exc.message}")
        undeclared = []
    if undeclared:
        problems.append("undeclared variables: " + ", ".join(undeclared))
    if problems:
        raise TemplateRejected(list(dict.fromkeys(problems)))


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


def without_values(text: str, variables: Mapping[str, Any]) -> str:
    """``text`` with every value in ``variables`` (at any depth) replaced by ``…``.

    A render error can quote the caller's data: ``{{ labels[status] }}`` fails with "'dict
    object' has no attribute '<the value of status>'". Where such an error is stored or
    logged rather than shown to the caller who sent the values, this keeps the data out
    (SPEC guarantee 11). Values shorter than ``MIN_REDACTED_LENGTH`` are left alone: they
    would mangle the message and identify no one.
    """
    values = {str(value) for value in _leaves(variables)}
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= MIN_REDACTED_LENGTH:
            text = text.replace(value, "…")
    return text


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    elif value is not None and not isinstance(value, bool):
        yield value


def render_subject(source: str, variables: Mapping[str, Any]) -> str:
    """Render only a subject; raises ``TemplateRenderError`` as ``render_message`` does."""
    return _render_part("subject", source, variables, html=False)


def variables_used(source: str) -> list[str]:
    """The variables ``source`` reads, sorted: for messages that name them."""
    return sorted(meta.find_undeclared_variables(environment(html=False).parse(source)))


def _broken_rules(ast: nodes.Template) -> list[str]:
    problems = [
        f"{_describe(node)} is not allowed in notification templates"
        for node in ast.find_all(tuple(FORBIDDEN_NODES))
    ]
    for name in _accessed_names(ast):
        if name.startswith("_"):
            problems.append(f"access to '{name}' is not allowed")
        elif name in FORMAT_METHODS:
            problems.append(f"'{name}' is not allowed: use ~ to join text, or the format filter")
    for call in ast.find_all(nodes.Call):
        callee = _name_of(call.node)
        if callee is None:
            problems.append("calling a computed name is not allowed; use a filter instead")
        elif callee not in CALLABLE_METHODS | FORMAT_METHODS:
            problems.append(f"calling '{callee}()' is not allowed; use a filter instead")
    problems += [
        f"filter '{node.name}' is not allowed"
        for node in ast.find_all(nodes.Filter)
        if node.name not in ALLOWED_FILTERS
    ]
    problems += [
        f"test '{node.name}' is not allowed"
        for node in ast.find_all(nodes.Test)
        if node.name not in ALLOWED_TESTS
    ]
    # Jinja binds ``self`` to the template itself whatever the variables say.
    if any(node.name == "self" for node in ast.find_all(nodes.Name)):
        problems.append("'self' is not allowed in notification templates")
    if any(node.recursive for node in ast.find_all(nodes.For)):
        problems.append("recursive loops are not allowed")
    if _loop_depth(ast) > MAX_LOOP_DEPTH:
        problems.append(f"loops may be nested at most {MAX_LOOP_DEPTH} deep")
    return problems


def _accessed_names(ast: nodes.Template) -> Iterator[str]:
    """Attribute and key names read by ``x.name``, ``x['name']`` and ``attribute='a.b'``."""
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        name = _name_of(node)
        if name is not None:
            yield name
    for node in ast.find_all(nodes.Filter):
        for keyword in node.kwargs:
            path = _const(keyword.value)
            if keyword.key == "attribute" and isinstance(path, str):
                yield from path.split(".")


def _name_of(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node, nodes.Getitem):
        key = _const(node.arg)
        return key if isinstance(key, str) else None
    return node.name if isinstance(node, nodes.Name) else None


def _loop_depth(node: nodes.Node, depth: int = 0) -> int:
    deepest = depth
    for child in node.iter_child_nodes():
        child_depth = depth + 1 if isinstance(child, nodes.For) else depth
        deepest = max(deepest, _loop_depth(child, child_depth))
    return deepest


def _const(node: nodes.Node) -> Any:
    return node.value if isinstance(node, nodes.Const) else None


def _describe(node: nodes.Node) -> str:
    return next(what for kind, what in FORBIDDEN_NODES.items() if isinstance(node, kind))


def _render_part(part: str, source: str, variables: Mapping[str, Any], *, html: bool) -> str:
    if not source:
        return ""
    try:
        with render_budget():
            template = compile_template(source, html=html)
            return _bounded_join(template.generate(dict(variables)), MAX_OUTPUT[part])
    except UndefinedError as exc:
        raise TemplateRenderError(f"{part}: {exc.message}") from exc
    except TemplateError as exc:
        raise TemplateRenderError(f"{part}: {exc.message or type(exc).__name__}") from exc
    except (TypeError, ValueError, LookupError, ArithmeticError, RecursionError) as exc:
        raise TemplateRenderError(f"{part}: {type(exc).__name__}: {exc}") from exc


def _bounded_join(chunks: Iterator[str], limit: int) -> str:
    out: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise SecurityError(f"rendered output exceeds {limit} characters")
        out.append(chunk)
    return "".join(out).strip()

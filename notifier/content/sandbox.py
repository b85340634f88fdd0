"""The Jinja2 environment notification templates render in: a sandbox where every value is bounded.

``ImmutableSandboxedEnvironment`` already blocks unsafe attributes and mutation of the
caller's data. It does nothing about size: ``"x" * 10**9``, ``"%0999999999d" % 1``,
``s|replace("", s)`` or a chain of ``{% set a = a ~ a %}`` each exhaust memory in one step,
before any output cap sees a character. Here no value a template builds may pass
``MAX_VALUE_LENGTH`` characters: ``*``, ``+``, ``%``, ``~``, method calls, every filter and
every ``{{ }}`` check sizes *before* building. Only the methods in ``CALLABLE_METHODS`` may
be called. Loops share a budget of iterations, and a render has a deadline, both active
inside ``render_budget()``.
"""

from __future__ import annotations

import functools
import re
import time
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from itertools import chain
from typing import Any

from jinja2 import (
    Environment,
    StrictUndefined,
    Template,
    Undefined,
    nodes,
    pass_environment,
    pass_eval_context,
)
from jinja2 import filters as jinja_filters
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer
from markupsafe import Markup, soft_str

# Not "safe": in an HTML part it would let an API caller's variable inject markup into the
# email. Markup belongs in the template text itself, which support staff write.
ALLOWED_FILTERS = frozenset(
    {
        "abs", "capitalize", "center", "default", "d", "e", "escape", "first", "float",
        "format", "int", "join", "last", "length", "count", "list", "lower", "replace",
        "round", "sort", "string", "striptags", "sum", "title", "trim", "truncate",
        "unique", "upper", "urlencode", "wordcount", "wordwrap", "min", "max", "reverse",
        "dictsort", "indent", "batch", "slice", "tojson",
    }
)  # fmt: skip
ALLOWED_TESTS = ("defined", "none", "number", "string")
# The only methods a template may call: read-only, and none returns much more than it gets.
CALLABLE_METHODS = frozenset(
    {
        "get", "items", "keys", "values",
        "lower", "upper", "title", "capitalize", "strip", "lstrip", "rstrip",
        "startswith", "endswith", "split",
        "cycle", "changed",
    }
)  # fmt: skip
# Largest string, list or dict (counted as the text it prints as) a template may build.
MAX_VALUE_LENGTH = 100_000
# Largest product of two integers, in bits: plenty for money, not for 10**100000.
MAX_INT_BITS = 4096
# Loop iterations per render, all loops together.
MAX_LOOP_ITERATIONS = 100_000
# Wall-clock time per render: the backstop for work the counts above still let through.
MAX_RENDER_SECONDS = 2.0
MAX_JSON_INDENT = 8
# What ``x.split`` (not called) evaluates to: printed, its repr gives away the object's type
# and memory address, a first step of every sandbox escape. Every value a template prints,
# joins, formats or passes to a filter or method is sized first, so sizing refuses these.
_CALLABLE_TYPES = (
    types.BuiltinMethodType, types.MethodType, types.FunctionType, types.MethodWrapperType,
    types.MethodDescriptorType, types.WrapperDescriptorType, type,
)  # fmt: skip
# One printf conversion: "%%", or "%" with an optional key, flags, width and precision;
# a "*" width or precision is taken from the arguments.
_PRINTF_CONVERSION = re.compile(r"%%|%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def environment(*, html: bool) -> Environment:
    """The environment for HTML parts (autoescaped) or for text parts."""
    return _HTML_ENV if html else _TEXT_ENV


@functools.lru_cache(maxsize=256)
def compile_template(source: str, *, html: bool) -> Template:
    """Compile ``source`` with every ``~`` and loop routed through the checks here.

    Raises ``TemplateSyntaxError``; ``check_source`` is what keeps bad templates out.
    """
    env = environment(html=html)
    ast = env.parse(source)
    _Instrument().visit(ast)
    return env.from_string(ast)


@dataclass(slots=True)
class _RenderBudget:
    iterations_left: int
    deadline: float


# Absent outside render_budget(): while a template is only being checked, Jinja's constant
# folding may call filters too, and those calls are not charged.
_BUDGET: ContextVar[_RenderBudget | None] = ContextVar("notifier_render_budget", default=None)


@contextmanager
def render_budget() -> Iterator[None]:
    """Give the renders inside a fresh loop budget and deadline."""
    budget = _RenderBudget(MAX_LOOP_ITERATIONS, time.monotonic() + MAX_RENDER_SECONDS)
    token = _BUDGET.set(budget)
    try:
        yield
    finally:
        _BUDGET.reset(token)


class _Instrument(NodeTransformer):
    """Route every ``~`` and every loop through ``_concat`` and ``_iterate``.

    Jinja compiles both to plain Python that no environment hook sees. Those two filter
    names start with ``_``, which ``check_source`` refuses, so only this rewrite uses them.
    """

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        parts = nodes.Tuple(node.nodes, "load", lineno=node.lineno)
        return nodes.Filter(parts, "_concat", [], [], None, None, lineno=node.lineno)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "_iterate", [], [], None, None, lineno=node.lineno)
        return node


def _size(value: Any, budget: int = MAX_VALUE_LENGTH) -> int:
    """About how many characters ``value`` prints as; stops counting past ``budget``.

    A shared reference counts every time it appears, because ``str`` and ``join`` write it
    out every time: ``[s, s, s]`` costs nothing to build but three copies of ``s`` to print.
    Raises ``SecurityError`` for a method or function (see ``_CALLABLE_TYPES``).
    """
    if isinstance(value, _CALLABLE_TYPES):
        raise SecurityError("a method may be called, but not printed or passed on")
    if isinstance(value, str):
        return len(value)
    if isinstance(value, int):
        return value.bit_length() // 3 + 1  # decimal digits, rounded up
    items: Iterable[Any]
    if isinstance(value, dict):
        items = chain.from_iterable(value.items())
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        return 1
    total = len(value)
    for item in items:
        if total > budget:
            break
        total += _size(item, budget - total)
    return total


def _check_size(value: Any, what: str) -> None:
    if _size(value) > MAX_VALUE_LENGTH:
        raise SecurityError(f"{what} is longer than {MAX_VALUE_LENGTH} characters")


def _check_estimate(length: int, what: str) -> None:
    if length > MAX_VALUE_LENGTH:
        raise SecurityError(f"{what} would build more than {MAX_VALUE_LENGTH} characters")


def _check_count(count: Any, what: str) -> None:
    if isinstance(count, int) and count > MAX_VALUE_LENGTH:
        raise SecurityError(f"{what} must be at most {MAX_VALUE_LENGTH}")


def _check_product(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SecurityError("'*' would build a number with too many digits")
        return
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(times, int):
            _check_estimate(_size(seq) * times, "'*'")


def _check_printf(template: str, args: Any) -> None:
    """Refuse a ``%`` format whose widths and precisions would pad past the size limit."""
    padding = 0
    for match in _PRINTF_CONVERSION.finditer(template):
        for field in match.groups():
            if field == "*":
                raise SecurityError("a '*' width or precision is not allowed in a % format")
            if field:
                padding += int(field) if len(field) < 10 else MAX_VALUE_LENGTH + 1
    _check_estimate(len(template) + padding + _size(args), "the % format")


def _check_deadline() -> None:
    budget = _BUDGET.get()
    if budget is not None and time.monotonic() > budget.deadline:
        raise SecurityError(f"rendering took longer than {MAX_RENDER_SECONDS} seconds")


def _iterate(iterable: Any) -> Iterator[Any]:
    """A loop's items, each charged to the render's budget."""
    for item in iterable:
        budget = _BUDGET.get()
        if budget is not None:
            budget.iterations_left -= 1
            if budget.iterations_left < 0:
                raise SecurityError(f"loops ran more than {MAX_LOOP_ITERATIONS} times")
        _check_deadline()
        yield item


@pass_eval_context
def _concat(eval_ctx: nodes.EvalContext, parts: tuple[Any, ...]) -> str:
    """``~`` as Jinja does it (``markup_join``/``str_join``), counting as it goes."""
    texts: list[str] = []
    length = 0
    for part in parts:
        _check_size(part, "a value joined with '~'")
        text = soft_str(part) if eval_ctx.autoescape else str(part)
        length += len(text)
        _check_estimate(length, "'~'")
        texts.append(text)
    if eval_ctx.autoescape and any(hasattr(text, "__html__") for text in texts):
        return Markup("").join(texts)
    return "".join(texts)


def _finalize(value: Any) -> Any:
    """Check each ``{{ }}`` value before Jinja turns it into text."""
    _check_size(value, "a printed value")
    return value


# Filters whose output can be far larger than their input, checking their arguments first.
def _center(value: str, width: int = 80) -> str:
    _check_count(width, "center's width")
    return jinja_filters.do_center(value, width)


def _indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = soft_str(s)
    per_line = len(width) if isinstance(width, str) else width
    _check_estimate(len(text) + (text.count("\n") + 1) * per_line, "indent")
    return jinja_filters.do_indent(s, width, first, blank)


@pass_environment
def _wordwrap(
    environment: Environment,
    s: str,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    text = soft_str(s)
    # Two consecutive wrapped lines hold at least ``width`` characters between them.
    lines = 2 * len(text) // max(int(width), 1) + text.count("\n") + 1
    separator = environment.newline_sequence if wrapstring is None else wrapstring
    _check_estimate(len(text) + lines * len(separator), "wordwrap")
    return jinja_filters.do_wordwrap(
        environment, s, width, break_long_words, wrapstring, break_on_hyphens
    )


@pass_eval_context
def _replace(
    eval_ctx: nodes.EvalContext, s: str, old: str, new: str, count: int | None = None
) -> str:
    text, old_text = soft_str(s), soft_str(old)
    hits = text.count(old_text) if old_text else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    _check_estimate(len(text) + hits * len(soft_str(new)), "replace")
    return jinja_filters.do_replace(eval_ctx, s, old, new, count)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_printf(soft_str(value), kwargs or args)
    return jinja_filters.do_format(value, *args, **kwargs)


@pass_eval_context
def _join(
    eval_ctx: nodes.EvalContext, value: Iterable[Any], d: str = "", attribute: Any = None
) -> str:
    items = list(value)
    _check_estimate(_size(items) + len(soft_str(d)) * len(items), "join")
    return jinja_filters.sync_do_join(eval_ctx, items, d, attribute)


def _batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Iterator[list[Any]]:
    _check_count(linecount, "batch's size")
    return jinja_filters.do_batch(value, linecount, fill_with)


def _slice(value: Any, slices: int, fill_with: Any = None) -> Iterator[list[Any]]:
    _check_count(slices, "slice's count")
    return jinja_filters.sync_do_slice(value, slices, fill_with)


@pass_eval_context
def _tojson(eval_ctx: nodes.EvalContext, value: Any, indent: int | None = None) -> Markup:
    # The indent is written once per nesting level on every line.
    width = len(indent) if isinstance(indent, str) else indent
    if isinstance(width, int) and width > MAX_JSON_INDENT:
        raise SecurityError(f"tojson's indent must be at most {MAX_JSON_INDENT}")
    return jinja_filters.do_tojson(eval_ctx, value, indent)


@pass_environment
def _sum(environment: Environment, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    # Adding lists or strings copies the running total each step: quadratic, so numbers only.
    if not isinstance(start, int | float):
        raise SecurityError("sum adds numbers only")
    return jinja_filters.sync_do_sum(environment, iterable, attribute, start)


_BOUNDED_FILTERS: dict[str, Callable[..., Any]] = {
    "center": _center,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "replace": _replace,
    "format": _format,
    "join": _join,
    "batch": _batch,
    "slice": _slice,
    "tojson": _tojson,
    "sum": _sum,
}


def _with_input_check(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter so its arguments are size-checked, and the deadline too, before it runs."""

    # wraps() copies ``jinja_pass_arg``, so Jinja passes the wrapper what it passed ``func``.
    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        _check_deadline()
        for value in chain(args, kwargs.values()):
            _check_size(value, f"the input of filter '{name}'")
        return func(*args, **kwargs)

    return checked


class _NotifierSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus size checks on operators and an allowlist of methods."""

    # Intercepted operators run through call_binop and are never constant-folded, so even
    # checking "{{ '%0999999999d' % 1 }}" allocates nothing.
    intercepted_binops = frozenset({"*", "+", "%", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            raise SecurityError("the ** operator is not allowed")
        if operator == "*":
            _check_product(left, right)
        elif operator == "+" and isinstance(left, str | list | tuple):
            _check_estimate(_size(left) + _size(right), "'+'")
        elif operator == "%" and isinstance(left, str):
            _check_printf(left, right)
        return super().call_binop(context, operator, left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(obj, Undefined):  # calling it raises the usual "is undefined"
            name = getattr(obj, "__name__", None)
            if getattr(obj, "__self__", None) is None or name not in CALLABLE_METHODS:
                raise SecurityError(f"calling {name or type(obj).__name__!r} is not allowed")
            _check_deadline()
            for value in chain((obj.__self__,), args, kwargs.values()):
                _check_size(value, f"the input of {name}()")
        return super().call(context, obj, *args, **kwargs)


def _environment(*, autoescape: bool) -> _NotifierSandbox:
    env = _NotifierSandbox(
        autoescape=autoescape, undefined=StrictUndefined, finalize=_finalize, auto_reload=False
    )
    env.globals.clear()  # no range, lipsum, cycler, joiner, namespace, dict
    env.filters = {
        name: _with_input_check(name, _BOUNDED_FILTERS.get(name, env.filters[name]))
        for name in ALLOWED_FILTERS
        if name in env.filters
    }
    env.filters.update(_concat=_concat, _iterate=_iterate)
    env.tests = {name: env.tests[name] for name in ALLOWED_TESTS}
    return env


_TEXT_ENV = _environment(autoescape=False)
_HTML_ENV = _environment(autoescape=True)

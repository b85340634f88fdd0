"""The template-injection corpus: what a hostile template or hostile data cannot do.

Save time: every entry of ``SAVE_TIME_CORPUS`` is refused by ``check_source`` and by
``check_template_content`` (the service the API and admin call), each with a message naming
the problem. Render time: hostile *values* and templates that pass the save-time rules still
cannot reach private attributes, call arbitrary methods, or use more than bounded memory
and time: each fails with ``TemplateRenderError`` instead.
"""

from __future__ import annotations

import contextlib
import time
import tracemalloc
from typing import Any

import pytest

from notifier.content import sandbox
from notifier.content.rendering import (
    MAX_OUTPUT,
    TemplateRejected,
    TemplateRenderError,
    check_source,
    render_message,
)
from notifier.content.services import check_template_content
from notifier.core.enums import Channel

DECLARED = ("x", "name", "xs", "key", "n")
LONG = "a" * 50_000
# Memory a single render of the corpus below may use at its peak: far above what these
# tiny templates need, far below what the attacks would allocate without the sandbox.
PEAK_BYTES = 20_000_000

# (template, a message each rejection must include)
SAVE_TIME_CORPUS: list[tuple[str, list[str]]] = [
    # The way out of the sandbox: dunder attributes, by attribute, key, filter or format.
    ("{{ x.__class__ }}", ["access to '__class__' is not allowed"]),
    ("{{ x['__class__'] }}", ["access to '__class__' is not allowed"]),
    ("{{ x|attr('__class__') }}", ["filter 'attr' is not allowed"]),
    (
        "{{ ''.__class__.__mro__ }}",
        ["access to '__class__' is not allowed", "access to '__mro__' is not allowed"],
    ),
    (
        "{{ cycler.__init__.__globals__ }}",
        ["access to '__globals__' is not allowed", "undeclared variables: cycler"],
    ),
    (
        "{{ lipsum.__globals__ }}",
        ["access to '__globals__' is not allowed", "undeclared variables: lipsum"],
    ),
    (
        "{{ self.__init__ }}",
        ["'self' is not allowed in notification templates", "access to '__init__'"],
    ),
    ("{{ self }}", ["'self' is not allowed in notification templates"]),
    ("{{ x._private }}", ["access to '_private' is not allowed"]),
    ("{{ xs|sort(attribute='__class__') }}", ["access to '__class__' is not allowed"]),
    ("{{ xs|join(', ', attribute='a.__class__') }}", ["access to '__class__' is not allowed"]),
    # str.format reads attributes named inside the format string.
    ("{{ x.format }}", ["'format' is not allowed"]),
    ('{{ "{0.__class__}".format(x) }}', ["'format' is not allowed"]),
    ("{{ '{0}'['format'](x) }}", ["'format' is not allowed"]),
    ("{{ '{x.__class__}'.format_map(x) }}", ["'format_map' is not allowed"]),
    # Names that are not declared variables: server objects and Jinja's globals.
    ("{{ settings.SECRET_KEY }}", ["undeclared variables: settings"]),
    ("{{ config }}", ["undeclared variables: config"]),
    ("{{ request }}", ["undeclared variables: request"]),
    ("{{ undeclared }}", ["undeclared variables: undeclared"]),
    (
        "{% set x = namespace() %}",
        ["calling 'namespace()' is not allowed", "undeclared variables: namespace"],
    ),
    # Resource exhaustion written into the template.
    (
        "{% for i in range(10**9) %}{% endfor %}",
        [
            "the ** operator is not allowed",
            "calling 'range()' is not allowed",
            "undeclared variables: range",
        ],
    ),
    ("{{ 'a' * 10**9 }}", ["the ** operator is not allowed"]),
    ("{{ 9**9**9 }}", ["the ** operator is not allowed"]),
    ("{{ x.zfill(999999999) }}", ["calling 'zfill()' is not allowed; use a filter instead"]),
    ("{{ x.center(999999999) }}", ["calling 'center()' is not allowed"]),
    ("{{ x() }}", ["calling 'x()' is not allowed"]),
    (
        "{% for a in xs %}{% for b in xs %}{% for c in xs %}{{ c }}"
        "{% endfor %}{% endfor %}{% endfor %}",
        ["loops may be nested at most 2 deep"],
    ),
    ("{% for a in xs recursive %}{{ loop(a) }}{% endfor %}", ["recursive loops are not allowed"]),
    # Other templates, and the statements that build code or capture output.
    ("{% include 'x' %}", ["{% include %} is not allowed in notification templates"]),
    ("{% extends 'x' %}", ["{% extends %} is not allowed in notification templates"]),
    ("{% import 'x' as y %}", ["{% import %} is not allowed in notification templates"]),
    ("{% from 'x' import y %}", ["{% from ... import %} is not allowed"]),
    (
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
        ["{% macro %} is not allowed in notification templates"],
    ),
    ("{% call x() %}{% endcall %}", ["{% call %} is not allowed"]),
    ("{% block b %}{% endblock %}", ["{% block %} is not allowed"]),
    ("{% filter upper %}{{ x }}{% endfilter %}", ["{% filter %} is not allowed"]),
    ("{% set y %}{{ x }}{% endset %}{{ y }}", ["{% set %}...{% endset %} is not allowed"]),
    ("{% autoescape false %}{{ x }}{% endautoescape %}", ["{% autoescape %} is not allowed"]),
    # Filters and tests outside the allowlist.
    ("{{ xs|map('upper') }}", ["filter 'map' is not allowed"]),
    ("{{ xs|map(attribute='__class__') }}", ["filter 'map' is not allowed"]),
    ("{{ x|attr('a') }}", ["filter 'attr' is not allowed"]),
    ("{{ xs|selectattr('a') }}", ["filter 'selectattr' is not allowed"]),
    ("{{ x|pprint }}", ["filter 'pprint' is not allowed"]),
    ("{{ x|xmlattr }}", ["filter 'xmlattr' is not allowed"]),
    ("{% if x is callable %}{% endif %}", ["test 'callable' is not allowed"]),
    # Syntax errors say where.
    ("{{ x ", ["syntax error on line 1"]),
    ("{% for %}", ["syntax error on line 1"]),
    ("line one\n{% if x %}", ["syntax error on line 2"]),
    ("{{ x }}{% endfor %}", ["syntax error on line 1"]),
    ("{% for loop in xs %}{% endfor %}", ["syntax error on line 1"]),
]


def _id(case: tuple[str, list[str]]) -> str:
    return case[0][:40]


class TestSaveTime:
    @pytest.mark.parametrize(
        ("source", "messages"), SAVE_TIME_CORPUS, ids=map(_id, SAVE_TIME_CORPUS)
    )
    def test_check_source_refuses_with_a_message_naming_the_problem(
        self, source: str, messages: list[str]
    ) -> None:
        # when
        with pytest.raises(TemplateRejected) as caught:
            check_source(source, declared=DECLARED)

        # then
        for message in messages:
            assert any(message in problem for problem in caught.value.problems), (
                f"{message!r} not in {caught.value.problems}"
            )

    @pytest.mark.parametrize(
        ("source", "messages"), SAVE_TIME_CORPUS, ids=map(_id, SAVE_TIME_CORPUS)
    )
    @pytest.mark.parametrize("part", ["subject", "body", "html"])
    def test_the_template_service_refuses_it_in_any_part(
        self, source: str, messages: list[str], part: str
    ) -> None:
        # given
        content = {"subject": "Hello", "body": "Hello", "html": ""} | {part: source}

        # when
        with pytest.raises(TemplateRejected) as caught:
            check_template_content(channel=Channel.EMAIL, variables=DECLARED, **content)

        # then
        assert set(caught.value.fields) == {part}
        assert any(messages[0] in problem for problem in caught.value.fields[part])

    def test_every_problem_is_reported_once(self) -> None:
        # when
        with pytest.raises(TemplateRejected) as caught:
            check_source(
                "{{ x.__class__ }}{{ x.__class__ }}{% include 'a' %}{{ nope }}", declared=["x"]
            )

        # then
        assert caught.value.problems == [
            "{% include %} is not allowed in notification templates",
            "access to '__class__' is not allowed",
            "undeclared variables: nope",
        ]

    def test_an_unknown_filter_is_a_rejection_not_a_crash(self) -> None:
        # Finding undeclared variables compiles the template, and Jinja's compiler raises on
        # a filter it does not know: that must come back as a rule, not an exception.
        with pytest.raises(TemplateRejected) as caught:
            check_source("{{ x|no_such_filter }}", declared=["x"])

        assert caught.value.problems == ["filter 'no_such_filter' is not allowed"]

    @pytest.mark.parametrize(
        "source",
        [
            "{{ '%0999999999d' % 1 }}",
            "{{ '%.999999999f' % 1.0 }}",
            "{{ 'a'|center(999999999) }}",
            "{{ 'a'|indent(999999999, true) }}",
            "{{ 'ab'|replace('', 'xxxxxxxxxx')|replace('', 'xxxxxxxxxx')|replace('', 'x') }}",
            "{{ 'a'|wordwrap(1, wrapstring='x' * 100000) }}",
            "{{ [1]|batch(999999999, 0)|list }}",
            "{{ 'a' * 100000 * 100000 }}",
        ],
    )
    def test_checking_never_evaluates_the_template(self, source: str) -> None:
        # Jinja folds constant expressions while compiling, and check_source compiles to find
        # undeclared variables: folding "'%0999999999d' % 1" would allocate a gigabyte on save.
        assert _check_peak_bytes(source) < PEAK_BYTES


class TestRenderTimeEscapes:
    """Values decide what a template touches at render time; the sandbox still holds."""

    @pytest.mark.parametrize("key", ["__class__", "__init__", "__doc__", "__len__"])
    def test_a_dynamic_key_cannot_reach_private_attributes(self, key: str) -> None:
        # given
        check_source("{{ x[key] }}", declared=["x", "key"])

        # when
        with pytest.raises(TemplateRenderError) as caught:
            _render_body("{{ x[key] }}", x="text", key=key)

        # then
        assert f"access to attribute '{key}' of 'str' object is unsafe" in str(caught.value)

    @pytest.mark.parametrize("method", ["format", "format_map", "zfill", "ljust", "join"])
    def test_a_method_named_by_a_value_cannot_be_called(self, method: str) -> None:
        # given: refused on save, but versions published under older rules still render
        source = "{{ x[key]('{0.__class__}') }}"
        with pytest.raises(TemplateRejected, match="calling a computed name is not allowed"):
            check_source(source, declared=["x", "key"])

        # when
        with pytest.raises(TemplateRenderError) as caught:
            _render_body(source, x="text", key=method)

        # then
        assert str(caught.value) == f"body: calling '{method}' is not allowed"

    @pytest.mark.parametrize(
        "source",
        ["{{ '{0.__class__}'.format(x) }}", "{{ x.zfill(999999999) }}", "{{ x.ljust(999999999) }}"],
    )
    def test_the_sandbox_refuses_what_the_save_time_rules_refuse(self, source: str) -> None:
        # A version published before a rule existed is rendered without being checked again.
        with pytest.raises(TemplateRenderError, match="is not allowed"):
            _render_body(source, x="text")

    def test_a_concatenated_key_is_still_private(self) -> None:
        # given
        source = "{% set k = '_' ~ '_class__' %}{{ x[k] }}"
        check_source(source, declared=["x"])

        # then
        with pytest.raises(TemplateRenderError, match="unsafe"):
            _render_body(source, x="text")

    def test_the_callers_data_cannot_be_mutated(self) -> None:
        # given
        xs = [1, 2]

        # when
        with pytest.raises(TemplateRenderError, match="'append' of 'list' object is unsafe"):
            _render_body("{{ xs.append(3) }}", xs=xs)

        # then
        assert xs == [1, 2]

    def test_a_filter_attribute_from_a_value_cannot_reach_private_attributes(self) -> None:
        # given
        source = "{{ xs|sort(attribute=key)|join }}"
        check_source(source, declared=["xs", "key"])

        # then
        with pytest.raises(TemplateRenderError, match="unsafe"):
            _render_body(source, xs=["b", "a"], key="__class__")


class TestRenderTimeLimits:
    """Templates that pass the save-time rules but would exhaust memory or time."""

    @pytest.mark.parametrize(
        ("source", "variables", "message"),
        [
            # The intercepted operators.
            ("{{ name * 1000000 }}", {"name": LONG}, "'*' would build more than"),
            ("{{ xs * 1000000 }}", {"xs": [LONG]}, "'*' would build more than"),
            ("{{ n * n * n * n }}", {"n": 10**400}, "'*' would build a number with too many"),
            ("{{ '%0999999999d' % 1 }}", {}, "the % format would build more than"),
            ("{{ '%*d' % (999999999, 1) }}", {}, "a '*' width or precision is not allowed"),
            ("{{ '%s%s%s' % (name, name, name) }}", {"name": LONG}, "the % format would"),
            (
                "{% set a = xs + xs %}{% set a = a + a %}{% set a = a + a %}{{ a|length }}",
                {"xs": [LONG]},
                "'+' would build more than",
            ),
            # ~ is compiled to plain Python; the sandbox routes it through a counting join.
            (
                "{% set a = name ~ name %}{% set a = a ~ a %}{% set a = a ~ a %}{{ a|length }}",
                {"name": LONG},
                "'~' would build more than",
            ),
            # Values that are cheap to build but huge to print.
            ("{{ [name, name, name] }}", {"name": LONG}, "a printed value is longer than"),
            ("{{ [name, name, name]|join }}", {"name": LONG}, "the input of filter 'join'"),
            ("{{ [name, name, name]|length }}", {"name": LONG}, "the input of filter 'length'"),
            ("{{ [name, name, name] ~ '' }}", {"name": LONG}, "a value joined with '~' is"),
            (
                "{% set b = [name, name] %}{% set c = [b, b] %}{% set d = [c, c] %}{{ d }}",
                {"name": LONG},
                "a printed value is longer than",
            ),
            # Filters whose output can dwarf their input.
            ("{{ name|replace('', name) }}", {"name": LONG}, "replace would build more than"),
            ("{{ name|replace('a', 'bbb') }}", {"name": LONG}, "replace would build more than"),
            ("{{ 'a'|center(999999999) }}", {}, "center's width must be at most 100000"),
            ("{{ name|indent(100) }}", {"name": "a\n" * 5000}, "indent would build more than"),
            (
                "{{ name|wordwrap(1, wrapstring='<br>') }}",
                {"name": "a " * 20_000},
                "wordwrap would build more than",
            ),
            ("{{ xs|join(name) }}", {"xs": list(range(1000)), "name": "x" * 200}, "join would"),
            ("{{ xs|batch(999999999, 0)|list }}", {"xs": [1]}, "batch's size must be at most"),
            ("{{ xs|slice(999999999)|list }}", {"xs": [1]}, "slice's count must be at most"),
            ("{{ xs|tojson(1000) }}", {"xs": [[1]]}, "tojson's indent must be at most 8"),
            ("{{ xs|sum(start=[]) }}", {"xs": [[1]] * 1000}, "sum adds numbers only"),
            ("{{ '%099999999d'|format(1) }}", {}, "the % format would build more than"),
            # A doubling chain that would reach 50 000 * 2**30 characters.
            (
                "{% set a = name ~ name %}" + "{% set a = a ~ a %}" * 30 + "{{ a }}",
                {"name": LONG},
                "'~' would build more than",
            ),
        ],
    )
    def test_oversized_values_fail_before_they_are_built(
        self, source: str, variables: dict[str, Any], message: str
    ) -> None:
        # given
        check_source(source, declared=DECLARED)

        # when
        error, peak_bytes = _render_failure(source, **variables)

        # then
        assert str(error).startswith("body: ")
        assert message in str(error)
        assert peak_bytes < PEAK_BYTES

    def test_nested_loops_over_big_lists_stop_at_the_output_cap(self) -> None:
        # given: a million iterations, each printing 50 characters
        source = "{% for a in xs %}{% for b in xs %}{{ a }}{% endfor %}{% endfor %}"
        xs = ["x" * 50] * 1000
        started = time.monotonic()

        # when
        with pytest.raises(TemplateRenderError) as caught:
            _render_body(source, xs=xs)

        # then
        assert str(caught.value) == f"body: rendered output exceeds {MAX_OUTPUT['body']} characters"
        assert time.monotonic() - started < 5

    def test_loops_that_print_nothing_stop_at_the_iteration_budget(self) -> None:
        # given: a million iterations printing nothing, so the output cap never triggers
        source = "{% for a in xs %}{% for b in xs %}{% endfor %}{% endfor %}done"

        # when
        with pytest.raises(TemplateRenderError) as caught:
            _render_body(source, xs=list(range(1000)))

        # then
        limit = sandbox.MAX_LOOP_ITERATIONS
        assert str(caught.value) == f"body: loops ran more than {limit} times"

    def test_the_iteration_budget_counts_every_loop_of_a_render(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # given
        monkeypatch.setattr(sandbox, "MAX_LOOP_ITERATIONS", 10)
        source = "{% for a in xs %}{% endfor %}{% for b in ys %}{% endfor %}ok"

        # then: 4 + 6 iterations fit, 4 + 7 do not
        assert _render_body(source, xs=[1] * 4, ys=[1] * 6) == "ok"
        with pytest.raises(TemplateRenderError, match="loops ran more than 10 times"):
            _render_body(source, xs=[1] * 4, ys=[1] * 7)

    def test_each_render_gets_a_fresh_iteration_budget(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # given
        monkeypatch.setattr(sandbox, "MAX_LOOP_ITERATIONS", 10)

        # then: three renders of 10 iterations each
        for _ in range(3):
            assert _render_body("{% for a in xs %}{% endfor %}ok", xs=[1] * 10) == "ok"

    def test_a_render_past_its_deadline_stops(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # given: a deadline that has already passed when the render starts
        monkeypatch.setattr(sandbox, "MAX_RENDER_SECONDS", -1.0)

        # then
        with pytest.raises(TemplateRenderError, match=r"rendering took longer than -1\.0 seconds"):
            _render_body("{% for a in xs %}{{ a }}{% endfor %}", xs=[1])


class TestRenderTimeParts:
    @pytest.mark.parametrize(("part", "limit"), sorted(MAX_OUTPUT.items()))
    def test_each_part_is_capped_at_its_own_size(self, part: str, limit: int) -> None:
        # given: chunks of at most 1000 characters, so the cap (not a value limit) decides
        source = "{% for c in chunks %}{{ c }}{% endfor %}"
        chunk = "y" * 1000
        at_limit = [chunk] * (limit // 1000)

        # when
        fits = _render(part, source, chunks=at_limit)

        # then
        assert len(fits) == limit
        with pytest.raises(TemplateRenderError) as caught:
            _render(part, source, chunks=[*at_limit, "y"])
        assert str(caught.value) == f"{part}: rendered output exceeds {limit} characters"

    def test_a_value_with_markup_is_escaped_in_the_html_part_only(self) -> None:
        # given
        name = "<script>alert(1)</script>"

        # when
        message = render_message(
            subject="Hi {{ name }}", body="Hi {{ name }}", html="<p>Hi {{ name }}</p>",
            variables={"name": name},
        )  # fmt: skip

        # then
        assert message.html == "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt;</p>"
        assert message.subject == message.body == f"Hi {name}"

    def test_joining_with_tilde_escapes_the_values_in_html(self) -> None:
        # when
        message = render_message(
            subject="", body="", html="{{ '<b>' ~ name ~ '</b>' }}", variables={"name": "<i>"}
        )

        # then: the whole join is one value, so all of it is escaped, as in plain Jinja
        assert message.html == "&lt;b&gt;&lt;i&gt;&lt;/b&gt;"

    def test_variables_cannot_be_marked_safe_to_inject_markup(self) -> None:
        # when / then: only the template's own text may carry markup
        with pytest.raises(TemplateRejected, match="safe"):
            check_source("{{ name|safe }}", declared=["name"], html=True)


def _render_body(source: str, **variables: Any) -> str:
    return render_message(subject="", body=source, html="", variables=variables).body


def _render(part: str, source: str, **variables: Any) -> str:
    parts = {"subject": "", "body": "", "html": ""} | {part: source}
    return str(getattr(render_message(**parts, variables=variables), part))


def _render_failure(source: str, **variables: Any) -> tuple[TemplateRenderError, int]:
    """Render ``source``, which must fail; return the error and Python's peak memory meanwhile."""
    tracemalloc.start()
    try:
        with pytest.raises(TemplateRenderError) as caught:
            _render_body(source, **variables)
        return caught.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _check_peak_bytes(source: str) -> int:
    """Check ``source``, accepted or not; return Python's peak memory meanwhile."""
    tracemalloc.start()
    try:
        with contextlib.suppress(TemplateRejected):
            check_source(source, declared=DECLARED)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

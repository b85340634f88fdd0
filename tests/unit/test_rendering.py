"""Rendering of ordinary templates, and the channel rules of ``check_template_content``.

The hostile side (injection, resource exhaustion) is in ``test_template_sandbox.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape

from notifier.content.rendering import (
    RenderedMessage,
    TemplateRejected,
    TemplateRenderError,
    check_source,
    render_message,
)
from notifier.content.services import check_template_content
from notifier.core.enums import Channel

# No example database: these run anywhere without leaving a .hypothesis directory behind.
PROPERTIES = settings(database=None, max_examples=200, deadline=None)


def render(source: str, **variables: Any) -> str:
    """Render ``source`` as a text body, after checking it the way saving does."""
    check_source(source, declared=variables)
    return render_message(subject="", body=source, html="", variables=variables).body


class TestOrdinaryTemplates:
    def test_a_loop_over_a_declared_list(self) -> None:
        # given
        source = "{% for item in items %}- {{ item.name }} x{{ item.qty }}\n{% endfor %}"
        items = [{"name": "Socks", "qty": 2}, {"name": "Hat", "qty": 1}]

        # then
        assert render(source, items=items) == "- Socks x2\n- Hat x1"

    def test_loop_variables_and_cycle(self) -> None:
        # given
        source = "{% for x in xs %}{{ loop.index }}{{ loop.cycle('a', 'b') }}{% endfor %}"

        # then
        assert render(source, xs=[7, 8, 9]) == "1a2b3a"

    def test_a_loop_with_else_and_a_condition(self) -> None:
        # given
        source = "{% for x in xs if x > 1 %}{{ x }}{% else %}none{% endfor %}"

        # then
        assert render(source, xs=[1, 2, 3]) == "23"
        assert render(source, xs=[1]) == "none"

    def test_two_nested_loops(self) -> None:
        # given
        source = "{% for row in rows %}{% for cell in row %}{{ cell }}{% endfor %};{% endfor %}"

        # then
        assert render(source, rows=[[1, 2], [3]]) == "12;3;"

    def test_a_loop_over_a_dicts_items(self) -> None:
        # given
        source = "{% for key, value in totals.items() %}{{ key }}={{ value }} {% endfor %}"

        # then
        assert render(source, totals={"a": 1, "b": 2}) == "a=1 b=2"

    @pytest.mark.parametrize(
        ("plan", "expected"), [("pro", "Thanks for going Pro"), ("free", "Upgrade any time")]
    )
    def test_conditionals(self, plan: str, expected: str) -> None:
        # given
        source = (
            "{% if plan == 'pro' %}Thanks for going Pro"
            "{% elif plan == 'team' %}Welcome, team{% else %}Upgrade any time{% endif %}"
        )

        # then
        assert render(source, plan=plan) == expected

    @pytest.mark.parametrize(
        ("source", "variables", "expected"),
        [
            ("{{ xs|join(', ') }}", {"xs": ["a", "b", "c"]}, "a, b, c"),
            ("{{ xs|join(', ', attribute='n') }}", {"xs": [{"n": 1}, {"n": 2}]}, "1, 2"),
            ("{{ nickname|default('friend') }}", {"nickname": ""}, ""),
            ("{{ nickname|default('friend', true) }}", {"nickname": ""}, "friend"),
            ("{{ name|upper }}", {"name": "ada"}, "ADA"),
            ("{{ xs|length }} items", {"xs": [1, 2, 3]}, "3 items"),
            ("{{ text|truncate(9) }}", {"text": "Hello wonderful world"}, "Hello..."),
            ("{{ price|round(2) }}", {"price": 3.14159}, "3.14"),
            ("{{ price|round(0, 'ceil')|int }}", {"price": 3.2}, "4"),
            ("{{ '%.2f'|format(price) }}", {"price": 3.14159}, "3.14"),
            ("{{ '%s has %d items'|format(name, n) }}", {"name": "Ada", "n": 3}, "Ada has 3 items"),
            ("{{ '%(a)s-%(b)s' % pair }}", {"pair": {"a": 1, "b": 2}}, "1-2"),
            ("{{ name|title }}, {{ name|capitalize }}", {"name": "ada b"}, "Ada B, Ada b"),
            ("{{ xs|sort|first }}-{{ xs|max }}", {"xs": [3, 1, 2]}, "1-3"),
            ("{{ xs|sum }}", {"xs": [1, 2, 3.5]}, "6.5"),
            ("{{ xs|unique|list|length }}", {"xs": [1, 1, 2]}, "2"),
            ("{{ text|replace('cat', 'dog') }}", {"text": "cat and cat"}, "dog and dog"),
            ("{{ text|wordcount }}", {"text": "one two three"}, "3"),
            ("{{ url|urlencode }}", {"url": "a b&c"}, "a%20b%26c"),
            ("{{ data|tojson }}", {"data": {"a": [1, 2]}}, '{"a": [1, 2]}'),
            ("{{ xs|batch(2)|list|length }}", {"xs": [1, 2, 3]}, "2"),
            ("{{ text|center(7) }}|", {"text": "abc"}, "abc  |"),
            ("{{ text|wordwrap(5) }}", {"text": "aaa bbb ccc"}, "aaa\nbbb\nccc"),
            ("{{ first ~ ' ' ~ last }}", {"first": "Ada", "last": "Lovelace"}, "Ada Lovelace"),
            ("{{ n + 1 }} {{ n * 2 }} {{ n % 2 }}", {"n": 5}, "6 10 1"),
            ("{{ 'ab' * n }}", {"n": 3}, "ababab"),
            ("{{ user.get('nick', 'friend') }}", {"user": {}}, "friend"),
            ("{{ email.split('@')[1]|lower }}", {"email": "ada@EXAMPLE.com"}, "example.com"),
            ("{{ name.strip().upper() }}", {"name": "  ada "}, "ADA"),
            ("{% if name is defined %}yes{% endif %}", {"name": "x"}, "yes"),
            ("{% set total = a + b %}{{ total }}", {"a": 1, "b": 2}, "3"),
            ("{% with g = 'Hi' %}{{ g }} {{ name }}{% endwith %}", {"name": "Ada"}, "Hi Ada"),
        ],
    )  # fmt: skip
    def test_allowed_filters_methods_and_operators(
        self, source: str, variables: dict[str, Any], expected: str
    ) -> None:
        assert render(source, **variables) == expected

    def test_a_missing_variable_with_a_default_uses_the_default(self) -> None:
        # given
        source = "Hi {{ nickname|default('friend') }}"
        check_source(source, declared=["nickname"])

        # then
        assert render_message(subject="", body=source, html="", variables={}).body == "Hi friend"

    def test_surrounding_whitespace_is_trimmed(self) -> None:
        assert render("\n  Hi {{ name }}  \n", name="Ada") == "Hi Ada"

    def test_all_three_parts_are_rendered(self) -> None:
        # when
        message = render_message(
            subject="Order {{ order_id }}",
            body="Order {{ order_id }} shipped",
            html="<p>Order <b>{{ order_id }}</b> shipped</p>",
            variables={"order_id": "1042"},
        )

        # then
        assert message == RenderedMessage(
            subject="Order 1042",
            body="Order 1042 shipped",
            html="<p>Order <b>1042</b> shipped</p>",
        )

    def test_empty_parts_render_empty(self) -> None:
        assert render_message(subject="", body="", html="", variables={}) == RenderedMessage(
            "", "", ""
        )

    def test_the_callers_values_are_not_changed(self) -> None:
        # given
        variables = {"xs": [3, 1, 2], "user": {"name": "Ada"}}

        # when
        render_message(
            subject="", body="{{ xs|sort|join }}{{ user.name }}", html="", variables=variables
        )

        # then
        assert variables == {"xs": [3, 1, 2], "user": {"name": "Ada"}}


class TestRenderErrors:
    @pytest.mark.parametrize(
        ("parts", "message"),
        [
            ({"subject": "Hi {{ name }}"}, "subject: 'name' is undefined"),
            ({"body": "Hi {{ name }}"}, "body: 'name' is undefined"),
            ({"html": "<p>{{ name }}</p>"}, "html: 'name' is undefined"),
            ({"body": "{{ user.name }}"}, "body: 'dict object' has no attribute 'name'"),
            ({"body": "{% for x in items %}{% endfor %}"}, "body: 'items' is undefined"),
            ({"body": "{{ name ~ '' }}"}, "body: 'name' is undefined"),
            ({"body": "{{ name|upper }}"}, "body: 'name' is undefined"),
        ],
    )
    def test_a_missing_value_is_an_error_naming_the_part_and_the_variable(
        self, parts: dict[str, str], message: str
    ) -> None:
        # given
        content = {"subject": "", "body": "", "html": ""} | parts

        # when
        with pytest.raises(TemplateRenderError) as caught:
            render_message(**content, variables={"user": {}})

        # then
        assert str(caught.value) == message

    @pytest.mark.parametrize(
        ("source", "variables", "message"),
        [
            ("{{ 1 // n }}", {"n": 0}, "body: ZeroDivisionError: integer division or modulo"),
            ("{{ n + 'a' }}", {"n": 1}, "body: TypeError: unsupported operand type(s)"),
            ("{{ n|string|int * 1 }}", {"n": 10**5000}, "body: ValueError: Exceeds the limit"),
        ],
    )  # fmt: skip
    def test_python_errors_become_render_errors(
        self, source: str, variables: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(TemplateRenderError) as caught:
            render(source, **variables)

        assert str(caught.value).startswith(message)


# Text with every kind of character, markup and template syntax included.
VALUES = st.text(st.characters(codec="utf-8") | st.sampled_from("<>&\"'{}%#\n\r\x00"), max_size=300)


class TestArbitraryValues:
    @PROPERTIES
    @given(name=VALUES)
    def test_a_declared_value_always_renders_and_is_escaped_in_html(self, name: str) -> None:
        # given
        check_source("Hi {{ name }}", declared=["name"])

        # when
        message = render_message(
            subject="Hi {{ name }}",
            body="Hi {{ name }}",
            html="Hi {{ name }}",
            variables={"name": name},
        )

        # then
        assert message.body == message.subject == f"Hi {name}".strip()
        assert message.html == str(escape(f"Hi {name}".strip()))
        assert "<" not in message.html
        assert ">" not in message.html

    @PROPERTIES
    @given(values=st.lists(VALUES, max_size=20), separator=st.sampled_from([", ", " | ", ""]))
    def test_a_loop_and_a_join_print_each_value_once(
        self, values: list[str], separator: str
    ) -> None:
        # when
        looped = render("{% for v in values %}[{{ v }}]{% endfor %}", values=values)
        joined = render("{{ values|join(sep) }}", values=values, sep=separator)

        # then
        assert looped == "".join(f"[{v}]" for v in values).strip()
        assert joined == separator.join(values).strip()

    @PROPERTIES
    @given(name=VALUES)
    def test_a_value_is_printed_not_evaluated(self, name: str) -> None:
        # A value that looks like template code stays text: templates are never built
        # from values, only filled with them.
        assert render("{{ name }}", name="{{ 7 * 7 }}" + name) == ("{{ 7 * 7 }}" + name).strip()


class TestTemplateContentRules:
    """What check_template_content adds to check_source: each channel's shape."""

    def test_a_valid_email_template_passes(self) -> None:
        check_template_content(
            channel=Channel.EMAIL,
            subject="Order {{ order_id }}",
            body="Shipped",
            html="<p>{{ order_id }}</p>",
            variables=["order_id"],
        )

    @pytest.mark.parametrize(
        ("content", "fields"),
        [
            (
                {"channel": Channel.SMS, "subject": "Hi", "html": "<p>Hi</p>"},
                {
                    "subject": ["an SMS template has only a body; leave this empty"],
                    "html": ["an SMS template has only a body; leave this empty"],
                },
            ),
            (
                {"channel": Channel.PUSH, "html": "<p>Hi</p>"},
                {"html": ["a push template has a title (subject) and a body; leave this empty"]},
            ),
            (
                {"channel": Channel.EMAIL, "subject": " "},
                {"subject": ["an email template needs a subject"]},
            ),
            ({"channel": Channel.PUSH, "body": "  "}, {"body": ["must not be empty"]}),
            (
                {"channel": Channel.PUSH, "variables": ["a", "a"]},
                {"variables": ["each variable may be declared once"]},
            ),
            (
                {"channel": Channel.PUSH, "variables": ["1st", "has space"]},
                {
                    "variables": [
                        "'1st' is not a valid name (letters, digits, _)",
                        "'has space' is not a valid name (letters, digits, _)",
                    ]
                },
            ),
            (
                {"channel": Channel.PUSH, "subject": "{{ a }}", "body": "{{ b.__class__ }}"},
                {
                    "subject": ["undeclared variables: a"],
                    "body": ["access to '__class__' is not allowed", "undeclared variables: b"],
                },
            ),
        ],
    )
    def test_each_problem_is_filed_under_its_field(
        self, content: dict[str, Any], fields: dict[str, list[str]]
    ) -> None:
        # given
        arguments = {"subject": "", "body": "Hello", "html": "", "variables": []} | content

        # when
        with pytest.raises(TemplateRejected) as caught:
            check_template_content(**arguments)

        # then
        assert caught.value.fields == fields

    def test_an_email_may_have_only_an_html_part(self) -> None:
        check_template_content(
            channel=Channel.EMAIL, subject="Hi", body="", html="<p>Hi</p>", variables=[]
        )

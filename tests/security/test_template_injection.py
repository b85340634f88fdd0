"""Server-side template injection through the doors staff and API callers use.

``tests/unit/test_template_sandbox.py`` proves the rules on ``check_source`` and the sandbox
directly. Here the classic Jinja2 SSTI payloads go through the template API (create, edit,
publish, preview) and the admin's save: each is refused at save time with the documented
400 naming the part and the problem, and nothing is stored; what the save-time rules must
let through (values chosen by the caller) is harmless at render: no Python internals, no
object reprs, bounded time and output, and a 422 that says why.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from notifier.content.models import NotificationType, Template, TemplateVersion
from notifier.core.enums import Channel
from tests.api.contract import assert_error, assert_invalid_field
from tests.factories import NotificationTypeFactory, published_template

pytestmark = pytest.mark.django_db

TEMPLATES = "/api/v1/templates"

# (payload, what the refusal must say); the template declares one variable, ``name``.
SSTI_CORPUS: list[tuple[str, str]] = [
    # Walking from a string to every class in the process, and on to os.system.
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "access to '__class__' is not allowed"),
    ("{{ name.__class__.__base__.__subclasses__() }}", "access to '__subclasses__' is not"),
    ("{{ name['\\x5f\\x5fclass\\x5f\\x5f'] }}", "access to '__class__' is not allowed"),
    ("{{ name|attr('__class__') }}", "filter 'attr' is not allowed"),
    ("{{ name|attr('\\x5f\\x5fclass\\x5f\\x5f') }}", "filter 'attr' is not allowed"),
    ("{{ name.split.__self__ }}", "access to '__self__' is not allowed"),
    # Jinja's globals, whose __globals__ hold os and builtins.
    ("{{ cycler.__init__.__globals__.os.popen('id').read() }}", "access to '__globals__'"),
    ("{{ lipsum.__globals__['os'].popen('id').read() }}", "access to '__globals__'"),
    ("{{ joiner.__init__.__globals__ }}", "access to '__globals__' is not allowed"),
    ("{{ namespace.__init__.__globals__ }}", "access to '__globals__' is not allowed"),
    ("{{ self._TemplateReference__context }}", "'self' is not allowed"),
    ("{{ self }}", "'self' is not allowed"),
    # Framework objects other engines put in the context.
    ("{{ config.items() }}", "undeclared variables: config"),
    ("{{ request.environ }}", "undeclared variables: request"),
    ("{{ settings.SECRET_KEY }}", "undeclared variables: settings"),
    ("{{ get_flashed_messages.__globals__ }}", "access to '__globals__' is not allowed"),
    # str.format reads attributes inside its format string, out of the sandbox's sight.
    ("{{ ''.format(name) }}", "'format' is not allowed"),
    ("{{ '{0.__class__.__init__.__globals__}'.format(name) }}", "'format' is not allowed"),
    ("{{ '{x.__class__}'.format_map(name) }}", "'format_map' is not allowed"),
    ("{{ name.zfill(999999999) }}", "calling 'zfill()' is not allowed"),
    # CPU and memory bombs.
    ("{% for i in range(10**9) %}{{ i }}{% endfor %}", "the ** operator is not allowed"),
    ("{% for i in range(999999999) %}{{ i }}{% endfor %}", "calling 'range()' is not allowed"),
    ("{{ 'x' * 10**9 }}", "the ** operator is not allowed"),
    ("{{ 9**9**9 }}", "the ** operator is not allowed"),
    ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "{% macro %} is not allowed"),
    ("{% for a in name recursive %}{{ loop(a) }}{% endfor %}", "recursive loops are not"),
    # Other files: the server's templates, its settings, its passwords.
    ("{% include '/etc/passwd' %}", "{% include %} is not allowed"),
    ("{% import 'notifier/settings.py' as s %}{{ s }}", "{% import %} is not allowed"),
    ("{% from 'admin/base.html' import x %}", "{% from ... import %} is not allowed"),
    ("{% extends 'admin/base.html' %}", "{% extends %} is not allowed"),
    # Extensions that are not loaded, so no dump of the context.
    ("{% debug %}", "syntax error on line 1"),
    ("{% do name.append(1) %}", "syntax error on line 1"),
]
CORPUS_IDS = [payload[:45] for payload, _ in SSTI_CORPUS]


@pytest.fixture
def welcome(tenant: NotificationType) -> NotificationType:
    notification_type: NotificationType = NotificationTypeFactory.create(
        tenant=tenant, key="welcome"
    )
    return notification_type


@pytest.fixture
def draft(welcome: NotificationType) -> Template:
    """A published template whose draft the tests try to edit."""
    return published_template(welcome, subject="Hi {{ name }}", body="Welcome, {{ name }}.")


def email_template(**parts: Any) -> dict[str, Any]:
    return {
        "notification_type": "welcome",
        "channel": "email",
        "subject": "Hi {{ name }}",
        "body": "Welcome, {{ name }}.",
        "variables": ["name"],
        "sample_vars": {"name": "Ada"},
        **parts,
    }


class TestRefusedAtSave:
    @pytest.mark.parametrize(("payload", "message"), SSTI_CORPUS, ids=CORPUS_IDS)
    @pytest.mark.parametrize("part", ["subject", "body", "html"])
    def test_creating_it_answers_400_naming_the_part_and_stores_nothing(
        self, client: APIClient, welcome: NotificationType, payload: str, message: str, part: str
    ) -> None:
        # when
        response = client.post(TEMPLATES, email_template(**{part: payload}), format="json")

        # then
        body = assert_invalid_field(response, part)
        assert any(message in problem for problem in body["fields"][part]), body
        assert not Template.objects.exists()

    @pytest.mark.parametrize(("payload", "message"), SSTI_CORPUS, ids=CORPUS_IDS)
    def test_editing_a_draft_to_it_answers_400_and_keeps_draft_and_version(
        self, client: APIClient, draft: Template, payload: str, message: str
    ) -> None:
        # when
        response = client.patch(f"{TEMPLATES}/{draft.pk}", {"body": payload}, format="json")

        # then
        body = assert_invalid_field(response, "body")
        assert any(message in problem for problem in body["fields"]["body"]), body
        draft.refresh_from_db()
        assert draft.body == "Welcome, {{ name }}."
        assert list(draft.versions.values_list("version", "body")) == [(1, "Welcome, {{ name }}.")]

    @pytest.mark.parametrize(("payload", "message"), SSTI_CORPUS, ids=CORPUS_IDS)
    def test_saving_it_in_the_admin_shows_the_problem_and_keeps_the_draft(
        self, admin_client: Client, draft: Template, payload: str, message: str
    ) -> None:
        # when
        response = admin_client.post(
            reverse("admin:content_template_change", args=[draft.pk]),
            {
                "subject": "Hi {{ name }}",
                "body": payload,
                "html": "",
                "variables": "name",
                "sample_vars": '{"name": "Ada"}',
                "versions-TOTAL_FORMS": "0",
                "versions-INITIAL_FORMS": "0",
            },
        )

        # then
        assert response.status_code == 200
        errors = response.context["adminform"].form.errors
        assert any(message in problem for problem in errors["body"]), errors
        draft.refresh_from_db()
        assert draft.body == "Welcome, {{ name }}."

    def test_a_rejected_create_through_the_admin_stores_nothing(
        self, admin_client: Client, welcome: NotificationType
    ) -> None:
        # when
        response = admin_client.post(
            reverse("admin:content_template_add"),
            {
                "notification_type": str(welcome.pk), "channel": Channel.EMAIL, "locale": "en",
                "variant": "default", "subject": "{{ self._TemplateReference__context }}",
                "body": "{% include '/etc/passwd' %}", "html": "", "variables": "name",
                "sample_vars": '{"name": "Ada"}', "versions-TOTAL_FORMS": "0",
                "versions-INITIAL_FORMS": "0",
            },
        )  # fmt: skip

        # then
        assert response.status_code == 200
        errors = response.context["adminform"].form.errors
        assert "'self' is not allowed" in " ".join(errors["subject"])
        assert "{% include %} is not allowed" in " ".join(errors["body"])
        assert not Template.objects.exists()


# Templates that pass the save-time rules, with the values that turn them against us.
RENDER_TIME_CORPUS: list[tuple[str, dict[str, Any], str]] = [
    # A key chosen by the caller is still checked by the sandbox.
    ("{{ name[key] }}", {"name": "Ada", "key": "__class__"}, "is unsafe"),
    ("{{ name[key] }}", {"name": "Ada", "key": "__init__"}, "is unsafe"),
    ("{{ xs|sort(attribute=key)|join }}", {"xs": ["b", "a"], "key": "__class__"}, "is unsafe"),
    # A method read but not called would print "<built-in method ... at 0x7f...>".
    ("{{ name.split }}", {"name": "Ada"}, "a method may be called, but not printed"),
    ("{{ name.split|string }}", {"name": "Ada"}, "a method may be called, but not printed"),
    ("{{ [name.upper] }}", {"name": "Ada"}, "a method may be called, but not printed"),
    ("{{ name.split ~ '' }}", {"name": "Ada"}, "a method may be called, but not printed"),
    ("{{ '%s'|format(name.split) }}", {"name": "Ada"}, "a method may be called, but not"),
    ("{{ '%s' % name.split }}", {"name": "Ada"}, "a method may be called, but not printed"),
    # Bombs built from the caller's values rather than the template's constants.
    ("{{ name * n }}", {"name": "x" * 1000, "n": 10**6}, "'*' would build more than"),
    (
        "{% for a in xs %}{% for b in xs %}{% endfor %}{% endfor %}",
        {"xs": list(range(1000))},
        "loops ran more than",
    ),
    (
        "{% for a in xs %}{% for b in xs %}{{ name }}{% endfor %}{% endfor %}",
        {"xs": list(range(1000)), "name": "x" * 50},
        "rendered output exceeds",
    ),
    ("{{ '%(a)s %(b)s'|format(**xs) }}", {"xs": {"a": 1}}, "KeyError"),
]


class TestHarmlessAtRender:
    @pytest.mark.parametrize(
        ("source", "values", "message"),
        RENDER_TIME_CORPUS,
        ids=[f"{s[:30]} {sorted(v)}" for s, v, _ in RENDER_TIME_CORPUS],
    )
    def test_a_preview_answers_422_saying_why_quickly_and_shows_no_internals(
        self,
        client: APIClient,
        welcome: NotificationType,
        source: str,
        values: dict[str, Any],
        message: str,
    ) -> None:
        # given a draft the save-time rules accept
        sample = dict.fromkeys(values, "a")
        created = client.post(
            TEMPLATES,
            email_template(subject="Hi", body=source, variables=sorted(values), sample_vars=sample),
            format="json",
        )
        assert created.status_code == 201, created.json()

        # when it is previewed with hostile values
        started = time.monotonic()
        response = client.post(
            f"{TEMPLATES}/{created.json()['id']}/preview", {"template_vars": values}, format="json"
        )

        # then
        body = assert_error(response, 422, "template_render_failed")
        assert message in body["detail"]
        for internal in ("<class", "<built-in", "<function", "<bound", " at 0x", "__globals__"):
            assert internal not in body["detail"]
        assert time.monotonic() - started < 5

    def test_hostile_sample_values_make_the_publish_fail_and_nothing_goes_live(
        self, client: APIClient, welcome: NotificationType
    ) -> None:
        # given a draft whose own sample values reach for a private attribute
        created = client.post(
            TEMPLATES,
            email_template(
                body="{{ name[key] }}",
                variables=["name", "key"],
                sample_vars={"name": "Ada", "key": "__class__"},
            ),
            format="json",
        ).json()

        # when
        response = client.post(f"{TEMPLATES}/{created['id']}/publish")

        # then
        body = assert_error(response, 422, "template_render_failed")
        assert "unsafe" in body["detail"]
        assert not TemplateVersion.objects.exists()

    def test_printf_formatting_of_caller_values_prints_values_only(
        self, client: APIClient, welcome: NotificationType
    ) -> None:
        # given '%s'|format, allowed, applied to values of every JSON type
        created = client.post(
            TEMPLATES,
            email_template(
                body="{{ '%s|%s|%s'|format(name, xs, n) }} {{ '%(a)s'|format(**d) }}",
                variables=["name", "xs", "n", "d"],
                sample_vars={"name": "a", "xs": [], "n": 1, "d": {"a": 1}},
            ),
            format="json",
        ).json()

        # when
        response = client.post(
            f"{TEMPLATES}/{created['id']}/preview",
            {"template_vars": {"name": "{0.__class__}", "xs": [1], "n": 2, "d": {"a": "%s"}}},
            format="json",
        )

        # then the format strings in the values stay text
        assert response.status_code == 200, response.json()
        assert response.json()["body"] == "{0.__class__}|[1]|2 %s"

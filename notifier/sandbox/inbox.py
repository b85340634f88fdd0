"""``GET /``: one inbox per recipient, showing messages the way the recipient would see them.

Everything user-controlled is escaped with ``html.escape``. An email's HTML is shown in an
``<iframe sandbox srcdoc=...>``: escaped into the attribute, then rendered with scripts,
forms and same-origin access disabled, so a message cannot touch the page around it.
"""

from __future__ import annotations

from collections import defaultdict
from html import escape
from urllib.parse import quote

from aiohttp import web

from notifier.sandbox.context import CONTEXT
from notifier.sandbox.store import SandboxMessage

REFRESH_SECONDS = 5
STYLE = """
body{font:14px system-ui,sans-serif;margin:0;background:#f4f5f7;color:#222}
header{background:#263238;color:#fff;padding:10px 20px}
header a{color:#b2dfdb}
main{display:flex;flex-wrap:wrap;gap:16px;padding:16px}
.inbox{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;width:420px;padding:12px}
.inbox h2{font-size:15px;margin:0 0 8px;word-break:break-all}
.message{border-top:1px solid #eee;padding:8px 0}
.meta{color:#777;font-size:12px}
.sms{background:#e1f5fe;border-radius:14px;padding:8px 12px;display:inline-block;max-width:85%}
.push{background:#fafafa;border:1px solid #ddd;border-radius:12px;padding:8px 12px}
.push b{display:block}
iframe{width:100%;height:220px;border:1px solid #ddd;border-radius:4px;background:#fff}
pre{white-space:pre-wrap;margin:4px 0}
"""


async def page(request: web.Request) -> web.Response:
    selected = request.query.get("to") or None
    messages = request.app[CONTEXT].store.list(to=selected)
    inboxes: dict[str, list[SandboxMessage]] = defaultdict(list)
    for message in reversed(messages):  # newest first within each inbox
        for recipient in message.recipients or (message.to,):
            if selected is None or recipient == selected:
                inboxes[recipient].append(message)
    sections = "".join(_inbox(recipient, found) for recipient, found in inboxes.items())
    body = sections or "<p>No messages yet. Everything the sandbox accepts shows up here.</p>"
    return web.Response(
        text=(
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<meta http-equiv='refresh' content='{REFRESH_SECONDS}'>"
            f"<title>Provider sandbox inbox</title><style>{STYLE}</style></head><body>"
            "<header><b>notifier provider sandbox</b> · "
            f"{len(messages)} message(s) · <a href='/'>all inboxes</a> · "
            "<a href='/_sandbox/messages'>JSON</a></header>"
            f"<main>{body}</main></body></html>"
        ),
        content_type="text/html",
    )


def _inbox(recipient: str, messages: list[SandboxMessage]) -> str:
    link = "/?to=" + quote(recipient, safe="")
    items = "".join(_message(message) for message in messages)
    return (
        f"<section class='inbox'><h2><a href='{escape(link)}'>{escape(recipient)}</a></h2>"
        f"{items}</section>"
    )


def _message(message: SandboxMessage) -> str:
    meta = (
        f"<div class='meta'>{escape(message.provider)} · {escape(message.channel)} · "
        f"{escape(message.received_at.strftime('%H:%M:%S'))}</div>"
    )
    if message.channel == "sms":
        content = f"<div class='sms'>{escape(message.body or '')}</div>"
    elif message.channel == "push":
        content = (
            f"<div class='push'><b>{escape(message.title or '')}</b>"
            f"{escape(message.body or '')}</div>"
        )
    else:
        content = (
            f"<div><b>{escape(message.subject or '(no subject)')}</b></div>"
            f"<div class='meta'>from {escape(message.sender or '')}</div>"
        )
        if message.html:
            content += f'<iframe sandbox srcdoc="{escape(message.html, quote=True)}"></iframe>'
        else:
            content += f"<pre>{escape(message.body or '')}</pre>"
    return f"<div class='message'>{meta}{content}</div>"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", page)

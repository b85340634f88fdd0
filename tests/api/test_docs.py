"""The interactive API docs work offline: every asset is served by notifier itself."""

from __future__ import annotations

import re

from django.test import Client


def test_docs_page_loads_its_assets_from_our_own_static_files() -> None:
    # when
    page = Client().get("/api/docs/")

    # then
    assert page.status_code == 200
    html = page.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
    assert assets
    for asset in assets:
        assert asset.startswith("/static/"), asset
        assert Client().get(asset).status_code == 200, asset
    assert "/api/schema/" in html

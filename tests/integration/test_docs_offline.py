"""/docs and /redoc work on a machine without internet: their assets come from the API itself."""

from __future__ import annotations

import re

import httpx
import pytest

from cluster.settings import Settings

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_their_assets_from_the_api(stack: Settings, page: str) -> None:
    with httpx.Client(base_url=stack.api_url, timeout=60) as http:
        html = http.get(page)
        assert html.status_code == 200
        assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html.text)
        assert assets, html.text[:500]
        for asset in assets:
            assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"
            answer = http.get(asset)
            assert answer.status_code == 200 and len(answer.content) > 10_000, asset
        described = http.get("/openapi.json").json()["info"]["description"]
        assert "/ws/events/{stream}" in described and "4401" in described

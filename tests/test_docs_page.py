"""``/docs``: a public Swagger UI page whose every script, style and icon is served by the
app itself from the pinned package (no CDN), reading ``/openapi.json``. (Chromium renders
it in tests/test_chat_page.py.)"""

from __future__ import annotations

import re

import pytest

from services.app import create_app


@pytest.fixture(scope="module")
def client(settings):
    app = create_app(settings)
    yield app.test_client()
    app.extensions["runtime"].close()


def test_docs_is_public_html_pointing_at_the_openapi_document(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert '"url": "/openapi.json"' in html
    assert client.get("/openapi.json").get_json()["openapi"] == "3.1.0"
    assert "http:" not in html and "https:" not in html  # nothing from elsewhere


def test_every_asset_the_page_references_is_served_locally(client):
    html = client.get("/docs").get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(assets) == 4
    types = set()
    for url in assets:
        assert url.startswith("/docs/assets/"), url
        response = client.get(url)
        assert response.status_code == 200, url
        assert len(response.data) > 100, url
        types.add(response.mimetype)
    assert {"text/css", "text/javascript", "image/png"} <= types
    bundle = next(url for url in assets if "swagger-ui-bundle.js" in url)
    assert b"SwaggerUIBundle" in client.get(bundle).data


@pytest.mark.parametrize("name", ["LICENSE", "index.html", "nope.js", "..%2Frequirements.txt"])
def test_nothing_else_is_served_from_the_package(client, name):
    response = client.get(f"/docs/assets/{name}")
    # A name with a slash matches no route at all: 401, as for any unknown path.
    assert response.status_code in (401, 404) and response.is_json
    assert "flask" not in response.get_data(as_text=True)

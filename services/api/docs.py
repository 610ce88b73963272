"""``GET /docs``: the API reference as a Swagger UI page, public like ``/openapi.json``.

Swagger UI's files come from the pinned ``flask-swagger-ui`` package (its ``dist``
folder, Swagger UI 5, which reads OpenAPI 3.1) and are served by this app: no CDN, so the
page works offline and its scripts are exactly the version in requirements.txt. Only the
page's own assets are served. The page reads ``/openapi.json``; "Authorize" takes an API
key for "Try it out" and keeps it in the page only.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

from flask import Blueprint, Response, send_from_directory, url_for
from markupsafe import escape

from services.errors import NotFound

bp = Blueprint("docs", __name__)

PUBLIC = {"docs.page", "docs.asset"}
ASSETS_DIR = Path(str(files("flask_swagger_ui") / "dist"))
ASSETS = frozenset({"swagger-ui.css", "index.css", "swagger-ui-bundle.js", "favicon-32x32.png"})
SWAGGER_UI_VERSION = version("flask-swagger-ui")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Memory Agent API</title>
  <link rel="stylesheet" href="{index_css}">
  <link rel="stylesheet" href="{swagger_css}">
  <link rel="icon" type="image/png" href="{favicon}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{bundle_js}"></script>
  <script>
    window.ui = SwaggerUIBundle({config});
  </script>
</body>
</html>
"""


@bp.get("/docs")
def page() -> Response:
    config = {
        "url": url_for("openapi"),
        "dom_id": "#swagger-ui",
        "layout": "BaseLayout",  # no top bar: the page shows this API's document only
        "deepLinking": True,
        "docExpansion": "list",
        "persistAuthorization": False,
        "validatorUrl": None,  # else the page would send the document to a public validator
    }
    html = PAGE.format(
        index_css=escape(_asset("index.css")),
        swagger_css=escape(_asset("swagger-ui.css")),
        favicon=escape(_asset("favicon-32x32.png")),
        bundle_js=escape(_asset("swagger-ui-bundle.js")),
        config=json.dumps(config).replace("</", "<\\/"),
    )
    return Response(html, mimetype="text/html")


@bp.get("/docs/assets/<name>")
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound(f"no asset {name!r}", "name")
    return send_from_directory(ASSETS_DIR, name, max_age=86400)


def _asset(name: str) -> str:
    # The version in the URL: a new pinned release is fetched anew despite the cache time.
    return url_for("docs.asset", name=name, v=SWAGGER_UI_VERSION)

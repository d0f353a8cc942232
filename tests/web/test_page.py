"""The dashboard page without a browser: what it embeds, and that its URLs are relative."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

import llamactl.web
from llamactl.backends import OPTIONS_CLASSES, SPECS, ArgvStyle
from llamactl.web import TOP_FIELDS, backend_catalog, mount_dashboard, render_page

STATIC = Path(llamactl.web.__file__).parent / "static"


def test_the_catalog_lists_every_typed_field_of_every_backend() -> None:
    catalog = {entry["type"]: entry for entry in backend_catalog()}
    assert set(catalog) == {kind.value for kind in OPTIONS_CLASSES}
    for backend_type, cls in OPTIONS_CLASSES.items():
        entry = catalog[backend_type.value]
        assert entry["fields"] == [[name, cls.FIELD_KINDS[name].value] for name in cls.FIELD_ORDER]
        assert entry["top"] == list(TOP_FIELDS[backend_type])  # none was misspelled
        assert entry["flags"] is (SPECS[backend_type].argv_style is not ArgvStyle.TEMPLATE)


def test_the_page_and_its_files_are_served_without_a_key() -> None:
    app = FastAPI()
    mount_dashboard(app)
    client = TestClient(app)
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '"gpu_layers", "int"' in page.text
    for name in ("app.js", "app.css"):
        assert client.get(f"static/{name}").status_code == 200


def test_every_url_is_relative() -> None:
    """Behind a reverse proxy under a sub-path, a URL starting with / would miss it."""
    page = render_page()
    assert not re.search(r'(?:href|src|action)="/', page)
    script = (STATIC / "app.js").read_text()
    assert '"api/v1/" + path' in script
    assert not re.search(r"""fetch\(\s*["'`]/""", script)
    assert not re.search(r"""["'`]/api/""", script)
    assert "http://" not in script and "https://" not in script


def test_nothing_is_fetched_from_elsewhere() -> None:
    for text in (render_page(), (STATIC / "app.js").read_text(), (STATIC / "app.css").read_text()):
        assert "http://" not in text and "https://" not in text
        assert not re.search(r"""(?:src|href)=["']//""", text)
        assert "@import" not in text

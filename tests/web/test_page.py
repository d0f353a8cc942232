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
SCRIPTS = sorted(STATIC.glob("*.js"))
# Not a URL that is fetched: the namespace of the SVG elements that chart.js makes.
SVG_NAMESPACE = '"http://www.w3.org/2000/svg"'


def script_text(path: Path) -> str:
    return path.read_text().replace(SVG_NAMESPACE, "")


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
    for name in ("app.css", *(path.name for path in SCRIPTS)):
        assert client.get(f"static/{name}").status_code == 200
        assert f'"static/{name}"' in page.text


def test_every_script_is_in_the_page_and_app_js_comes_first() -> None:
    """The other scripts use what app.js shares, and register before the page is routed."""
    page = render_page()
    loaded = re.findall(r'<script src="static/([^"]+)" defer></script>', page)
    assert loaded[0] == "app.js"
    assert sorted(loaded) == sorted(path.name for path in SCRIPTS)


def test_every_url_is_relative() -> None:
    """Behind a reverse proxy under a sub-path, a URL starting with / would miss it."""
    page = render_page()
    assert not re.search(r'(?:href|src|action)="/', page)
    assert '"api/v1/" + path' in (STATIC / "app.js").read_text()
    for path in SCRIPTS:
        script = script_text(path)
        assert not re.search(r"""fetch\(\s*["'`]/""", script), path.name
        assert not re.search(r"""["'`]/(?:api|v1)/""", script), path.name
        assert "http://" not in script and "https://" not in script, path.name


def test_nothing_is_fetched_from_elsewhere() -> None:
    scripts = [script_text(path) for path in SCRIPTS]
    for text in (render_page(), (STATIC / "app.css").read_text(), *scripts):
        assert "http://" not in text and "https://" not in text
        assert not re.search(r"""(?:src|href)=["']//""", text)
        assert "@import" not in text

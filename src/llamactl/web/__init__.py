"""The web dashboard: one page at ``/`` and its static files at ``/static``.

The page is rendered once from ``templates/index.html`` with the typed option fields of
every backend embedded as JSON, so the form can offer each of them; everything else
happens in the browser through the management API (``static/app.js``). No server logic
lives here, and every URL the page uses is relative.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from types import MappingProxyType

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.staticfiles import StaticFiles

from llamactl import __version__
from llamactl.backends import SPECS, ArgvStyle, BackendType

__all__ = ["TOP_FIELDS", "backend_catalog", "mount_dashboard", "render_page"]

_HERE = Path(__file__).parent

# The fields shown up front in the form; every other field is reached by searching.
TOP_FIELDS: Mapping[BackendType, tuple[str, ...]] = MappingProxyType(
    {backend_type: spec.top_fields for backend_type, spec in SPECS.items()}
)


def backend_catalog() -> list[dict[str, object]]:
    """Every backend with its typed fields in command-line order, as the page embeds it;
    ``flags`` says whether those fields are command-line flags (shown beside them)."""
    catalog: list[dict[str, object]] = []
    for backend_type, spec in SPECS.items():
        cls = spec.options_class
        catalog.append(
            {
                "type": backend_type.value,
                "label": spec.label,
                "segment": spec.config_key,
                "top": [name for name in spec.top_fields if name in cls.FIELD_KINDS],
                "fields": [[name, cls.FIELD_KINDS[name].value] for name in cls.FIELD_ORDER],
                "flags": spec.argv_style is not ArgvStyle.TEMPLATE,
            }
        )
    return catalog


@cache
def render_page() -> str:
    """The dashboard's HTML (the same for every request, so rendered once)."""
    environment = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        keep_trailing_newline=True,
    )
    template = environment.get_template("index.html")
    return template.render(version=__version__, catalog=backend_catalog())


async def _index() -> HTMLResponse:
    return HTMLResponse(render_page(), headers={"Cache-Control": "no-cache"})


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard at ``/`` and its files under ``/static`` (no key needed)."""
    app.add_api_route("/", _index, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")

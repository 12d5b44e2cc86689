"""The web pages, served by the gateway itself from package files (no front-end server).

    GET /             chat                      GET /verify      the verifier
    GET /dashboard    usage and money (admin)   GET /plan        the planner
    GET /static/<version>/<file>   assets; <version> is a hash of them all, so they are
                                   cached for a year and a new release is fetched at once
    GET /web/plan-options          the planner's catalog ids, for the plan form
    GET /v1/usage/{request_id}     one finished request's tokens and cost, for the key that
                                   sent it (the chat page shows it under each answer)

Every answer carries a Content-Security-Policy that allows this origin only: a page can
neither load anything from nor send anything to another host.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable

import jinja2
import orjson
from aiohttp import web

from manxue.accounting.money import text as money_text
from manxue.accounting.reports import ledger_row
from manxue.errors import AssetNotFound, RequestNotFound, ServiceUnavailable
from manxue.plan.catalog import builtin_catalog
from manxue.plan.precision import names as precision_names
from manxue.pricing import builtin_price_lists
from manxue.server.state import local_client, state_of

PAGES = {"/": "chat.html", "/verify": "verify.html", "/dashboard": "dashboard.html",
         "/plan": "plan.html"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
PAGE_CACHE = "no-cache"  # revalidated each time (ETag), so a new release shows at once
ASSET_CACHE = "public, max-age=31536000, immutable"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
         ".svg": "image/svg+xml", ".json": "application/json", ".txt": "text/plain",
         ".png": "image/png", ".ico": "image/x-icon", ".woff2": "font/woff2"}
_TEXT = (".html", ".js", ".css", ".svg", ".json", ".txt")


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str
    cache: str

    @classmethod
    def of(cls, name: str, body: bytes, cache: str) -> Asset:
        suffix = name[name.rfind("."):]
        ctype = TYPES.get(suffix, "application/octet-stream")
        if suffix in _TEXT:
            ctype += "; charset=utf-8"
        packed = gzip.compress(body, 9, mtime=0) if suffix in _TEXT and len(body) > 1024 else None
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        return cls(body, packed, ctype, etag, cache)

    def response(self, request: web.Request) -> web.Response:
        headers = {**SECURITY_HEADERS, "Cache-Control": self.cache, "ETag": self.etag,
                   "Vary": "Accept-Encoding"}
        if self.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        body = self.body
        if self.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", ""):
            body = self.gzipped
            headers["Content-Encoding"] = "gzip"
        headers["Content-Type"] = self.content_type
        return web.Response(body=body, headers=headers)


class Site:
    """Every page (rendered from its template) and asset, read once from the package."""

    def __init__(self, root: Traversable) -> None:
        files = dict(_walk(root / "static", ""))
        digest = hashlib.sha256()
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + files[name] + b"\0")
        self.version = digest.hexdigest()[:12]
        self.static_prefix = f"/static/{self.version}"
        self.assets = {name: Asset.of(name, body, ASSET_CACHE) for name, body in files.items()}
        pages = _templates(root)
        self.pages = {
            path: Asset.of(name, pages.get_template(name).render(static=self.static_prefix,
                                                                 path=path).encode(), PAGE_CACHE)
            for path, name in PAGES.items()
        }


def _templates(root: Traversable) -> jinja2.Environment:
    """The pages in `root` as Jinja templates: each extends base.html, which holds the head
    and the navigation every page shares."""
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: (root / name).read_text(encoding="utf-8")),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True)


def _walk(folder: Traversable, prefix: str) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for item in folder.iterdir():
        name = prefix + item.name
        if item.is_dir():
            out.extend(_walk(item, name + "/"))
        elif item.is_file() and not item.name.startswith((".", "__")):
            out.append((name, item.read_bytes()))
    return out


SITE = web.AppKey("manxue_web_site", Site)


@lru_cache(maxsize=1)
def packaged_site() -> Site:
    """The pages shipped in manxue.web, read once per process."""
    return Site(resources.files("manxue.web"))


def add_routes(app: web.Application, site: Site | None = None) -> None:
    """Mount the pages on `app` (once; a second call changes nothing)."""
    if SITE in app:
        return
    app[SITE] = site or packaged_site()
    for path in PAGES:
        app.router.add_get(path, page)
    app.router.add_get("/static/{version}/{name:.+}", asset)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/web/plan-options", plan_options)
    app.router.add_get("/v1/usage/{request_id}", request_usage)


async def page(request: web.Request) -> web.Response:
    return request.app[SITE].pages[request.path].response(request)


async def asset(request: web.Request) -> web.Response:
    site = request.app[SITE]
    found = site.assets.get(request.match_info["name"])
    if found is None or request.match_info["version"] != site.version:
        raise AssetNotFound(f"no file {request.path} in this release of the web pages")
    return found.response(request)


async def favicon(request: web.Request) -> web.Response:
    return request.app[SITE].assets["icon.svg"].response(request)


@lru_cache(maxsize=1)
def plan_options_body() -> bytes:
    """Models, hardware, precisions and USD price lists the planner knows."""
    cat = builtin_catalog()
    lists = builtin_price_lists()
    return orjson.dumps({
        "models": [{"id": m.id, "name": m.name} for m in cat.models.values()],
        "hardware": [{"id": h.id, "name": h.name, "kind": h.kind} for h in cat.hardware.values()],
        "precisions": [p for p in precision_names() if p != "bpw:X"],
        "price_lists": [{"id": k, "title": v.title or k} for k, v in sorted(lists.items())
                        if v.currency == "USD"],
    })


async def plan_options(request: web.Request) -> web.Response:
    return web.Response(body=plan_options_body(), content_type="application/json",
                        headers={"Cache-Control": "public, max-age=3600"})


async def request_usage(request: web.Request) -> web.Response:
    """What a finished request cost, as billed: for the key that sent it only. Upstream
    names and costs stay private."""
    st = state_of(request)
    meter = st.meter
    if meter is None:
        raise ServiceUnavailable("metering is off on this gateway ([billing] enabled = false)",
                                 code="metering_off")
    key = meter.authenticate(request.headers.get("Authorization"),
                             request.headers.get("x-api-key"), lambda: local_client(request))
    rid = request.match_info["request_id"]
    engine = meter.store.engine
    row = await asyncio.to_thread(ledger_row, engine, rid)
    if row is None:  # settled moments ago: still on its way from the journal to SQL
        await meter.writer.flush()
        row = await asyncio.to_thread(ledger_row, engine, rid)
    if row is None or row["key_id"] != (key.id if key else None):
        raise RequestNotFound(f"no finished request {rid!r} for this API key")
    body = {k: v for k, v in row.items() if k not in ("key_id", "cost_nano", "at")}
    body.update(object="request.usage", at=row["at"].isoformat(),
                cost=money_text(int(row["cost_nano"])) if row["currency"] else None)
    return web.Response(body=orjson.dumps(body), content_type="application/json",
                        headers={"Cache-Control": "private, no-store"})

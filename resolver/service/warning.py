"""The warning server: the web page at the warning-page address, wired to the running engine.

Every request is matched against the policy the DNS answers come from, at that
moment (``engine.snapshot``, swapped by a reload), for the requesting client's
address, with the same precedence: a Host name a policy blocks gets its 451 page,
any other a 404 page (resolver.tools.warningpage). The templates and static files
are read when the server starts and again at each reload, off the event loop;
serving never touches the disk. With ``workers: N`` the first worker serves it, as
it does the control endpoint.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from resolver.core import wire
from resolver.core.clients import client_address
from resolver.core.engine import Engine
from resolver.core.matcher import CompiledPolicy
from resolver.core.verdict import Action, ClientScope, Verdict
from resolver.edge.http import HttpServer, Limits, Request, Response, Tls, request_app
from resolver.sources.config_sections import WarningServer
from resolver.tools.warningpage import (
    SECURITY_HEADERS,
    Blocked,
    Page,
    Pages,
    TemplateError,
    host_name,
    load_static,
    load_templates,
)
from resolver.tools.warningtls import TlsSetupError, tls_context

if TYPE_CHECKING:
    import structlog

# Faces the whole network: few requests at once (one more gets 503 at once), a request
# head within 4 KiB and 5 seconds, a client that does not take its page in 5 seconds
# dropped (its connection ended by the kernel).
WARNING_LIMITS = Limits(
    max_requests=32, max_header_bytes=4096, header_timeout=5.0, read_timeout=10.0, send_timeout=5.0
)
PAGE_CACHE = 1024  # rendered pages kept, per (verdict, name, language)
NOT_SHOWN = (Action.ALLOW, Action.TCP_ONLY)  # answered with the site's own address


class WarningSetupError(Exception):
    """The warning server cannot start: a template, a static file or the certificate."""


@dataclass(frozen=True)
class Site:
    """What the server shows: the compiled pages and the operator's static files."""

    pages: Pages
    static: dict[str, tuple[str, bytes]]


def load_site(settings: WarningServer) -> Site:
    """Read and compile the templates and static files (blocking I/O: run it in a thread)."""
    try:
        return Site(Pages(load_templates(settings.templates)), load_static(settings.templates))
    except TemplateError as exc:
        raise WarningSetupError(str(exc)) from None
    except OSError as exc:
        raise WarningSetupError(f"{exc.filename}: {exc.strerror or exc}") from None


def blocking(policy: CompiledPolicy, name: str, client: str) -> Blocked | None:
    """What blocks ``name`` for ``client``, decided as a DNS query for it would be."""
    try:
        qname = wire.text_to_name(name)
    except ValueError:
        return None
    if policy.dynamic:
        address = client_address(client)

        def applies(scope: ClientScope) -> bool:
            return address is not None and scope.applies(address)

        verdict: Verdict | None = policy.match_client(qname, applies)[0]
    else:
        verdict = policy.match(qname)
    if verdict is None or verdict.action in NOT_SHOWN:
        return None
    info = verdict.policy
    reference = verdict.ede_text if verdict.ede_text != info.id else info.reference
    return Blocked(info, reference)


class WarningPages:
    """The request handler: a static file, or the page for the Host name."""

    def __init__(self, engine: Engine, site: Site) -> None:
        self.engine = engine
        self.site = site
        self._cache: dict[tuple[Any, ...], Response] = {}
        self._seen: tuple[object, Site] | None = None

    def __call__(self, request: Request) -> Response:
        static = self.site.static.get(request.path)
        if static is not None:
            return Response(200, static[0], static[1], SECURITY_HEADERS)
        snapshot = self.engine.snapshot
        if self._seen is None or self._seen[0] is not snapshot or self._seen[1] is not self.site:
            self._cache.clear()  # a reload: other verdicts, maybe other templates
            self._seen = (snapshot, self.site)
        host = request.header(b"host")
        name = host_name(host)
        found = blocking(snapshot.policy, name, request.client) if name else None
        pages = self.site.pages
        accept = request.header(b"accept-language")
        if found is None:
            return _response(pages.render(host, accept, None))
        language = pages.language(accept)
        key = (found, name, language)
        cached = self._cache.get(key)
        if cached is None:
            if len(self._cache) >= PAGE_CACHE:
                self._cache.clear()
            cached = self._cache[key] = _response(pages.render(host, accept, found))
        return cached


def _response(page: Page) -> Response:
    content_type = dict(page.headers)["content-type"]
    headers = tuple((k, v) for k, v in page.headers if k != "content-type")
    return Response(page.status, content_type, page.body, headers)


class WarningService:
    """The warning server of one process: started with ``start``, its pages re-read with
    ``refresh`` (a reload), stopped with ``close``."""

    def __init__(self, settings: WarningServer, engine: Engine, log: structlog.BoundLogger) -> None:
        self.settings = settings
        self.engine = engine
        self.log = log
        self.handler: WarningPages | None = None
        self.http: HttpServer | None = None
        self.names: tuple[str, ...] = ()  # what the certificate covers

    async def start(self) -> None:
        """Read the pages and the certificate (WarningSetupError), bind (OSError), serve."""
        settings = self.settings
        site = await asyncio.to_thread(load_site, settings)
        tls = None
        if settings.tls is not None:
            try:
                context, self.names = await asyncio.to_thread(tls_context, settings.tls)
            except TlsSetupError as exc:
                raise WarningSetupError(str(exc)) from None
            tls = Tls(settings.tls.listen, context)
        self.handler = WarningPages(self.engine, site)
        self.http = HttpServer("warning", request_app(self.handler, WARNING_LIMITS), WARNING_LIMITS)
        await self.http.start(settings.listen, tls)
        self.log.info(
            "warning_server_started",
            listen=[str(e) for e in settings.listen],
            https=[str(e) for e in settings.tls.listen] if settings.tls else [],
            https_names=list(self.names),
            languages=sorted(site.pages.languages),
            templates=str(settings.templates) if settings.templates else None,
        )

    async def refresh(self) -> None:
        """Read the templates and static files again; on an error keep the ones in use."""
        if self.handler is None:
            return
        try:
            self.handler.site = await asyncio.to_thread(load_site, self.settings)
        except WarningSetupError as exc:
            self.log.error("warning_templates_failed", error=str(exc), kept="previous templates")

    def close(self) -> None:
        if self.http is not None:
            self.http.close()

    async def wait_closed(self) -> None:
        if self.http is not None:
            await self.http.wait_closed()

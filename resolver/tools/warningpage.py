"""The warning page: what a browser sent to the warning-page address is shown.

Pure page logic: the request's Host and Accept-Language and the policy that blocks
the name go in; status, headers and HTML come out. A blocked name gets 451
(RFC 7725) with the policy's record (title, authority, legal basis, reference,
effective date, message, contact); any other Host a plain 404 page. The pages are
Jinja2 templates with autoescape on, so nothing from the request or a policy file
reaches the HTML unescaped; the Korean and English ones ship in
``warning_templates/``, and the operator's own (same file names, in a folder of
their choosing) take their place. ``load_templates`` and ``load_static`` are the
only I/O here, run once when the server starts or reloads.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import idna
import jinja2

from resolver.core.verdict import PolicyInfo
from resolver.sources.names import normalise

PACKAGE_TEMPLATES = Path(__file__).with_name("warning_templates")
DEFAULT_LANGUAGE = "en"
BLOCKED = "blocked"
NOT_FOUND = "notfound"
PAGE_NAME = re.compile(r"(blocked|notfound)\.([a-z]{2,3}(?:-[a-z0-9]{1,8})*)\.html")
STATIC_PREFIX = "/.sinkhole/static/"  # the operator's static files (templates/static/NAME)
STATIC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MAX_TEMPLATE_BYTES = 256 * 1024
MAX_STATIC_BYTES = 1024 * 1024
MAX_STATIC_FILES = 64
MAX_SHOWN = 255  # the most characters of an unusable Host shown back (escaped)
MAX_LANGUAGES = 32  # Accept-Language items read
HTML = "text/html; charset=utf-8"
# No resource from anywhere else; the operator's static files (same origin) and inline styles.
SECURITY_HEADERS = (
    (
        "content-security-policy",
        "default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
)


class TemplateError(Exception):
    """A template that does not compile: the file, line and what is wrong."""

    def __init__(self, message: str, file: str, line: int) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.message = message
        self.file = file
        self.line = line


@dataclass(frozen=True, slots=True)
class Blocked:
    """What blocks a name: the policy's record and the reference of the deciding entry."""

    info: PolicyInfo
    reference: str = ""


@dataclass(frozen=True, slots=True)
class Page:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def host_name(host: str) -> str | None:
    """The domain name a Host header names (port and trailing dot dropped, lower case,
    Unicode as xn--), or None for an address, an empty or an unusable value."""
    text = host.strip()
    if not text or text.startswith("["):
        return None
    name, colon, port = text.rpartition(":")
    if colon and port.isdigit():
        text = name
    try:
        return normalise(text)
    except ValueError:
        return None


def unicode_name(name: str) -> str:
    """The name as people read it (xn-- labels decoded), or itself when it cannot be."""
    if "xn--" not in name:
        return name
    try:
        return str(idna.decode(name))
    except (idna.IDNAError, UnicodeError):
        return name


def choose_language(accept: str, available: Iterable[str]) -> str:
    """The language to answer in: the client's most preferred one that a page exists in
    (``ko-KR`` is served by ``ko``), else English."""
    have = set(available)
    wanted: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept.split(",")[:MAX_LANGUAGES]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if "q" in params.lower():
            found = re.fullmatch(r"\s*q\s*=\s*([01](?:\.[0-9]{0,3})?)\s*", params, re.I)
            if found is None:
                continue  # a weight that cannot be read: the item is left out
            quality = float(found.group(1))
        if quality > 0 and tag:
            wanted.append((-quality, position, tag.strip().lower()))
    for _, _, tag in sorted(wanted):
        if tag == "*":
            return DEFAULT_LANGUAGE
        while tag:
            if tag in have:
                return tag
            tag = tag.rpartition("-")[0]
    return DEFAULT_LANGUAGE


def _is_web(url: str) -> bool:
    return url.lower().startswith(("https://", "http://"))


def _date(moment: datetime | None) -> str:
    return moment.date().isoformat() if moment is not None else ""


def policy_fields(blocked: Blocked, language: str) -> dict[str, str]:
    """What the page shows of a policy, in ``language`` where the policy has it."""
    info = blocked.info
    return {
        "id": info.id,
        "title": info.text("title", language),
        "authority": info.text("authority", language),
        "authority_url": info.authority_url,
        "legal_basis": info.text("legal_basis", language),
        "reference": blocked.reference or info.reference,
        "effective_from": _date(info.effective_from),
        "message": info.text("message", language),
        "contact": info.contact,
        "contact_url": info.contact if _is_web(info.contact) else "",
    }


class Pages:
    """The compiled templates: ``blocked.LANG.html`` and ``notfound.LANG.html`` (with what
    they include or extend), each language a page exists in."""

    def __init__(self, sources: Mapping[str, tuple[str, str]]) -> None:
        """``sources``: template name -> (text, the file it came from, for errors)."""
        self.env = jinja2.Environment(
            loader=jinja2.DictLoader({name: text for name, (text, _) in sources.items()}),
            autoescape=True,
            auto_reload=False,
            keep_trailing_newline=True,
        )
        languages = {m.group(2) for name in sources if (m := PAGE_NAME.fullmatch(name))}
        for name, (_, file) in sorted(sources.items()):
            try:
                self.env.get_template(name)
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(exc.message or "syntax error", file, exc.lineno) from None
            except jinja2.TemplateError as exc:
                raise TemplateError(str(exc), file, 0) from None
        for kind in (BLOCKED, NOT_FOUND):
            if f"{kind}.{DEFAULT_LANGUAGE}.html" not in sources:
                raise TemplateError(f"no {kind}.{DEFAULT_LANGUAGE}.html template", "", 0)
        self.languages = frozenset(languages)

    def language(self, accept_language: str) -> str:
        """The language a request with this Accept-Language gets its page in."""
        return choose_language(accept_language, self.languages)

    def template(self, kind: str, language: str) -> jinja2.Template:
        try:
            return self.env.get_template(f"{kind}.{language}.html")
        except jinja2.TemplateNotFound:
            return self.env.get_template(f"{kind}.{DEFAULT_LANGUAGE}.html")

    def render(self, host: str, accept_language: str, blocked: Blocked | None) -> Page:
        """The page for a request with this Host and Accept-Language, the name blocked by
        ``blocked`` (None: not blocked)."""
        language = self.language(accept_language)
        name = host_name(host)
        context: dict[str, object] = {
            "language": language,
            "name": name or "",
            "shown_name": unicode_name(name) if name else "",
            "host": "" if name else host.strip()[:MAX_SHOWN],
            "static": STATIC_PREFIX.rstrip("/"),
        }
        headers = [
            ("content-type", HTML),
            ("content-language", language),
            ("vary", "accept-language"),
            *SECURITY_HEADERS,
        ]
        if blocked is None or name is None:
            status, kind = 404, NOT_FOUND
        else:
            status, kind = 451, BLOCKED
            context["policy"] = policy = policy_fields(blocked, language)
            if policy["authority_url"]:
                headers.append(("link", f'<{policy["authority_url"]}>; rel="blocked-by"'))
        body = self.template(kind, language).render(context).encode()
        return Page(status, tuple(headers), body)


def load_templates(folder: Path | None) -> dict[str, tuple[str, str]]:
    """The package's templates, with the operator's ``*.html`` in ``folder`` in their place
    or beside them (files over MAX_TEMPLATE_BYTES refused)."""
    found: dict[str, tuple[str, str]] = {}
    for directory in (PACKAGE_TEMPLATES, folder):
        if directory is None:
            continue
        if not directory.is_dir():
            raise TemplateError("the templates folder does not exist", str(directory), 0)
        for path in sorted(directory.glob("*.html")):
            if path.stat().st_size > MAX_TEMPLATE_BYTES:
                raise TemplateError(
                    f"a template is larger than {MAX_TEMPLATE_BYTES // 1024} KiB", str(path), 0
                )
            try:
                found[path.name] = (path.read_text(encoding="utf-8"), str(path))
            except UnicodeDecodeError as exc:
                raise TemplateError(f"not UTF-8 ({exc.reason})", str(path), 0) from None
    return found


def load_static(folder: Path | None) -> dict[str, tuple[str, bytes]]:
    """The operator's static files (``folder/static/NAME``): path -> (content type, bytes)."""
    if folder is None or not (folder / "static").is_dir():
        return {}
    files: dict[str, tuple[str, bytes]] = {}
    for path in sorted((folder / "static").iterdir()):
        if not path.is_file() or not STATIC_NAME.fullmatch(path.name):
            continue
        if len(files) >= MAX_STATIC_FILES:
            raise TemplateError(f"more than {MAX_STATIC_FILES} static files", str(path.parent), 0)
        if path.stat().st_size > MAX_STATIC_BYTES:
            raise TemplateError("a static file is larger than 1 MiB", str(path), 0)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("application/javascript", "image/svg+xml"):
            kind += "; charset=utf-8"
        files[STATIC_PREFIX + path.name] = (kind, path.read_bytes())
    return files

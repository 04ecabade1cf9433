"""The web page: a fourth front end over the command layer, served by aiohttp in the bot's process.

One server-rendered page (no JavaScript): a form for a username and site or a MyAnimeList export
upload, the same filters as `/recommend` (the form becomes `/recommend` tokens and goes through
`bot.parsing`, so there is one option grammar), and result cards with "Seen it" / "Not interested"
buttons and a "More" button. Everything runs through `CommandService.execute`, so the web has the
chat platforms' cooldown, concurrency bounds, size caps and feedback store.

Each browser is a `UserRef` on platform "web", identified by a random id in an HMAC-signed cookie
that also carries the browser's CSRF token; every POST must echo that token in a hidden field
(compared in constant time). A form field never names a file: the page builds only
`RecommendCommand`s without `--file`, and uploads are read from the request, capped before they are
read in full. Every string on the page is HTML-escaped; the headers forbid framing, sniffing and
any script (the stylesheet is served from /static).

POST answers redirect to the page (post/redirect/get), which shows the browser's last results kept
here, bounded like the command layer's sessions.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import html
import logging
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from string import Template

from aiohttp import BodyPartReader, web

from bot.commands import Attachment, CommandService, UserRef
from bot.parsing import (
    DEFAULT_MAX_LINE_CHARS,
    CommandError,
    FeedbackCommand,
    MoreCommand,
    RecommendCommand,
    parse_tokens,
)
from bot.replies import Reply, score_text
from bot.settings import SOURCES, BotSettings
from inference.catalog import MEDIA_TYPES
from inference.explain import MEDIA_TYPE_NAMES, Recommendation
from inference.http import service_display_name

log = logging.getLogger(__name__)

PLATFORM = "web"
COOKIE = "animerec_session"
# The cookie is the browser's identity for its seen / not-interested marks: it lasts a year.
COOKIE_MAX_AGE_S = 365 * 24 * 3600
# A text field of the form is a word or two; anything longer is refused before it is used.
FIELD_LIMIT = 256
# The form has about a hundred controls (two genre lists, the types); a request with many more
# parts is not from the page.
MAX_PARTS = 400
READ_CHUNK = 64 * 1024
ADVENTUROUS_CHOICES = (
    ("0", "0: close to what you watch"),
    ("0.25", "0.25"),
    ("0.5", "0.5"),
    ("0.75", "0.75"),
    ("1", "1: less familiar titles"),
)
ADVENTUROUS_VALUES = frozenset(value for value, _ in ADVENTUROUS_CHOICES)
NOT_FROM_THE_PAGE = "That request did not come from this page's form; reload the page."
FORBIDDEN_MESSAGE = (
    "This form has expired or did not come from this page. Reload the page and try again."
)
SECURITY_HEADERS = {
    # No script at all; styles only from /static; images are catalogue covers on other hosts.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' https:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


# ----- the browser session ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrowserSession:
    """A browser: its user id (the key of its feedback) and its CSRF token."""

    user_id: str
    csrf: str

    @classmethod
    def new(cls) -> BrowserSession:
        return cls(secrets.token_urlsafe(16), secrets.token_urlsafe(24))

    @property
    def user(self) -> UserRef:
        return UserRef(PLATFORM, self.user_id, self.user_id)


class SessionCookie:
    """`user_id.csrf.signature`: HMAC-SHA256 under the server's secret, so neither half can be
    chosen by the browser (token_urlsafe never produces a ".")."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the web session secret must be at least 16 bytes")
        self._secret = secret

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def dump(self, session: BrowserSession) -> str:
        payload = f"{session.user_id}.{session.csrf}"
        return f"{payload}.{self._sign(payload)}"

    def load(self, value: str | None) -> BrowserSession | None:
        if not value or len(value) > 200:
            return None
        parts = value.split(".")
        if len(parts) != 3 or not all(parts):
            return None
        user_id, csrf, signature = parts
        expected = self._sign(f"{user_id}.{csrf}")
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            return None
        return BrowserSession(user_id, csrf)


# ----- what the page shows -----------------------------------------------------------------


@dataclass(slots=True)
class FormState:
    """The form's values as last submitted, so the page shows them again."""

    username: str = ""
    source: str = ""
    genres: tuple[str, ...] = ()
    exclude_genres: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    adventurous: str = "0"
    adult: bool = False
    unaired: bool = False
    plan_to_watch: bool = True


@dataclass(slots=True)
class View:
    form: FormState = field(default_factory=FormState)
    reply: Reply | None = None
    notice: Reply | None = None  # the answer to the last button (feedback, a refused "More")


def recommend_tokens(form: FormState) -> list[str]:
    """The form as `/recommend` tokens: the chat grammar checks the values and builds options."""
    tokens: list[str] = []
    if form.username:
        tokens.append(form.username)
    if form.source:
        tokens += ["--source", form.source]
    for genre in form.genres:
        tokens += ["--genre", genre]
    for genre in form.exclude_genres:
        tokens += ["--exclude-genre", genre]
    for media_type in form.types:
        tokens += ["--type", media_type]
    if form.adventurous not in ("", "0"):
        tokens += ["--adventurous", form.adventurous]
    if form.adult:
        tokens.append("--adult")
    if form.unaired:
        tokens.append("--unaired")
    if not form.plan_to_watch:
        tokens.append("--no-plan-to-watch")
    return tokens


def _first(fields: dict[str, list[str]], name: str) -> str:
    values = fields.get(name)
    return values[0].strip() if values else ""


def form_state(fields: dict[str, list[str]], default_source: str) -> FormState:
    source = _first(fields, "source")
    return FormState(
        username=_first(fields, "username"),
        source=source if source in SOURCES else default_source,
        genres=tuple(v.strip() for v in fields.get("genre", []) if v.strip()),
        exclude_genres=tuple(v.strip() for v in fields.get("exclude_genre", []) if v.strip()),
        types=tuple(v.strip() for v in fields.get("type", []) if v.strip()),
        adventurous=_first(fields, "adventurous") or "0",
        adult=bool(_first(fields, "adult")),
        unaired=bool(_first(fields, "unaired")),
        plan_to_watch=bool(_first(fields, "plan_to_watch")),
    )


def recommend_command(
    form: FormState, *, has_file: bool, max_chars: int = DEFAULT_MAX_LINE_CHARS
) -> RecommendCommand:
    """The command the form stands for; CommandError with a message for the page otherwise.

    An uploaded export wins over a typed name. A value that starts with "-" could be read as an
    option (`--file` names a path on this machine), so none is accepted; and a command with a file
    path is never returned.
    """
    if any(v.startswith("-") for v in (form.username, *form.genres, *form.exclude_genres)):
        raise CommandError("Names and genres cannot start with a dash.")
    if form.adventurous not in ADVENTUROUS_VALUES or not set(form.types) <= set(MEDIA_TYPES):
        raise CommandError(NOT_FROM_THE_PAGE)
    if has_file:
        # A chosen file is the deliberate act; the name box may still hold an earlier request's.
        form = dataclasses.replace(form, username="")
    if not has_file and not form.username:
        raise CommandError("Enter a username, or choose your MyAnimeList export file.")
    command = parse_tokens("recommend", recommend_tokens(form), max_chars=max_chars)
    if not isinstance(command, RecommendCommand) or command.file is not None:
        raise CommandError("Choose your export file with the file button.")
    return command


@dataclass(slots=True)
class PostedForm:
    fields: dict[str, list[str]]
    upload: Attachment | None = None
    # Why the rest of the request was not read (a form the page would not send); the fields read
    # so far (the CSRF token comes first) are kept so the answer can still be checked.
    refused: str | None = None


async def read_form(request: web.Request, *, max_file_bytes: int) -> PostedForm:
    """The posted fields, and the upload read to at most `max_file_bytes` + 1 bytes (one byte over
    is enough for the command layer to refuse it with its own message).

    A request the page would not send (too many parts, a long field) stops the reading, with
    `refused` saying why.
    """
    if request.content_type != "multipart/form-data":
        posted = await request.post()  # urlencoded: bounded by the app's client_max_size
        fields: dict[str, list[str]] = {}
        for name, value in posted.items():
            if isinstance(value, str):
                fields.setdefault(name, []).append(value[:FIELD_LIMIT])
        return PostedForm(fields)
    reader = await request.multipart()
    form = PostedForm({})
    for _ in range(MAX_PARTS):
        part = await reader.next()
        if part is None:
            return form
        if not isinstance(part, BodyPartReader) or part.name is None:
            form.refused = NOT_FROM_THE_PAGE
            return form
        if part.filename is not None:
            data = await _read_capped(part, max_file_bytes + 1)
            if part.filename or data:
                form.upload = Attachment(part.filename or "export.xml", data)
            if len(data) > max_file_bytes:
                return form  # the rest stays unread: the upload is refused anyway
            continue
        raw = await _read_capped(part, FIELD_LIMIT)
        if len(raw) > FIELD_LIMIT:
            form.refused = "A form field is too long."
            return form
        form.fields.setdefault(part.name, []).append(raw.decode("utf-8", errors="replace"))
    form.refused = NOT_FROM_THE_PAGE
    return form


async def _read_capped(part: BodyPartReader, limit: int) -> bytes:
    """At most `limit` bytes of the part (one chunk more is read at worst, never the rest)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        # read_chunk needs room for the boundary, so the size is fixed and the end trimmed.
        chunk = await part.read_chunk(READ_CHUNK)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:limit]


# ----- the front end ------------------------------------------------------------------------


class WebFrontEnd:
    def __init__(self, service: CommandService, settings: BotSettings, secret: bytes) -> None:
        self.service = service
        self.settings = settings
        self.cookies = SessionCookie(secret)
        self._views: OrderedDict[str, View] = OrderedDict()
        catalog = service.engine.catalog
        self.genres = sorted({g for item in catalog.items for g in item.genres})

    def app(self) -> web.Application:
        # Urlencoded posts are tiny; the multipart upload is streamed with its own cap.
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/", self.page)
        app.router.add_get("/static/web.css", self.stylesheet)
        app.router.add_post("/recommend", self.recommend)
        app.router.add_post("/more", self.more)
        app.router.add_post("/feedback", self.feedback)
        app.on_response_prepare.append(_security_headers)
        return app

    # ----- handlers -------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        session = self.cookies.load(request.cookies.get(COOKIE))
        fresh = session is None
        if session is None:
            session = BrowserSession.new()
        view = self._views.get(session.user.key) or View(FormState(source=self.default_source()))
        response = web.Response(
            text=self.render(view, session), content_type="text/html", charset="utf-8"
        )
        response.headers["Cache-Control"] = "no-store"
        if fresh:
            self._set_cookie(response, session)
        return response

    async def stylesheet(self, request: web.Request) -> web.Response:
        response = web.Response(text=STYLESHEET, content_type="text/css", charset="utf-8")
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    async def recommend(self, request: web.Request) -> web.Response:
        session = self.cookies.load(request.cookies.get(COOKIE))
        posted = await read_form(request, max_file_bytes=self.settings.bot.max_attachment_bytes)
        if session is None or not _csrf_ok(session, posted.fields):
            return self._forbidden(request)
        view = self._view(session)
        view.notice = None
        if posted.refused is not None:
            view.reply = Reply.failure(posted.refused)
            return self._redirect()
        form = form_state(posted.fields, self.default_source())
        known = set(self.genres)
        if not set(form.genres) <= known or not set(form.exclude_genres) <= known:
            # The page offers only the catalogue's genres; anything else is not kept.
            view.reply = Reply.failure(NOT_FROM_THE_PAGE)
            return self._redirect()
        view.form = form
        try:
            command = recommend_command(
                form,
                has_file=posted.upload is not None,
                max_chars=self.settings.bot.max_line_chars,
            )
        except CommandError as exc:
            view.reply = Reply.failure(str(exc))
            return self._redirect()
        reply = await self.service.execute(session.user, command, posted.upload)
        view.reply = _for_the_page(reply)
        return self._redirect()

    async def more(self, request: web.Request) -> web.Response:
        session, _ = await self._small_form(request)
        if session is None:
            return self._forbidden(request)
        view = self._view(session)
        reply = await self.service.execute(session.user, MoreCommand())
        if reply.error:
            # A refused "More" (wait, nothing asked yet) keeps the picks on the page.
            view.notice = reply
        else:
            view.reply, view.notice = _for_the_page(reply), None
        return self._redirect()

    async def feedback(self, request: web.Request) -> web.Response:
        session, fields = await self._small_form(request)
        if session is None:
            return self._forbidden(request)
        kind = _first(fields, "kind")
        mal_id_text = _first(fields, "mal_id")
        view = self._view(session)
        if kind not in ("seen", "not_interested") or not _is_mal_id(mal_id_text):
            view.notice = Reply.failure("That button is not one I can answer; reload the page.")
            return self._redirect()
        mal_id = int(mal_id_text)
        reply = await self.service.execute(session.user, FeedbackCommand(kind=kind, mal_id=mal_id))
        view.notice = reply
        if not reply.error and view.reply is not None:
            # Marked titles leave the page now; the store keeps them out of every later pick.
            view.reply.cards = [c for c in view.reply.cards if c.mal_id != mal_id]
        return self._redirect()

    # ----- helpers --------------------------------------------------------------------------

    def default_source(self) -> str:
        choice = self.settings.bot.default_source
        if choice == "auto":
            return "mal" if self.service.mal_available else "anilist"
        return choice

    async def _small_form(
        self, request: web.Request
    ) -> tuple[BrowserSession | None, dict[str, list[str]]]:
        """A button's form (urlencoded, small) and its browser session, None unless the CSRF
        token matches."""
        session = self.cookies.load(request.cookies.get(COOKIE))
        try:
            posted = await read_form(request, max_file_bytes=0)
        except web.HTTPRequestEntityTooLarge:
            return None, {}
        if session is None or not _csrf_ok(session, posted.fields):
            return None, {}
        if posted.refused is not None or posted.upload is not None:
            return None, {}
        return session, posted.fields

    def _view(self, session: BrowserSession) -> View:
        key = session.user.key
        view = self._views.pop(key, None) or View(FormState(source=self.default_source()))
        self._views[key] = view
        while len(self._views) > self.settings.bot.sessions_max:
            self._views.popitem(last=False)
        return view

    @staticmethod
    def _redirect(fragment: str = "#results") -> web.Response:
        # 303: the browser fetches the page with GET, so reloading it never posts again.
        return web.Response(status=303, headers={"Location": f"/{fragment}"})

    def _forbidden(self, request: web.Request) -> web.Response:
        """403 with a fresh session, so reloading the page gives a form that works."""
        session = BrowserSession.new()
        body = PAGE.substitute(
            title="Form expired · animerec",
            body=f'<main id="main"><h1>animerec</h1><p role="alert">{esc(FORBIDDEN_MESSAGE)}</p>'
            '<p><a href="/">Back to the form</a></p></main>',
        )
        response = web.Response(status=403, text=body, content_type="text/html", charset="utf-8")
        if self.cookies.load(request.cookies.get(COOKIE)) is None:
            self._set_cookie(response, session)
        return response

    def _set_cookie(self, response: web.StreamResponse, session: BrowserSession) -> None:
        response.set_cookie(
            COOKIE,
            self.cookies.dump(session),
            max_age=COOKIE_MAX_AGE_S,
            path="/",
            httponly=True,
            samesite="Lax",
            secure=self.settings.web.secure_cookie,
        )

    # ----- rendering ------------------------------------------------------------------------

    def render(self, view: View, session: BrowserSession) -> str:
        parts = [
            '<a class="skip" href="#main">Skip to the form</a>',
            '<header><h1>animerec</h1><p class="tagline">Anime recommendations from your '
            "MyAnimeList or AniList list.</p></header>",
            '<main id="main">',
            self._render_form(view.form, session),
            self._render_results(view, session),
            "</main>",
            self._render_footer(),
        ]
        return PAGE.substitute(title="animerec: anime recommendations", body="\n".join(parts))

    def _render_form(self, form: FormState, session: BrowserSession) -> str:
        csrf = _csrf_field(session)
        sources = "".join(
            f'<label class="choice"><input type="radio" name="source" value="{s}"'
            f"{' checked' if s == form.source else ''}> {esc(service_display_name(s))}</label>"
            for s in SOURCES
        )
        limit_mb = self.settings.bot.max_attachment_bytes // (1024 * 1024)
        types = _checkboxes(
            "type", "type", [(t, MEDIA_TYPE_NAMES.get(t, t)) for t in MEDIA_TYPES], form.types
        )
        include = _checkboxes("genre", "g-in", [(g, g) for g in self.genres], form.genres)
        exclude = _checkboxes(
            "exclude_genre", "g-out", [(g, g) for g in self.genres], form.exclude_genres
        )
        adventurous = "".join(
            f'<option value="{value}"{" selected" if value == form.adventurous else ""}>'
            f"{esc(label)}</option>"
            for value, label in ADVENTUROUS_CHOICES
        )
        return f"""<section aria-labelledby="form-heading">
<h2 id="form-heading">Get recommendations</h2>
<form method="post" action="/recommend" enctype="multipart/form-data">
{csrf}
<fieldset><legend>Whose list</legend>
<p><label for="username">Username</label>
<input id="username" name="username" type="text" value="{esc(form.username)}" maxlength="64"
 autocomplete="username" autocapitalize="none" spellcheck="false" aria-describedby="username-hint">
<span id="username-hint" class="hint">Your name on the site chosen below; the list must be public.</span></p>
<fieldset class="inline"><legend>Site</legend>{sources}</fieldset>
<p><label for="export">Or upload your MyAnimeList export</label>
<input id="export" name="export" type="file" accept=".xml,.gz,application/xml,text/xml,application/gzip"
 aria-describedby="export-hint">
<span id="export-hint" class="hint">The .xml or .xml.gz file from MyAnimeList's export page, up to {limit_mb} MB; a chosen file is used instead of the username.</span></p>
</fieldset>
<fieldset><legend>Filters</legend>
<details{" open" if form.genres else ""}><summary>Genres to include</summary><div class="grid">{include}</div></details>
<details{" open" if form.exclude_genres else ""}><summary>Genres to leave out</summary><div class="grid">{exclude}</div></details>
<details{" open" if form.types else ""}><summary>Types</summary><div class="grid">{types}</div></details>
<p><label for="adventurous">Adventurous</label>
<select id="adventurous" name="adventurous">{adventurous}</select></p>
<p><label class="choice"><input type="checkbox" name="plan_to_watch" value="1"{" checked" if form.plan_to_watch else ""}> Include titles on my plan-to-watch list</label></p>
<p><label class="choice"><input type="checkbox" name="unaired" value="1"{" checked" if form.unaired else ""}> Include titles that have not aired yet</label></p>
<p><label class="choice"><input type="checkbox" name="adult" value="1"{" checked" if form.adult else ""}> Include adult titles</label></p>
</fieldset>
<p><button type="submit" class="primary">Recommend</button></p>
</form>
</section>"""

    def _render_results(self, view: View, session: BrowserSession) -> str:
        out = ['<section id="results" aria-labelledby="results-heading">']
        reply = view.reply
        heading = (reply.heading if reply and reply.heading else None) or "Recommendations"
        out.append(f'<h2 id="results-heading">{esc(heading)}</h2>')
        if view.notice is not None:
            out.append(_message_block(view.notice))
        if reply is None:
            out.append('<p class="hint">Your picks will appear here.</p>')
        else:
            out.append(_message_block(reply))
            if reply.cards:
                out.append('<ol class="cards">')
                out.extend(self._render_card(rec, session) for rec in reply.cards)
                out.append("</ol>")
            out.extend(f'<p class="note">{esc(note)}</p>' for note in reply.notes)
            if any(b.action == "more" for b in reply.buttons):
                out.append(
                    '<form method="post" action="/more" class="more">'
                    f'{_csrf_field(session)}<button type="submit">More</button></form>'
                )
        out.append("</section>")
        return "\n".join(out)

    def _render_card(self, rec: Recommendation, session: BrowserSession) -> str:
        title = esc(rec.title)
        lines: list[str] = []
        if rec.title_other:
            lines.append(f'<p class="other" lang="en">{esc(rec.title_other)}</p>')
        facts = rec.facts_line()
        if facts:
            lines.append(f'<p class="facts">{esc(facts)}</p>')
        if rec.genres:
            lines.append(f'<p class="genres">{esc(", ".join(rec.genres))}</p>')
        score = score_text(rec)
        if score:
            lines.append(f'<p class="score">{esc(score[:1].upper() + score[1:])}</p>')
        if rec.why:
            lines.append(
                '<ul class="why">' + "".join(f"<li>{esc(w)}</li>" for w in rec.why) + "</ul>"
            )
        links = [
            f'<a href="https://myanimelist.net/anime/{rec.mal_id}">MyAnimeList'
            f'<span class="vh">: {title}</span></a>'
        ]
        anilist_id = self._anilist_id(rec.mal_id)
        if anilist_id is not None:
            links.append(
                f'<a href="https://anilist.co/anime/{anilist_id}">AniList'
                f'<span class="vh">: {title}</span></a>'
            )
        cover = (
            f'<img class="cover" src="{esc(rec.picture_url)}" alt="" loading="lazy" '
            'referrerpolicy="no-referrer">'
            if rec.picture_url and rec.picture_url.startswith("https://")
            else ""
        )
        return f"""<li class="card" id="pick-{rec.mal_id}">
<article aria-labelledby="title-{rec.mal_id}">{cover}
<h3 id="title-{rec.mal_id}">{title}</h3>
{"".join(lines)}
<p class="links">{" · ".join(links)}</p>
<form method="post" action="/feedback" class="feedback">{_csrf_field(session)}
<input type="hidden" name="mal_id" value="{rec.mal_id}">
<button type="submit" name="kind" value="seen">Seen it<span class="vh">: {title}</span></button>
<button type="submit" name="kind" value="not_interested">Not interested<span class="vh">: {title}</span></button>
</form>
</article>
</li>"""

    def _render_footer(self) -> str:
        info = self.service.engine.info
        return (
            f"<footer><p>Model: {esc(info.name)} (version {esc(info.version)}), trained on "
            f"{esc(info.trained_on)}. Your seen and not-interested marks are kept for this "
            "browser (a cookie).</p></footer>"
        )

    def _anilist_id(self, mal_id: int) -> int | None:
        catalog = self.service.engine.catalog
        index = catalog.index_of(mal_id)
        return None if index is None else catalog[index].anilist_id


def _for_the_page(reply: Reply) -> Reply:
    # Weekly DMs need a chat to send to; the page has none.
    reply.buttons = [b for b in reply.buttons if b.action != "subscribe"]
    return reply


def _csrf_ok(session: BrowserSession, fields: dict[str, list[str]]) -> bool:
    sent = fields.get("csrf", [])
    return len(sent) == 1 and hmac.compare_digest(sent[0].encode(), session.csrf.encode())


def _is_mal_id(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < len(text) <= 9 and text[0] != "0"


def _csrf_field(session: BrowserSession) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(session.csrf)}">'


def _checkboxes(
    name: str, id_prefix: str, choices: Iterable[tuple[str, str]], checked: Iterable[str]
) -> str:
    chosen = set(checked)
    out = []
    for n, (value, label) in enumerate(choices):
        mark = " checked" if value in chosen else ""
        out.append(
            f'<label class="choice" for="{id_prefix}-{n}"><input type="checkbox" '
            f'id="{id_prefix}-{n}" name="{name}" value="{esc(value)}"{mark}> {esc(label)}</label>'
        )
    return "".join(out)


def _message_block(reply: Reply) -> str:
    if not reply.lines:
        return ""
    kind = ("error", "alert") if reply.error else ("message", "status")
    text = "".join(f"<p>{esc(line)}</p>" for line in reply.lines)
    return f'<div class="{kind[0]}" role="{kind[1]}">{text}</div>'


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


# ----- serving ------------------------------------------------------------------------------


class WebServer:
    """The page on host:port in the running loop; `port` is the bound one (0 picks a free one)."""

    def __init__(self, front: WebFrontEnd, host: str, port: int) -> None:
        self.front = front
        self.host = host
        self.requested_port = port
        self._runner: web.AppRunner | None = None
        self.port = port

    async def start(self) -> None:
        runner = web.AppRunner(self.front.app())
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0] if runner.addresses else None
        if isinstance(address, tuple) and len(address) >= 2:
            self.port = int(address[1])
        log.info("web page at %s", self.url)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<link rel="stylesheet" href="/static/web.css">
</head>
<body>
$body
</body>
</html>
""")

STYLESHEET = """\
:root { color-scheme: light dark; --fg: #1b1b1f; --bg: #fafafa; --card: #fff; --muted: #5b5b66;
  --line: #d6d6de; --accent: #2a52be; --err: #a4161a; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #ececf1; --bg: #16161a; --card: #202026; --muted: #a8a8b3; --line: #3a3a44;
    --accent: #8fb0ff; --err: #ff8a8a; }
}
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 64rem; padding: 1rem; font: 16px/1.5 system-ui, sans-serif;
  color: var(--fg); background: var(--bg); }
h1 { margin: 0; font-size: 1.8rem; }
h2 { font-size: 1.3rem; margin: 1.5rem 0 .5rem; }
h3 { font-size: 1.1rem; margin: 0 0 .25rem; }
a { color: var(--accent); }
.tagline, .hint, .note, footer { color: var(--muted); }
.hint { display: block; font-size: .9rem; }
fieldset { border: 1px solid var(--line); border-radius: .5rem; margin: 0 0 1rem; padding: .5rem 1rem; }
fieldset.inline { border: 0; padding: 0; margin: .5rem 0; }
legend { font-weight: 600; padding: 0 .25rem; }
label { font-weight: 500; }
input[type=text], select { display: block; width: 100%; max-width: 24rem; padding: .5rem;
  font: inherit; border: 1px solid var(--line); border-radius: .25rem; background: var(--card);
  color: var(--fg); }
input[type=file] { display: block; max-width: 100%; margin: .25rem 0; }
.choice { display: inline-flex; gap: .35rem; align-items: center; margin: .15rem 1rem .15rem 0;
  font-weight: 400; min-height: 2rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(10rem, 1fr)); gap: 0 .5rem; }
summary { cursor: pointer; padding: .35rem 0; font-weight: 500; }
button { font: inherit; padding: .45rem .9rem; border-radius: .35rem; border: 1px solid var(--line);
  background: var(--card); color: var(--fg); cursor: pointer; min-height: 2.5rem; }
button.primary { background: var(--accent); color: var(--bg); border-color: var(--accent);
  font-weight: 600; }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.error { color: var(--err); border-left: 4px solid var(--err); padding: .25rem .75rem; }
.message { border-left: 4px solid var(--accent); padding: .25rem .75rem; }
.cards { list-style: none; padding: 0; display: grid; gap: 1rem;
  grid-template-columns: repeat(auto-fill, minmax(18rem, 1fr)); }
.card article { background: var(--card); border: 1px solid var(--line); border-radius: .5rem;
  padding: .75rem 1rem; height: 100%; }
.card p { margin: .15rem 0; }
.cover { float: right; width: 4.5rem; margin: 0 0 .5rem .5rem; border-radius: .25rem; }
.other, .facts, .genres { color: var(--muted); font-size: .95rem; }
.score { font-weight: 600; }
.why { padding-left: 1.1rem; margin: .35rem 0; font-size: .95rem; }
.feedback { display: flex; flex-wrap: wrap; gap: .5rem; margin-top: .5rem; }
.vh { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
  white-space: nowrap; }
.skip { position: absolute; left: -999px; }
.skip:focus { left: 1rem; top: 1rem; background: var(--card); padding: .5rem; }
footer { margin-top: 2rem; font-size: .9rem; }
"""

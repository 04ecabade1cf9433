"""The web page through aiohttp's test client: a real server, the real command layer and engine,
real SQLite; only the list services are fakes (httpx.MockTransport, as in every bot test)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.app import (
    WEB_SECRET_ENV,
    Runtime,
    Secrets,
    environment_secrets,
    open_runtime,
    read_secrets,
    serve,
)
from bot.parsing import CommandError
from bot.settings import BotSection, BotSettings, WebSection, bot_settings
from bot.web import (
    COOKIE,
    BrowserSession,
    FormState,
    SessionCookie,
    WebFrontEnd,
    recommend_command,
)
from inference.engine import Engine
from inference.errors import ConfigError
from tests.bot.conftest import MAL_CLIENT_ID, Services, fast_sources, make_settings

EXAMPLE_EXPORT = Path(__file__).resolve().parents[2] / "examples" / "example-export.xml"
SECRET = b"0123456789abcdef0123456789abcdef"
CARD = re.compile(r'<li class="card" id="pick-([0-9]+)">')
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[TestClient]:
    front = WebFrontEnd(runtime.service, runtime.settings, SECRET)
    async with TestClient(TestServer(front.app())) as test_client:
        yield test_client


async def page(client: TestClient) -> str:
    response = await client.get("/")
    assert response.status == 200
    return await response.text()


async def csrf_token(client: TestClient) -> str:
    match = CSRF.search(await page(client))
    assert match is not None
    return match.group(1)


def upload_form(csrf: str | None, data: bytes, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    if csrf is not None:
        form.add_field("csrf", csrf)
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("plan_to_watch", "1")
    form.add_field("export", data, filename="animelist.xml", content_type="text/xml")
    return form


async def upload(client: TestClient, data: bytes | None = None, **fields: str) -> str:
    csrf = await csrf_token(client)
    response = await client.post(
        "/recommend", data=upload_form(csrf, data or EXAMPLE_EXPORT.read_bytes(), **fields)
    )
    assert response.status == 200  # after the redirect to the page
    return await response.text()


def card_ids(html_text: str) -> list[int]:
    return [int(m) for m in CARD.findall(html_text)]


class Controls(HTMLParser):
    """Form controls, their labels, and headings, as a screen reader would find them."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, str | None]] = []
        self.label_for: set[str] = set()
        self.wrapped: int = 0  # controls inside a <label>
        self.label_depth = 0
        self.headings: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "label":
            self.label_depth += 1
            if a.get("for"):
                self.label_for.add(str(a["for"]))
        if tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.controls.append(a)
            if self.label_depth:
                self.wrapped += 1
                a["wrapped"] = "1"
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.label_depth -= 1


async def test_the_form_renders_with_a_label_for_every_control(client: TestClient) -> None:
    response = await client.get("/")
    text = await response.text()
    parser = Controls()
    parser.feed(text)
    names = {c.get("name") for c in parser.controls}
    assert {"username", "source", "export", "genre", "exclude_genre", "type"} <= names
    assert {"adventurous", "adult", "unaired", "plan_to_watch"} <= names
    for control in parser.controls:
        assert control.get("wrapped") or control.get("id") in parser.label_for, control
    assert parser.headings[:2] == ["h1", "h2"]
    assert '<html lang="en">' in text and 'name="viewport"' in text
    assert "<script" not in text
    cookie = response.headers["Set-Cookie"]
    assert COOKIE in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


async def test_every_response_carries_the_security_headers(client: TestClient) -> None:
    for response in (
        await client.get("/"),
        await client.get("/static/web.css"),
        await client.post("/recommend", data={"username": "x"}),
        await client.get("/no/such/page"),
    ):
        csp = response.headers["Content-Security-Policy"]
        assert "script-src" not in csp and "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_a_post_without_the_csrf_token_is_forbidden(
    client: TestClient, runtime: Runtime
) -> None:
    await page(client)  # a valid session cookie, but no token in the forms below
    data = EXAMPLE_EXPORT.read_bytes()
    missing = await client.post("/recommend", data=upload_form(None, data))
    wrong = await client.post("/recommend", data=upload_form("not-the-token", data))
    more = await client.post("/more", data={})
    feedback = await client.post("/feedback", data={"kind": "seen", "mal_id": "1"})
    for response in (missing, wrong, more, feedback):
        assert response.status == 403
        assert "expired" in await response.text()
    # Nothing was done on the forged requests' behalf.
    assert "pick-" not in await page(client)


async def test_genres_not_offered_by_the_page_are_refused(client: TestClient) -> None:
    csrf = await csrf_token(client)
    response = await client.post(
        "/recommend", data={"csrf": csrf, "username": "alfan", "genre": "Not A Genre"}
    )
    text = await response.text()
    assert "did not come from this page" in text and "Not A Genre" not in text


async def test_a_token_from_another_browser_is_forbidden(client: TestClient, runtime: Runtime):
    other = BrowserSession.new()
    response = await client.post(
        "/feedback", data={"csrf": other.csrf, "kind": "seen", "mal_id": "1"}
    )
    assert response.status == 403


async def test_a_tampered_cookie_is_a_new_session(client: TestClient) -> None:
    csrf = await csrf_token(client)
    cookies = SessionCookie(SECRET)
    forged = cookies.dump(BrowserSession("someone-else", csrf))[:-2] + "AA"
    assert cookies.load(forged) is None
    client.session.cookie_jar.clear()
    response = await client.post(
        "/more", data={"csrf": csrf}, headers={"Cookie": f"{COOKIE}={forged}"}
    )
    assert response.status == 403
    assert COOKIE in response.headers["Set-Cookie"]  # a fresh session, so a reload works


async def test_an_export_upload_returns_cards(client: TestClient) -> None:
    text = await upload(client)
    ids = card_ids(text)
    assert len(ids) == 10
    assert "Recommendations for example_watcher" in text
    assert f'href="https://myanimelist.net/anime/{ids[0]}"' in text
    assert 'href="https://anilist.co/anime/' in text  # the catalogue knows AniList ids
    assert "<li>because" in text.lower() or 'class="why"' in text
    assert text.count('value="not_interested"') == 10
    assert 'action="/more"' in text


async def test_not_interested_removes_that_title_from_the_next_results(
    client: TestClient, runtime: Runtime
) -> None:
    first = card_ids(await upload(client))
    dropped = first[0]
    csrf = await csrf_token(client)
    response = await client.post(
        "/feedback", data={"csrf": csrf, "kind": "not_interested", "mal_id": str(dropped)}
    )
    text = await response.text()
    assert "Noted: you are not interested in" in text
    assert dropped not in card_ids(text) and card_ids(text) == first[1:]
    again = card_ids(await upload(client))
    assert len(again) == 10 and dropped not in again
    more = card_ids(await (await client.post("/more", data={"csrf": csrf})).text())
    assert more and dropped not in more and not set(more) & set(again)


async def test_feedback_is_stored_for_the_browser_as_a_web_user(
    client: TestClient, runtime: Runtime
) -> None:
    first = card_ids(await upload(client))
    csrf = await csrf_token(client)
    await client.post("/feedback", data={"csrf": csrf, "kind": "seen", "mal_id": str(first[1])})
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))[COOKIE].value
    session = SessionCookie(SECRET).load(cookie)
    assert session is not None and session.csrf == csrf
    assert await runtime.storage.feedback("web", session.user_id) == {first[1]: "seen"}


async def test_an_oversize_upload_gets_a_clear_message(
    tmp_path: Path, engine: Engine, services: Services
) -> None:
    limit = 1024 * 1024
    settings = dataclasses.replace(
        make_settings(tmp_path), bot=BotSection(max_attachment_bytes=limit)
    )
    async with open_runtime(
        settings, engine, sources_settings=fast_sources(), transport=services.transport
    ) as rt:
        front = WebFrontEnd(rt.service, settings, SECRET)
        async with TestClient(TestServer(front.app())) as client:
            text = await upload(client, b"<" + b" " * (4 * limit))
    assert "That file is larger than 1 MB" in text and "pick-" not in text


async def test_a_hostile_username_is_escaped(client: TestClient) -> None:
    csrf = await csrf_token(client)
    hostile = '<script>alert("x")</script>'
    response = await client.post(
        "/recommend",
        data={"csrf": csrf, "username": hostile, "source": "anilist", "plan_to_watch": "1"},
    )
    text = await response.text()
    assert "<script" not in text
    assert "&lt;script&gt;" in text  # the name is shown back, escaped
    # The same for a name that comes from inside an uploaded export.
    export = EXAMPLE_EXPORT.read_text().replace(
        "example_watcher", "&lt;img src=x onerror=alert(1)&gt;"
    )
    text = await upload(client, export.encode())
    assert "<img src=x" not in text
    assert "Recommendations for &lt;img src=x onerror=alert(1)&gt;" in text


async def test_a_name_fetched_from_a_list_site_gives_cards(client: TestClient) -> None:
    csrf = await csrf_token(client)
    response = await client.post(
        "/recommend",
        data={"csrf": csrf, "username": "alfan", "source": "anilist", "plan_to_watch": "1"},
    )
    text = await response.text()
    assert len(card_ids(text)) >= 1, text
    assert 'value="alfan"' in text  # the form keeps what was typed


async def test_an_uploaded_file_wins_over_a_name_left_in_the_box(client: TestClient) -> None:
    text = await upload(client, username="alfan", source="anilist")
    assert len(card_ids(text)) == 10 and "Recommendations for example_watcher" in text


async def test_filters_map_onto_the_recommend_options(client: TestClient, runtime: Runtime):
    text = await upload(client, type="movie")
    ids = card_ids(text)
    assert ids
    catalog = runtime.service.engine.catalog
    assert all(catalog[catalog.index_of(i)].media_type == "movie" for i in ids)  # type: ignore[index]
    assert 'value="movie" checked' in text


async def test_a_server_path_can_never_be_named(client: TestClient) -> None:
    csrf = await csrf_token(client)
    for name in ("--file=/etc/passwd", "--file", "-x"):
        response = await client.post(
            "/recommend", data={"csrf": csrf, "username": name, "source": "mal"}
        )
        text = await response.text()
        assert "pick-" not in text and "cannot start with a dash" in text


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    username=st.text(max_size=30),
    genres=st.lists(st.text(max_size=20), max_size=3),
    exclude=st.lists(st.text(max_size=20), max_size=3),
    adventurous=st.sampled_from(["0", "0.5", "1", "--file", "--file=/etc/passwd", "x"]),
    has_file=st.booleans(),
)
def test_no_form_ever_becomes_a_file_read(
    username: str, genres: list[str], exclude: list[str], adventurous: str, has_file: bool
) -> None:
    form = FormState(
        username=username.strip(),
        source="mal",
        genres=tuple(genres),
        exclude_genres=tuple(exclude),
        adventurous=adventurous,
    )
    try:
        command = recommend_command(form, has_file=has_file)
    except CommandError:
        return
    assert command.file is None


async def test_more_without_results_keeps_the_page_usable(client: TestClient) -> None:
    csrf = await csrf_token(client)
    text = await (await client.post("/more", data={"csrf": csrf})).text()
    assert "Ask for recommendations first" in text


async def test_a_stale_feedback_button_is_answered(client: TestClient) -> None:
    csrf = await csrf_token(client)
    for data in ({"kind": "seen", "mal_id": "0"}, {"kind": "delete", "mal_id": "1"}):
        response = await client.post("/feedback", data={"csrf": csrf, **data})
        assert "not one I can answer" in await response.text()


def test_the_web_settings_are_checked() -> None:
    settings = bot_settings({"web": {"enabled": True, "host": "0.0.0.0", "port": 8000}})
    assert settings.web == WebSection(enabled=True, host="0.0.0.0", port=8000)
    with pytest.raises(ConfigError, match="port"):
        bot_settings({"web": {"port": 70000}})
    with pytest.raises(ConfigError):
        bot_settings({"web": {"enabled": "yes"}})


def test_the_web_secret_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    enabled = BotSettings(web=WebSection(enabled=True))
    monkeypatch.setenv(WEB_SECRET_ENV, "short")
    with pytest.raises(ConfigError, match=WEB_SECRET_ENV):
        read_secrets(enabled)
    assert read_secrets(BotSettings()).web_secret is None  # not read when the page is off
    secret = "s" * 40
    monkeypatch.setenv(WEB_SECRET_ENV, secret)
    assert read_secrets(enabled).web_secret == secret
    assert secret in environment_secrets()  # masked in logs from the first line on


async def test_python_m_bot_with_only_the_web_page_serves_it(
    tmp_path: Path, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    settings = dataclasses.replace(
        make_settings(tmp_path), web=WebSection(enabled=True, host="127.0.0.1", port=0)
    )
    caplog.set_level("INFO")
    task = asyncio.ensure_future(
        serve(settings, Secrets(mal_client_id=MAL_CLIENT_ID), engine, fast_sources())
    )
    try:
        url = None
        for _ in range(6000):  # until the server says where it listens (or serve() failed)
            found = re.search(r"web page at (http://\S+)", caplog.text)
            if found or task.done():
                url = found.group(1) if found else None
                break
            await asyncio.sleep(0.01)
        assert url is not None and not task.done(), caplog.text
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            text = await response.text()
        assert 'action="/recommend"' in text
        assert WEB_SECRET_ENV in caplog.text and "new session" in caplog.text
        assert not task.done()  # no console: nothing read stdin and ended the process
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_port_in_use_stops_start_up_with_a_message(tmp_path: Path, engine: Engine):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = dataclasses.replace(
            make_settings(tmp_path), web=WebSection(enabled=True, port=port)
        )
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            await serve(settings, Secrets(web_secret="w" * 40), engine, fast_sources())

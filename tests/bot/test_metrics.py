"""/healthz and /metrics: a real aiohttp server on a free loopback port, read with httpx."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot import metrics
from bot.app import Runtime
from bot.console import ConsoleSender
from bot.metrics import Counter, Histogram, MetricsServer, start_metrics_server
from inference.errors import ConfigError
from tests.bot.conftest import CONSOLE_USER, chat_user

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """Samples by (name, labels) and the TYPE of each metric family; fails on a malformed line."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for line in text.split("\n"):  # the format's only line break; a label may hold a "\r"
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        if line.startswith("# HELP ") or not line:
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        pairs = LABEL.findall(labels or "")
        assert ",".join(f'{k}="{v}"' for k, v in pairs) == (labels or ""), line
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or family in types, f"{name} has no TYPE line"
        samples[name, frozenset((k, unescape(v)) for k, v in pairs)] = float(value)
    return samples, types


def value(samples: Samples, metric_name: str, **labels: str) -> float:
    return samples.get((metric_name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def server(runtime: Runtime) -> AsyncIterator[MetricsServer]:
    srv = await start_metrics_server(runtime, "127.0.0.1", 0)
    try:
        yield srv
    finally:
        await srv.close()


async def scrape(server: MetricsServer) -> tuple[Samples, dict[str, str]]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


async def test_metrics_count_replies_fetch_failures_and_latency(
    runtime: Runtime, server: MetricsServer
) -> None:
    assert server.port > 0
    before, _ = await scrape(server)
    service = runtime.service
    await service.handle_line(CONSOLE_USER, "/help")
    await service.handle_line(CONSOLE_USER, "/help")
    await service.handle_line(chat_user(1), "/recommend malfan --count 3")
    await service.handle_line(chat_user(2), "/recommend secretive")  # a private list
    await service.handle_line(chat_user(3), "/recommend nobody_here")  # an unknown user
    after, types = await scrape(server)

    def delta(metric_name: str, **labels: str) -> float:
        return value(after, metric_name, **labels) - value(before, metric_name, **labels)

    assert types["animerec_replies_total"] == "counter"
    assert delta("animerec_replies_total", platform="console", command="help") == 2
    assert delta("animerec_replies_total", platform="telegram", command="recommend") == 3
    assert types["animerec_reply_seconds"] == "histogram"
    assert delta("animerec_reply_seconds_count", platform="telegram") == 3
    assert delta("animerec_reply_seconds_bucket", platform="console", le="+Inf") == 2
    assert delta("animerec_reply_seconds_sum", platform="telegram") > 0
    failures = "animerec_list_fetch_failures_total"
    assert delta(failures, service="mal", kind="PrivateList") == 1
    assert delta(failures, service="mal", kind="UserNotFound") == 1
    assert types["animerec_weekly_dms_sent_total"] == "counter"
    assert types["animerec_weekly_dms_failed_total"] == "counter"


async def test_healthz_is_ok_while_a_front_end_runs_and_503_when_none_does(
    runtime: Runtime, server: MetricsServer
) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        assert runtime.senders == {}
        down = await client.get("/healthz")
        assert down.status_code == 503

        runtime.senders["console"] = ConsoleSender(None)
        up = await client.get("/healthz")
        assert (up.status_code, up.text.strip()) == (200, "ok")

        class Reconnecting:
            ready = False

            async def send(self, chat_id: str, reply: Any) -> None: ...

        runtime.senders.clear()
        runtime.senders["telegram"] = Reconnecting()
        assert (await client.get("/healthz")).status_code == 503
        samples, types = parse((await client.get("/metrics")).text)
        assert types["animerec_platform_up"] == "gauge"
        assert value(samples, "animerec_platform_up", platform="telegram") == 0


async def test_a_port_in_use_is_a_one_line_config_error(
    runtime: Runtime, server: MetricsServer
) -> None:
    with pytest.raises(ConfigError, match=rf"\[metrics\] cannot listen on 127.0.0.1:{server.port}"):
        await start_metrics_server(runtime, "127.0.0.1", server.port)


@given(st.text(max_size=30), st.lists(st.floats(0, 100), max_size=20))
def test_any_label_value_and_observations_render_as_valid_exposition(
    label: str, observations: list[float]
) -> None:
    counter = Counter("t_total", "A test counter.", ("name",))
    histogram = Histogram("t_seconds", "A test histogram.", ("name",), buckets=(1.0, 10.0))
    counter.inc(label, amount=2)
    for x in observations:
        histogram.observe(x, label)
    lines = [f"# TYPE {m.name} {m.kind}\n" + "\n".join(m.lines()) for m in (counter, histogram)]
    samples, _ = parse("\n".join(lines))
    assert value(samples, "t_total", name=label) == 2
    if observations:
        buckets = [value(samples, "t_seconds_bucket", name=label, le=le) for le in ("1", "10")]
        count = value(samples, "t_seconds_count", name=label)
        assert buckets[0] <= buckets[1] <= count == len(observations)
        assert buckets[0] == sum(1 for x in observations if x <= 1.0)


def test_command_names_are_the_commands_lowercase() -> None:
    from bot.parsing import FeedbackCommand, HelpCommand, RecommendCommand

    assert metrics.command_name(RecommendCommand()) == "recommend"
    assert metrics.command_name(HelpCommand()) == "help"
    assert metrics.command_name(FeedbackCommand("seen", 1)) == "feedback"

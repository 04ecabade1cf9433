"""What the bot process counts, and the HTTP server that shows it: `/healthz` and `/metrics`.

The counters are process-wide (one bot per process) and written in the Prometheus text exposition
format by hand: a few counters and one histogram do not earn a dependency. Each is incremented at
the one place its event happens: replies in `CommandService.execute`, list fetch failures in
`CommandService._fetch_and_cache`, weekly DMs in `bot.scheduler`.

The server is aiohttp's (a declared dependency, also pinned by discord.py) on the bot's own event
loop; `[metrics]` turns it on. `/healthz` answers 200 "ok" while at least one front end is
connected and 503 while none is (every platform stopped or reconnecting), so a container's
HEALTHCHECK sees a bot that serves nobody.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from inference.errors import ConfigError

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds: a help reply takes milliseconds, a fresh list fetch plus a model run a few seconds.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if value != int(value) else str(int(value))


class Counter:
    """A monotonically increasing count per combination of label values."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = labels
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        key = tuple(labels)
        if len(key) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {key}")
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(tuple(labels), 0.0)

    def lines(self) -> Iterable[str]:
        for key, value in sorted(self._values.items()):
            yield f"{self.name}{_labels(self.label_names, key)} {_number(value)}"


class Histogram:
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: tuple[str, ...] = (),
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ) -> None:
        self.name = name
        self.help = help_text
        self.label_names = labels
        self.buckets = tuple(sorted(buckets))
        self._counts: dict[tuple[str, ...], list[int]] = {}
        self._sums: dict[tuple[str, ...], float] = {}

    def observe(self, value: float, *labels: str) -> None:
        key = tuple(labels)
        if len(key) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {key}")
        counts = self._counts.setdefault(key, [0] * (len(self.buckets) + 1))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                counts[i] += 1
        counts[-1] += 1  # +Inf, which is also the count
        self._sums[key] = self._sums.get(key, 0.0) + value

    def count(self, *labels: str) -> int:
        counts = self._counts.get(tuple(labels))
        return counts[-1] if counts else 0

    def lines(self) -> Iterable[str]:
        for key, counts in sorted(self._counts.items()):
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                le = f'le="{_number(bound)}"'
                yield f"{self.name}_bucket{_labels(self.label_names, key, le)} {n}"
            yield f"{self.name}_sum{_labels(self.label_names, key)} {_number(self._sums[key])}"
            yield f"{self.name}_count{_labels(self.label_names, key)} {counts[-1]}"


REPLIES = Counter(
    "animerec_replies_total",
    "Commands answered, by front end and command.",
    ("platform", "command"),
)
REPLY_SECONDS = Histogram(
    "animerec_reply_seconds",
    "Seconds from a parsed command to its reply, by front end.",
    ("platform",),
)
LIST_FETCH_FAILURES = Counter(
    "animerec_list_fetch_failures_total",
    "List fetches from MyAnimeList or AniList that failed, by service and kind of failure.",
    ("service", "kind"),
)
DMS_SENT = Counter(
    "animerec_weekly_dms_sent_total",
    "Weekly DMs delivered, by platform.",
    ("platform",),
)
DMS_FAILED = Counter(
    "animerec_weekly_dms_failed_total",
    "Weekly DMs not delivered, by platform and reason (forbidden, rate_limited, error).",
    ("platform", "reason"),
)
DMS_RATE_LIMITED = Counter(
    "animerec_weekly_dm_rate_limits_total",
    "Rate-limit answers to weekly DMs (each one waited out and retried, within the bound).",
    ("platform",),
)
METRICS: tuple[Counter | Histogram, ...] = (
    REPLIES,
    REPLY_SECONDS,
    LIST_FETCH_FAILURES,
    DMS_SENT,
    DMS_FAILED,
    DMS_RATE_LIMITED,
)


class _Readiness(Protocol):
    """What the server reads about the front ends: the runtime's senders (bot.app.Runtime)."""

    @property
    def senders(self) -> Mapping[str, object]: ...


def render(runtime: _Readiness | None = None) -> str:
    """Every metric in the Prometheus text exposition format (version 0.0.4)."""
    out: list[str] = []
    for metric in METRICS:
        out.append(f"# HELP {metric.name} {metric.help}")
        out.append(f"# TYPE {metric.name} {metric.kind}")
        out.extend(metric.lines())
    if runtime is not None:
        out.append("# HELP animerec_platform_up Whether a front end is connected (1) or not (0).")
        out.append("# TYPE animerec_platform_up gauge")
        for name, sender in sorted(runtime.senders.items()):
            up = 1 if getattr(sender, "ready", True) else 0
            out.append(f'animerec_platform_up{{platform="{_escape(name)}"}} {up}')
    return "\n".join(out) + "\n"


def command_name(command: object) -> str:
    """ "recommend" for a RecommendCommand: the label a reply is counted under."""
    name = type(command).__name__
    return (name.removesuffix("Command") or name).lower()


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def counts_replies(execute: F) -> F:
    """For `CommandService.execute(self, user, command, ...)`: count the reply and time it."""

    @functools.wraps(execute)
    async def wrapper(self: Any, user: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await execute(self, user, command, *args, **kwargs)
        finally:
            REPLIES.inc(user.platform, command_name(command))
            REPLY_SECONDS.observe(time.perf_counter() - started, user.platform)

    return wrapper  # type: ignore[return-value]


def counts_fetch_failures(fetch: F) -> F:
    """For `CommandService._fetch_and_cache(self, service, name)`: count each failure by kind
    (the exception's class: UserNotFound, PrivateList, RateLimited, ServiceUnavailable...)."""

    @functools.wraps(fetch)
    async def wrapper(self: Any, service: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await fetch(self, service, *args, **kwargs)
        except Exception as exc:
            LIST_FETCH_FAILURES.inc(service, type(exc).__name__)
            raise

    return wrapper  # type: ignore[return-value]


def make_app(runtime: _Readiness) -> web.Application:
    # Imported here: the console front end counts replies but never serves HTTP.
    from aiohttp import web

    async def healthz(request: web.Request) -> web.Response:
        # A platform that stopped has left `senders`; one between two connections is not ready.
        if any(getattr(s, "ready", True) for s in runtime.senders.values()):
            return web.Response(text="ok\n")
        return web.Response(status=503, text="no front end is running\n")

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=render(runtime).encode(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


class MetricsServer:
    """The running server; `port` is the bound one (useful with port 0)."""

    def __init__(self, runner: web.AppRunner, site: web.TCPSite, host: str, port: int) -> None:
        self._runner = runner
        self.site = site
        self.host = host
        self.port = port

    async def close(self) -> None:
        await self._runner.cleanup()


async def start_metrics_server(runtime: _Readiness, host: str, port: int) -> MetricsServer:
    """Serve /healthz and /metrics on host:port (0: a free port) until `close`; a port that
    cannot be bound is a ConfigError naming it."""
    from aiohttp import web

    runner = web.AppRunner(make_app(runtime), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"[metrics] cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "choose another port or set enabled = false"
        ) from None
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return MetricsServer(runner, site, host, bound)

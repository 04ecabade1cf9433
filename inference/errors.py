"""Failures a caller can catch by meaning; each one carries a message fit for a chat reply."""

from __future__ import annotations


class AnimerecError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(AnimerecError):
    """The configuration is invalid, or an enabled feature lacks its secret."""


class ListSourceError(AnimerecError):
    """Fetching or reading a user's anime list failed."""

    def __init__(self, message: str, *, service: str | None = None) -> None:
        super().__init__(message)
        self.service = service


class InvalidUsername(ListSourceError):
    """The name cannot be a username of that service; no request was sent."""


class UserNotFound(ListSourceError):
    """The service has no such user."""


class PrivateList(ListSourceError):
    """The user exists but their list is not public."""


class RateLimited(ListSourceError):
    """The service kept throttling us after every retry."""

    def __init__(
        self, message: str, *, service: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, service=service)
        self.retry_after = retry_after


class ServiceUnavailable(ListSourceError):
    """The service is down, timed out, or answered with something we cannot read."""


class BadExportFile(ListSourceError):
    """An attached list export is not a readable MyAnimeList XML export."""


class ListTooLarge(ListSourceError):
    """The list has more entries than a list source reads (`MAX_LIST_ENTRIES` or the configured cap).

    Raised while reading, as soon as the count passes the cap, so the rest is never fetched or built.
    """


class ExportTooLarge(BadExportFile, ListTooLarge):
    """An export file with more entries than the cap: caught as either of its two meanings."""


class CatalogError(AnimerecError):
    """A catalogue file is missing or malformed."""

"""From a user's anime list to annotated recommendations. numpy + onnxruntime; never torch."""

from inference.animelist import (
    NO_TIME,
    REWATCHING_CODE,
    STATUS_CODES,
    AnimeList,
    ListEntry,
    PartialDate,
    Status,
    score_to_int,
    status_code,
)
from inference.errors import (
    AnimerecError,
    BadExportFile,
    CatalogError,
    ConfigError,
    InvalidUsername,
    ListSourceError,
    PrivateList,
    RateLimited,
    ServiceUnavailable,
    UserNotFound,
)

__all__ = [
    "NO_TIME",
    "REWATCHING_CODE",
    "STATUS_CODES",
    "AnimeList",
    "AnimerecError",
    "BadExportFile",
    "CatalogError",
    "ConfigError",
    "InvalidUsername",
    "ListEntry",
    "ListSourceError",
    "PartialDate",
    "PrivateList",
    "RateLimited",
    "ServiceUnavailable",
    "Status",
    "UserNotFound",
    "score_to_int",
    "status_code",
]

"""Export bundles (docs/data-formats.md#model-bundle): a folder the exporter writes and the bot loads, checked before use.

    exports/<name>/
      encoder.onnx       history -> watch logits, predicted scores, user vector
      ranker.onnx        per-candidate features -> utility; score features -> predicted score
      catalog.json.gz    the project's own catalogue (inference.catalog format)
      manifest.json

manifest.json:

    {"format": "animerec-bundle", "format_version": 1, "name": str, "created_at": ISO 8601 UTC,
     "encoding": {...the encoder's parameters: max_len, time buckets, n_items, token offsets...},
     "vocabulary": {"source": "catalog.json.gz", "size": N, "mal_ids_sha256": hex},
     "training_data": {...}, "metrics": {...},
     "files": {"encoder.onnx": {"sha256": hex, "bytes": int}, ...}}

The vocabulary is the catalogue's item order (`Catalog.items[i]` is index i), so the manifest refers
to it instead of repeating ~20k ids: it records the size and the sha256 of the MAL ids as
little-endian int64 in that order (`vocabulary_digest`), and loading checks both.

`load_bundle` checks format, version and every listed file's size and sha256 (streamed) before it
reads anything else, and refuses a mismatch with a `BundleError` that names the file. A bundle is
only ever loaded whole: a model paired with the wrong catalogue recommends the wrong titles quietly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inference.catalog import Catalog, load_catalog
from inference.errors import AnimerecError, CatalogError, ConfigError

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger(__name__)

FORMAT_NAME = "animerec-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ENCODER = "encoder.onnx"
RANKER = "ranker.onnx"
RANKER_INPUTS = ("features", "score_features")
RANKER_OUTPUTS = ("utilities", "scores")
CATALOG = "catalog.json.gz"
REQUIRED_FILES = (ENCODER, RANKER, CATALOG)
_FIX = "re-export or restore the bundle"
_CHUNK = 1 << 20


class BundleError(AnimerecError):
    """A model bundle is missing, incomplete, altered, or of a format this code does not read."""


def hash_file(path: Path | str) -> tuple[str, int]:
    """(sha256 hex digest, size in bytes), reading the file in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def vocabulary_digest(mal_ids: Iterable[int]) -> str:
    return hashlib.sha256(np.asarray(list(mal_ids), dtype="<i8").tobytes()).hexdigest()


def write_manifest(
    folder: Path | str,
    *,
    name: str,
    encoding: Mapping[str, Any],
    training_data: Mapping[str, Any],
    metrics: Mapping[str, Any],
    extra_files: Sequence[str] = (),
    created_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """Hash the bundle's files and write `manifest.json` beside them (atomically); returns it.

    Call it last, after every file is in place: the three required files and any `extra_files`
    (plain names inside `folder`, e.g. an int8 encoder) must exist.
    """
    folder = Path(folder)
    files: dict[str, dict[str, Any]] = {}
    for file_name in (*REQUIRED_FILES, *extra_files):
        _check_plain_name(file_name, folder)
        path = folder / file_name
        if not path.is_file():
            raise BundleError(f"cannot write the manifest: {path} is missing")
        sha, size = hash_file(path)
        files[file_name] = {"sha256": sha, "bytes": size}
    catalog = load_catalog(folder / CATALOG)
    manifest: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "name": name,
        "created_at": (created_at or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
        "encoding": dict(encoding),
        "vocabulary": {
            "source": CATALOG,
            "size": len(catalog),
            "mal_ids_sha256": vocabulary_digest(item.mal_id for item in catalog),
        },
        "training_data": dict(training_data),
        "metrics": dict(metrics),
        "files": files,
    }
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(folder / MANIFEST)
    return manifest


@dataclass(frozen=True, slots=True)
class Bundle:
    path: Path
    manifest: dict[str, Any]
    catalog: Catalog
    encoder_path: Path
    ranker_path: Path

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def encoding(self) -> dict[str, Any]:
        return dict(self.manifest["encoding"])

    def file(self, name: str) -> Path:
        """The path of a file the manifest lists (and `load_bundle` verified)."""
        if name not in self.manifest["files"]:
            raise BundleError(f"bundle {self.path} has no file {name!r}")
        return self.path / name


def _check_plain_name(file_name: str, folder: Path) -> None:
    if not file_name or "/" in file_name or "\\" in file_name or file_name in (".", ".."):
        raise BundleError(f"bundle {folder}: file name {file_name!r} is not a plain file name")


def _read_manifest(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise BundleError(f"model bundle not found: {folder} is not a folder")
    path = folder / MANIFEST
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(
            f"{folder} has no {MANIFEST}, so it is not a model bundle; {_FIX}"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} cannot be read ({exc}); {_FIX}") from None
    if not isinstance(document, dict):
        raise BundleError(f"{path} is not a bundle manifest (not a JSON object); {_FIX}")
    if document.get("format") != FORMAT_NAME:
        raise BundleError(
            f"{path} is not a bundle manifest (format {document.get('format')!r}, expected "
            f"{FORMAT_NAME!r}); {_FIX}"
        )
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format version {version!r} is not supported (this code reads "
            f"version {FORMAT_VERSION}); re-export the bundle with this version of the project"
        )
    for key, kind in (("name", str), ("encoding", dict), ("files", dict), ("vocabulary", dict)):
        if not isinstance(document.get(key), kind):
            raise BundleError(f"{path}: {key!r} is missing or malformed; {_FIX}")
    return document


def _verify_files(folder: Path, files: dict[str, Any]) -> None:
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        raise BundleError(
            f"bundle {folder}: the manifest does not list {', '.join(missing)}; {_FIX}"
        )
    for file_name, expected in files.items():
        _check_plain_name(file_name, folder)
        if (
            not isinstance(expected, dict)
            or not isinstance(expected.get("sha256"), str)
            or not isinstance(expected.get("bytes"), int)
        ):
            raise BundleError(
                f"bundle {folder}: manifest entry for {file_name} is malformed; {_FIX}"
            )
        path = folder / file_name
        if not path.is_file():
            raise BundleError(f"bundle {folder}: {file_name} is missing; {_FIX}")
        # The size check is free and catches truncated copies before hashing a large model.
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise BundleError(
                f"bundle {folder}: {file_name} is {size} bytes, the manifest says "
                f"{expected['bytes']}; {_FIX}"
            )
        sha, _ = hash_file(path)
        if sha != expected["sha256"].lower():
            raise BundleError(
                f"bundle {folder}: {file_name} does not match its sha256 in the manifest "
                f"(the file was changed or corrupted); {_FIX}"
            )


def load_bundle(path: Path | str) -> Bundle:
    """Verify and load a bundle folder; every failure is a `BundleError` saying what to do."""
    folder = Path(path)
    manifest = _read_manifest(folder)
    _verify_files(folder, manifest["files"])
    try:
        catalog = load_catalog(folder / CATALOG)
    except CatalogError as exc:
        raise BundleError(f"bundle {folder}: {exc}; {_FIX}") from None
    vocabulary = manifest["vocabulary"]
    if vocabulary.get("size") != len(catalog) or vocabulary.get(
        "mal_ids_sha256"
    ) != vocabulary_digest(item.mal_id for item in catalog):
        raise BundleError(
            f"bundle {folder}: the catalogue's items do not match the model's vocabulary; {_FIX}"
        )
    n_items = manifest["encoding"].get("n_items")
    if n_items is not None and n_items != len(catalog):
        raise BundleError(
            f"bundle {folder}: the encoder expects {n_items} items but the catalogue has "
            f"{len(catalog)}; {_FIX}"
        )
    return Bundle(
        path=folder,
        manifest=manifest,
        catalog=catalog,
        encoder_path=folder / ENCODER,
        ranker_path=folder / RANKER,
    )


# ----- onnxruntime sessions ---------------------------------------------------------------------

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def choose_providers(setting: str | Sequence[str], available: Sequence[str]) -> list[str]:
    """Providers to ask for. "auto": CUDA (then CPU) when the installed onnxruntime offers CUDA,
    else CPU; "cpu"/"cuda"; or an explicit list of provider names, each of which must be
    available. Whether a GPU is really there only shows once a session exists (see make_session)."""
    if isinstance(setting, str):
        key = setting.strip().lower()
        if key == "auto":
            return [CUDA, CPU] if CUDA in available else [CPU]
        if key == "cpu":
            return [CPU]
        if key == "cuda":
            if CUDA not in available:
                raise ConfigError(
                    "providers = 'cuda' but this onnxruntime has no CUDA provider; install the "
                    "'gpu' extra (onnxruntime-gpu, without the CPU onnxruntime) or use 'auto'"
                )
            return [CUDA, CPU]
        raise ConfigError(f"unknown providers setting {setting!r}; use auto, cpu, cuda or a list")
    chosen = list(setting)
    unknown = [p for p in chosen if p not in available]
    if not chosen or unknown:
        raise ConfigError(
            f"execution provider(s) {', '.join(unknown) or '(none)'} not available; this "
            f"onnxruntime offers {', '.join(available)}"
        )
    return chosen


def make_session(
    path: Path | str, providers: str | Sequence[str] = "auto", *, threads: int | None = None
) -> onnxruntime.InferenceSession:
    """An onnxruntime session for one model file, on the providers the setting allows.

    onnxruntime-gpu lists CUDA as available even on a machine without a usable GPU and then quietly
    runs on CPU, so the providers the *session* uses are what gets checked and logged.
    `threads` caps the CPU threads of one run and turns off spin-waiting: with small models and
    several requests in flight, parallel requests use the cores better than threads that spin.
    """
    import onnxruntime as ort

    wanted = choose_providers(providers, ort.get_available_providers())
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=wanted)
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad models
        raise BundleError(f"cannot load model {path}: {exc}; {_FIX}") from None
    used = session.get_providers()
    if wanted[0] not in used:
        log.warning("%s: asked for %s but onnxruntime runs it on %s", path, wanted[0], used[0])
    log.info("%s: running on %s", Path(path).name, used[0])
    return session

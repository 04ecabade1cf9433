"""Write a 1-D `.npy` file by appending chunks, without knowing its length in advance.

The header is written for length 0 and rewritten with the final length on close. numpy pads
headers so the length field can grow in place (GROWTH_AXIS_MAX_DIGITS), which the close checks,
so the file is always a plain `.npy` that `np.load(..., mmap_mode="r")` reads.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np


def _header(dtype: np.dtype[Any], length: int) -> bytes:
    buffer = io.BytesIO()
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": (length,),
    }
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


class NpyAppender:
    def __init__(self, path: Path | str, dtype: Any) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.length = 0
        self._header_size = len(_header(self.dtype, 0))
        self._file = self.path.open("wb")
        self._file.write(_header(self.dtype, 0))

    def append(self, values: np.ndarray) -> None:
        array = np.ascontiguousarray(values, dtype=self.dtype)
        if array.ndim != 1:
            raise ValueError(f"{self.path.name}: only 1-D chunks can be appended")
        self._file.write(array.tobytes())
        self.length += len(array)

    def close(self) -> None:
        if self._file.closed:
            return
        header = _header(self.dtype, self.length)
        if len(header) != self._header_size:  # pragma: no cover - numpy pads for 21 digits
            raise RuntimeError(f"{self.path.name}: .npy header grew; cannot finalize in place")
        self._file.seek(0)
        self._file.write(header)
        self._file.close()

    def __enter__(self) -> NpyAppender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from inference.animelist import NO_TIME, STATUS_CODES, Status
from training.build import BuildOptions, build
from training.parquet_schema import read_meta
from training.synthesize import synthesize


def test_synthetic_file_is_deterministic_and_says_it_is_synthetic(tmp_path: Path) -> None:
    a = synthesize(tmp_path / "a.parquet", 300, seed=5, n_items=500, mean_length=40, progress=False)
    synthesize(tmp_path / "b.parquet", 300, seed=5, n_items=500, mean_length=40, progress=False)
    synthesize(tmp_path / "c.parquet", 300, seed=6, n_items=500, mean_length=40, progress=False)
    ta, tb, tc = (pq.read_table(tmp_path / f"{x}.parquet") for x in "abc")
    assert ta.equals(tb) and not ta.equals(tc)
    assert a["synthetic"] is True and read_meta(tmp_path / "a.parquet")["synthetic"] is True
    assert ta.column("row").to_pylist() == list(range(ta.num_rows))
    users = ta.column("user").to_pylist()
    assert len(set(users)) == 300 and users == sorted(users)  # users contiguous, in order
    pairs = list(zip(users, ta.column("item").to_pylist(), strict=True))
    assert len(set(pairs)) == len(pairs)  # no (user, item) repeats


def test_synthetic_histories_have_the_planted_structure(tmp_path: Path) -> None:
    path = tmp_path / "s.parquet"
    synthesize(path, 2000, seed=1, n_items=2000, mean_length=60, progress=False)
    t = pq.read_table(path)
    n = t.num_rows
    status = t.column("status").to_numpy()
    assert 0.5 < (status == STATUS_CODES[Status.COMPLETED]).mean() < 0.95
    for s in Status:
        assert (status == STATUS_CODES[s]).any()
    scores = t.column("score")
    assert 0.1 < scores.null_count / n < 0.7  # optional scores
    ptw = status == STATUS_CODES[Status.PLAN_TO_WATCH]
    assert scores.is_null().to_numpy(zero_copy_only=False)[ptw].all()
    assert (t.column("progress").to_numpy()[ptw] == 0).all()
    assert 0 < t.column("time").null_count / n < 0.05
    items = t.column("item").to_numpy()
    counts = np.sort(np.bincount(items))[::-1]
    assert counts[:20].sum() > 5 * counts[-200:].sum()  # popularity skew

    out = tmp_path / "ds"
    stats = build(path, out, BuildOptions(progress=False, threads=2))
    # Bulk imports: a quarter of users share one second over their oldest entries.
    times = np.load(out / "times.npy")
    offsets = np.load(out / "offsets.npy")
    first_two_tied = sum(
        1
        for u in range(len(offsets) - 1)
        if offsets[u + 1] - offsets[u] >= 3
        and times[offsets[u] + 1] == times[offsets[u] + 2] != NO_TIME
    )
    assert first_two_tied > 0.1 * (len(offsets) - 1)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["synthetic"] is True and stats["has_times"] is True

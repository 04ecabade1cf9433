"""Two gloo ranks under torchrun take the same steps as one process with the same global batch."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.tiny_data import planted_dataset
from training.train import load_checkpoint

TINY = "training/configs/tiny.toml"
# Summation order differs between one process and an all-reduce. Losses agree to 1e-6 relative;
# parameters to 1e-5 absolute (each moves up to ~2e-2 in these 6 steps): attention key biases get
# no true gradient (softmax ignores them), so Adam turns rounding noise there into ~1e-6 steps.
LOSS_TOLERANCE = 1e-6
PARAM_TOLERANCE = 1e-5
REPO = Path(__file__).resolve().parents[2]


def train(command: list[str], data: Path, out: Path, module: str = "training") -> None:
    settings = [
        "--config",
        TINY,
        "--device",
        "cpu",
        "--set",
        f"data.path={data}",
        "--set",
        f"out_dir={out}",
        "--set",
        "train.epochs=2",
        "--set",
        "train.steps_per_epoch=3",
        "--set",
        "train.batch_size=8",
        "--set",
        "train.val_users=0",
        "--set",
        "model.dropout=0.0",
        "--set",
        "train.bucket_batches=2",  # length-sorted batches split across ranks, too
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "THREADS_OUT": str(out),
    }
    proc = subprocess.Popen(
        [sys.executable, *command, "-m", module, "pretrain", *settings],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
        start_new_session=True,  # so a hang can be ended with its worker processes
    )
    try:
        _, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]


@pytest.mark.slow
def test_two_gloo_ranks_follow_the_single_process_run(tmp_path):
    data = planted_dataset(tmp_path / "planted")
    train([], data, tmp_path / "single")
    train(
        ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"],
        data,
        tmp_path / "ddp",
        module="tests.training.ddp_probe",  # `-m training`, then lists the threads left
    )
    single = load_checkpoint(tmp_path / "single" / "tiny" / "ckpt.pt")
    ddp = load_checkpoint(tmp_path / "ddp" / "tiny" / "ckpt.pt")
    assert ddp["state"]["step"] == single["state"]["step"] == 6
    for name, expected in single["model"].items():
        got = ddp["model"][name]
        assert (got - expected).abs().max().item() <= PARAM_TOLERANCE, name
    for a, b in zip(single["state"]["history"], ddp["state"]["history"], strict=True):
        assert abs(a["loss"] - b["loss"]) <= LOSS_TOLERANCE * abs(a["loss"])
        assert a["tokens"] == b["tokens"]
    # Teardown ended each rank's process group: none of gloo's threads (its socket loop,
    # "gloo_tcp_loop", and its workers, "pt_gloo_runloop") outlive it into interpreter shutdown.
    if Path("/proc/self/task").is_dir():
        for rank in (0, 1):
            threads = (tmp_path / "ddp" / f"rank{rank}.txt").read_text().split()
            assert not [name for name in threads if "gloo" in name], (rank, threads)

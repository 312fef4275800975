import time

import pytest
import torch

from geodistill.decoding.speed import (
    MemoryMeter,
    Timer,
    count_params,
    model_disk_mb,
    process_peak_rss_mb,
    real_time_factor,
)


def test_timer_accumulates_laps():
    timer = Timer("cpu")
    for _ in range(2):
        with timer:
            time.sleep(0.02)
    assert len(timer.laps) == 2
    assert timer.seconds == pytest.approx(sum(timer.laps))
    assert 0.04 <= timer.seconds < 1.0


def test_real_time_factor():
    assert real_time_factor(2.0, 8.0) == 0.25
    assert real_time_factor(1.0, 0.0) == float("inf")


def test_cpu_peak_memory_is_process_rss_and_sees_a_big_allocation():
    before = process_peak_rss_mb()
    meter = MemoryMeter(torch.device("cpu"))
    meter.start()
    block = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB, touched so it is resident
    assert block.sum() > 0
    peak = meter.peak_mb()
    assert peak >= before > 10  # the interpreter + torch alone are far above 10 MiB
    assert peak >= 64


def test_count_params_counts_tied_weights_once():
    emb = torch.nn.Embedding(10, 4)
    head = torch.nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    model = torch.nn.ModuleDict({"emb": emb, "head": head, "extra": torch.nn.Linear(4, 3)})
    assert count_params(model) == 40 + 4 * 3 + 3
    model["extra"].requires_grad_(False)
    assert count_params(model, trainable_only=True) == 40


def test_model_disk_mb_follows_dtype(tiny_whisper):
    fp32 = model_disk_mb(tiny_whisper)
    n_bytes_tied_once = count_params(tiny_whisper) * 4
    assert fp32 == pytest.approx(n_bytes_tied_once / 2**20, rel=0.01)  # + a few non-parameter buffers
    assert model_disk_mb(tiny_whisper.half()) == pytest.approx(fp32 / 2, rel=0.01)


def test_peak_rss_of_a_child_process_is_its_own():
    """ru_maxrss survives exec on Linux; the meter must not report a big parent's peak for its child."""
    import subprocess
    import sys

    from geodistill.decoding.speed import process_peak_rss_mb

    ballast = bytearray(600 * 1024 * 1024)  # the parent touches 600 MiB
    ballast[::4096] = b"x" * len(ballast[::4096])
    code = "from geodistill.decoding.speed import process_peak_rss_mb as p; print(p())"
    child = float(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )
    assert process_peak_rss_mb() > 600
    assert child < 500
    del ballast

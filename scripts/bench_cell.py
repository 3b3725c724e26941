"""Forward + backward time of the HOPE cell against torch.nn.GRU of the same width (issue 6).

Batch 64, width 96 (input and state), 3 tracks (rates=seed), lengths 32, 128 and 512, with one
torch thread and with all of them. Compared in this process, round-robin so that a load change on
the machine hits every candidate alike: the fast HOPE cell (`SeedHopeCell.forward`), its plain
step-by-step reference (`forward_reference`) and `torch.nn.GRU(96, 96, batch_first=True)`.
Each time is the median of --repeats runs after one warm-up run; ratios are of medians.
Target: HOPE / GRU <= 1.0 at length 128 on the CPU; on a GPU (--device cuda, where torch.nn.GRU is
cuDNN's) <= 3.0, with the device synchronised before and after every timed run.

The second table is the controller_input=token option at the longest length: its chunked
parallel scan (`ema_mean_scan`) against the same recurrence computed step by step from the same
precomputed gates (`ema_mean_loop`) and against the reference `step` loop.

    python scripts/bench_cell.py [--lengths 32 128 512] [--repeats 5] [--device cpu|cuda] [--profile]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import torch
from torch import nn

from nested_learning.models.seed_hope import SeedHopeCell, ema_mean_loop, ema_mean_scan

BATCH, WIDTH = 64, 96
RATES = {"fast": 0.6, "medium": 0.3, "slow": 0.02}
ALL_THREADS = torch.get_num_threads()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 128, 512], help="sequence lengths")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per candidate (median reported)")
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler top ops at length 128 (on the CPU)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:index] (default cpu)")
    args = parser.parse_args()
    if args.device != "cpu" and not (args.device.startswith("cuda") and torch.cuda.is_available()):
        parser.error(f"--device {args.device}: choose cpu, or cuda[:index] on a machine with a CUDA GPU")
    return args


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work: a CUDA call returns before its kernels finish."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fwd_bwd(forward: Callable, params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    for p in params:
        p.grad = None
    x.grad = None
    out = forward(x)
    out = out[0] if isinstance(out, tuple) else out  # GRU returns (outputs, last state)
    out.sum().backward()
    return out.detach()


def median_ms(candidates: dict[str, Callable[[], torch.Tensor]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median wall time of each candidate, interleaved, after one warm-up run each."""
    for run in candidates.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, run in candidates.items():
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def build(device: torch.device, controller_input: str = "tracks") -> tuple[SeedHopeCell, nn.GRU]:
    torch.manual_seed(0)
    return (SeedHopeCell(WIDTH, WIDTH, RATES, controller_input=controller_input).to(device),
            nn.GRU(WIDTH, WIDTH, batch_first=True).to(device))


def thread_counts(device: torch.device) -> list[int]:
    """CPU: one thread and all of them; a GPU's time does not depend on them."""
    return sorted({1, ALL_THREADS}) if device.type == "cpu" else [ALL_THREADS]


def check_same(cell: SeedHopeCell, x: torch.Tensor) -> None:
    """Guards the table: a fast path that drifted from the reference would time the wrong thing."""
    with torch.no_grad():
        torch.testing.assert_close(cell(x), cell.forward_reference(x), rtol=1e-4, atol=1e-5)


def cell_table(lengths: list[int], repeats: int, device: torch.device) -> None:
    cell, gru = build(device)
    params = list(cell.parameters()) + list(gru.parameters())
    print(f"{'threads':>7} {'T':>4} {'HOPE ms':>9} {'ref ms':>9} {'GRU ms':>9} {'HOPE/GRU':>9} {'ref/HOPE':>9}")
    for threads in thread_counts(device):
        torch.set_num_threads(threads)
        for T in lengths:
            x = torch.randn(BATCH, T, WIDTH, device=device, requires_grad=True)
            check_same(cell, x)
            ms = median_ms({
                "hope": lambda: fwd_bwd(cell, params, x),
                "ref": lambda: fwd_bwd(cell.forward_reference, params, x),
                "gru": lambda: fwd_bwd(gru, params, x),
            }, repeats, device)
            print(f"{threads:>7} {T:>4} {ms['hope']:9.1f} {ms['ref']:9.1f} {ms['gru']:9.1f} "
                  f"{ms['hope'] / ms['gru']:9.2f} {ms['ref'] / ms['hope']:9.2f}")


def token_table(T: int, repeats: int, device: torch.device) -> None:
    cell, _ = build(device, "token")
    params = list(cell.parameters())
    print(f"\ncontroller_input=token, T={T}: chunked scan vs the same recurrence step by step")
    print(f"{'threads':>7} {'scan ms':>9} {'loop ms':>9} {'ref ms':>9} {'loop/scan':>10} {'ref/scan':>9}")
    for threads in thread_counts(device):
        torch.set_num_threads(threads)
        x = torch.randn(BATCH, T, WIDTH, device=device, requires_grad=True)
        check_same(cell, x)
        ms = median_ms({
            "scan": lambda: fwd_bwd(lambda x: ema_mean_scan(*cell.token_gates(x)), params, x),
            "loop": lambda: fwd_bwd(lambda x: ema_mean_loop(*cell.token_gates(x)), params, x),
            "ref": lambda: fwd_bwd(cell.forward_reference, params, x),
        }, repeats, device)
        print(f"{threads:>7} {ms['scan']:9.1f} {ms['loop']:9.1f} {ms['ref']:9.1f} "
              f"{ms['loop'] / ms['scan']:10.2f} {ms['ref'] / ms['scan']:9.2f}")


def profile(T: int = 128) -> None:
    """Top ops of one forward + backward, one thread: where the time of each candidate goes."""
    torch.set_num_threads(1)
    cell, gru = build(torch.device("cpu"))
    token_cell, _ = build(torch.device("cpu"), "token")
    params = list(cell.parameters()) + list(gru.parameters()) + list(token_cell.parameters())
    x = torch.randn(BATCH, T, WIDTH, requires_grad=True)
    candidates = {
        "fast HOPE cell": cell,
        "torch.nn.GRU": gru,
        "token option, chunked scan": lambda x: ema_mean_scan(*token_cell.token_gates(x)),
        "token option, step-by-step loop": lambda x: ema_mean_loop(*token_cell.token_gates(x)),
    }
    for name, forward in candidates.items():
        fwd_bwd(forward, params, x)
        with torch.profiler.profile(record_shapes=True) as prof:
            for _ in range(3):
                fwd_bwd(forward, params, x)
        print(f"\n== {name}, T={T}, 1 thread, 3 runs of forward + backward")
        print(prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=36, max_shapes_column_width=48))


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{ALL_THREADS} threads available"
    print(f"torch {torch.__version__}, {where}, load average {load_average():.2f} at start")
    print(f"batch {BATCH}, width {WIDTH}, rates {RATES}; forward + backward, median of {args.repeats} runs\n")
    cell_table(args.lengths, args.repeats, device)
    token_table(max(args.lengths), args.repeats, device)
    # other processes on the machine inflate the medians, all-thread ones most: say how busy it was
    print(f"\nload average {load_average():.2f} at end")
    if args.profile:
        profile()
    torch.set_num_threads(ALL_THREADS)


if __name__ == "__main__":
    main()

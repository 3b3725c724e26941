"""Cost of the CMS update rule and of the models, measured in one run.

1. CMS step: one training step (forward, backward, optimizer step, zero_grad) of model=cms through
   its MultiFrequencyOptimizer (levels stepped at their periods), against the same network, same
   weights and same batch, trained by the same optimizer (Adam over every parameter, every step).
   Timed over whole cycles of the longest period, so level steps and skipped steps both count.
   Target: ratio <= 1.15x. Batches are real commute-task batches (batch 64, their sequence length)
   unless --seq-len is given, which times random token sequences of that length instead.
2. CMS clocks: one training step of model=cms on the token clock (reset and carry: levels updated
   inside forward every C^(l) tokens) against the step clock, same weights and batch. Target <= 2x.
3. Throughput and memory: tokens per second of every model built on d_model (transformer, cms,
   hope_attention, titans, hope_nl, linear_attention, deltanet, as configured in conf/model; --models
   picks some, the Transformer always included as the reference), for a training step (with the
   optimizer the framework would give it) and for evaluation (eval mode, no grad: the memories still
   update in context), and the peak memory of training; each relative to the Transformer.
   --size picks the widths, batch and length (random tokens):
     default  the widths in conf/model (d_model 64, 2 heads, d_ff 128), batch 64 x 128 tokens
     paper    d_model 256, 4 heads, d_ff 1024, batch 16 x 512 tokens
   Peak memory, over building the model and two training steps: on CUDA, torch's peak allocation;
   on the CPU, the rise of the peak resident memory of a fresh process per model.
4. Optimizers: one training step of the default Transformer under each optimizer in conf/optimizer
   (as configured there), same weights and batch, against Adam (bench_optimizers).

Every time is the median over --repeats rounds after --warmup untimed steps; the models take turns
within each round. On the CPU, --threads torch threads (default 1, as the framework's runs use).

    python scripts/bench_models.py [--size default|paper] [--device cpu|cuda] [--repeats 7] [--warmup 3]
                                   [--parts throughput ...] [--models titans hope_nl ...]
"""
from __future__ import annotations

import argparse
import copy
import math
import multiprocessing
import re
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from nested_learning.data.vocab import Vocabulary

REPO = Path(__file__).resolve().parent.parent


MODELS = ("transformer", "cms", "hope_attention", "titans", "hope_nl", "linear_attention", "deltanet")  # built on d_model, d_ff
PARTS = ("cms_step", "cms_clocks", "throughput", "optimizers")
SIZES = {  # model keys (set where a model's config has them), batch size, sequence length
    "default": ({}, 64, 128),
    "paper": ({"d_model": 256, "n_heads": 4, "d_ff": 1024}, 16, 512),
}


def model_config(name: str, overrides: list[str] | None = None):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=[f"model={name}", "logger=none", *(overrides or [])])


def build(name: str, vocab_size: int, max_len: int, size: str = "default", device: str = "cpu",
          overrides: list[str] | None = None) -> torch.nn.Module:
    cfg = model_config(name, overrides)
    net_cfg = {k: v for k, v in cfg.model.items() if k != "name"}
    net_cfg.update({k: v for k, v in SIZES[size][0].items() if k in net_cfg})
    torch.manual_seed(0)
    return instantiate(net_cfg, vocab_size=vocab_size, max_len=max_len, _convert_="all").to(device)


def batch(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(inputs, targets, vocab size, pad id): the first training batch of the commute task, or random tokens."""
    task = instantiate(model_config("transformer").task, _convert_="all")
    vocab = Vocabulary(task)
    if args.seq_len:
        shape = (args.batch_size, args.seq_len + 1)
        tokens = torch.randint(2, len(vocab), shape, generator=torch.Generator().manual_seed(0))
        return tokens[:, :-1].to(args.device), tokens[:, 1:].to(args.device), len(vocab), vocab.pad_id
    inputs, targets = vocab.encode(list(task.tasks[0].train) * task.repeats)
    return inputs[: args.batch_size].to(args.device), targets[: args.batch_size].to(args.device), len(vocab), vocab.pad_id


def optimizer_for(net: torch.nn.Module, factory):
    """The optimizer ContinualLM.configure_optimizers would give this net."""
    configure = getattr(net, "configure_optimizer", None)
    return configure(factory) if callable(configure) else factory(net.parameters())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(net, optimizer, inputs, targets, pad_id: int, steps: int) -> float:
    """Seconds per training step, over `steps` consecutive steps."""
    synchronize(inputs.device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(net(inputs).flatten(0, 1), targets.flatten(), ignore_index=pad_id)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    synchronize(inputs.device)
    return (time.perf_counter() - start) / steps


@torch.no_grad()
def timed_eval(net, inputs, steps: int) -> float:
    net.eval()
    synchronize(inputs.device)
    start = time.perf_counter()
    for _ in range(steps):
        net(inputs)
    synchronize(inputs.device)
    net.train()
    return (time.perf_counter() - start) / steps


def median_rounds(contestants: dict, measure, args: argparse.Namespace, steps: int) -> dict[str, float]:
    if args.warmup:
        for entry in contestants.values():
            measure(*entry, steps=args.warmup)
    times: dict[str, list[float]] = {name: [] for name in contestants}
    for _ in range(args.repeats):
        for name, entry in contestants.items():
            times[name].append(measure(*entry, steps=steps))
    return {name: statistics.median(values) for name, values in times.items()}


def bench_cms_step(args, inputs, targets, vocab_size, pad_id) -> None:
    factory = partial(torch.optim.Adam, lr=1e-3)
    cms = build("cms", vocab_size, inputs.shape[1], device=args.device)
    plain = copy.deepcopy(cms)
    cms_optimizer = cms.configure_optimizer(factory)
    periods = [level.period for level in cms_optimizer.levels]
    cycle = math.lcm(*periods)
    steps = cycle * max(1, round(args.cms_steps / cycle))
    contestants = {"cms": (cms, cms_optimizer), "plain": (plain, factory(plain.parameters()))}
    train_step = partial(timed_steps, inputs=inputs, targets=targets, pad_id=pad_id)
    med = median_rounds(contestants, train_step, args, steps)
    print(f"CMS training step (model=cms, periods {periods}, Adam, batch {inputs.shape[0]}, {steps} steps per round):")
    print(f"  multi-frequency optimizer  {med['cms'] * 1e3:8.3f} ms/step")
    print(f"  same chain, every step     {med['plain'] * 1e3:8.3f} ms/step")
    print(f"  ratio                      {med['cms'] / med['plain']:8.3f}x   (target <= 1.15x)")


def random_batch(vocab_size: int, batch_size: int, length: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(2, vocab_size, (batch_size, length + 1), generator=torch.Generator().manual_seed(0))
    return tokens[:, :-1].to(device), tokens[:, 1:].to(device)


def resident_kib(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process, in KiB (Linux)."""
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def peak_training_memory(name: str, size: str, vocab_size: int, pad_id: int, device: str, threads: int) -> int:
    """Peak bytes over building the model and its optimizer and two training steps (the second with
    the optimizer's state in place), beyond what the process held before."""
    torch.set_num_threads(threads)
    _, batch_size, length = SIZES[size]
    cuda = device.startswith("cuda")
    if cuda:
        held = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident memory to the current one
        held = resident_kib("VmRSS") * 1024
    net = build(name, vocab_size, length, size, device)
    optimizer = optimizer_for(net, partial(torch.optim.Adam, lr=1e-3))
    timed_steps(net, optimizer, *random_batch(vocab_size, batch_size, length, device), pad_id, steps=2)
    peak = torch.cuda.max_memory_allocated() if cuda else resident_kib("VmHWM") * 1024
    return peak - held


def peak_memories(args, vocab_size: int, pad_id: int) -> dict[str, int]:
    """CUDA: one process, torch's peak counter reset per model. CPU: a fresh process per model, since
    the resident-memory high-water mark never goes down."""
    measure = partial(peak_training_memory, size=args.size, vocab_size=vocab_size, pad_id=pad_id, device=args.device,
                      threads=args.threads)
    if args.device.startswith("cuda"):
        return {name: measure(name) for name in args.models}
    peaks = {}
    for name in args.models:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            peaks[name] = pool.submit(measure, name).result()
    return peaks


def bench_cms_clocks(args, inputs, targets, vocab_size, pad_id) -> None:
    """One training step of model=cms on the token clock (levels updated inside forward, reset and
    carry) against the step clock, same weights and batch, each through its own optimizer. Target <= 2x."""
    factory = partial(torch.optim.Adam, lr=1e-3)
    nets = {"step": build("cms", vocab_size, inputs.shape[1], device=args.device)}
    for state in ("reset", "carry"):
        nets[f"token, {state}"] = build("cms", vocab_size, inputs.shape[1], device=args.device,
                                        overrides=["model.cms_clock=token", f"model.cms_state={state}"])
        nets[f"token, {state}"].load_state_dict(nets["step"].state_dict(), strict=False)  # carry adds its zero buffers
    entries = {name: (net, net.configure_optimizer(factory)) for name, net in nets.items()}
    med = median_rounds(entries, partial(timed_steps, inputs=inputs, targets=targets, pad_id=pad_id), args, args.cms_steps)
    print(f"\nCMS clocks (model=cms, periods [1, 3, 6], Adam, batch {inputs.shape[0]} x {inputs.shape[1]} tokens, "
          f"{args.cms_steps} steps per round):")
    for name, seconds in med.items():
        print(f"  {name + ' clock' if name == 'step' else 'token clock, ' + name.split(', ')[1]:<22} {seconds * 1e3:8.3f} ms/step"
              + ("" if name == "step" else f"   {seconds / med['step']:6.2f}x   (target <= 2x)"))


def bench_throughput(args, inputs, targets, vocab_size, pad_id) -> None:
    del inputs, targets  # random tokens of the --size preset's shape instead of the commute batch
    overrides, batch_size, length = SIZES[args.size]
    factory = partial(torch.optim.Adam, lr=1e-3)
    nets = {name: build(name, vocab_size, length, args.size, args.device) for name in args.models}
    inputs, targets = random_batch(vocab_size, batch_size, length, args.device)
    entries = {name: (net, optimizer_for(net, factory)) for name, net in nets.items()}
    train_step = partial(timed_steps, inputs=inputs, targets=targets, pad_id=pad_id)
    train = median_rounds(entries, train_step, args, args.model_steps)
    evals = median_rounds({n: (net,) for n, net in nets.items()}, partial(timed_eval, inputs=inputs), args, args.model_steps)
    del nets, entries
    peaks = peak_memories(args, vocab_size, pad_id)
    tokens = inputs.numel()
    widths = ", ".join(f"{k} {v}" for k, v in overrides.items()) or "widths as in conf/model"
    where = f"{args.device}, {args.threads} thread(s)" if args.device == "cpu" else args.device
    memory = "torch's peak allocation" if args.device.startswith("cuda") else "peak resident memory growth, a process per model"
    print(f"\nThroughput and memory (--size {args.size}: {widths}; batch {batch_size} x {length} random tokens; {where}):")
    print(f"  {'model':<15} {'params':>9} {'train tok/s':>12} {'vs tf':>7} {'eval tok/s':>12} {'vs tf':>7} {'peak MB':>9} {'vs tf':>7}")
    for name in args.models:
        params = sum(p.numel() for p in build(name, vocab_size, length, args.size).parameters())
        tr, ev = tokens / train[name], tokens / evals[name]
        tr_ref, ev_ref = tokens / train["transformer"], tokens / evals["transformer"]
        print(f"  {name:<15} {params:>9} {tr:>12.0f} {tr / tr_ref:>6.2f}x {ev:>12.0f} {ev / ev_ref:>6.2f}x"
              f" {peaks[name] / 2**20:>9.0f} {peaks[name] / peaks['transformer']:>6.2f}x")
    print(f"  (peak MB: {memory}, over building the model and two Adam training steps; targets: titans >= 0.8x and hope_nl >= 0.5x"
          " train tok/s on the CPU at --size default, peak memory <= 3x at --size paper)")


OPTIMIZERS = ("adam", "adamw", "sgd", "m3", "delta_momentum", "dmgd")


def bench_optimizers(args, inputs, targets, vocab_size, pad_id) -> None:
    """Step time of the default Transformer under every optimizer in conf/optimizer, against Adam."""
    net = build("transformer", vocab_size, inputs.shape[1], device=args.device)
    entries = {}
    for name in OPTIMIZERS:
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            factory = instantiate(compose(config_name="config", overrides=[f"optimizer={name}"]).optimizer)
        copy_of_net = copy.deepcopy(net)
        entries[name] = (copy_of_net, factory(copy_of_net.parameters()))
    train_step = partial(timed_steps, inputs=inputs, targets=targets, pad_id=pad_id)
    med = median_rounds(entries, train_step, args, args.model_steps)
    print(f"\nOptimizers (default Transformer, batch {inputs.shape[0]} x {inputs.shape[1]}, one training step):")
    for name in OPTIMIZERS:
        print(f"  {name:<15} {med[name] * 1e3:8.3f} ms/step   {med[name] / med['adam']:6.2f}x Adam")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds; the median is reported (default 7)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model before timing (default 3)")
    parser.add_argument("--cms-steps", type=int, default=24,
                        help="CMS steps per round, rounded to whole cycles of the longest period (default 24)")
    parser.add_argument("--model-steps", type=int, default=3, help="steps per round for the throughput figures (default 3)")
    parser.add_argument("--batch-size", type=int, default=64, help="CMS step: sequences per batch (default 64)")
    parser.add_argument("--seq-len", type=int, default=0,
                        help="CMS step: time random sequences of this length instead of commute batches")
    parser.add_argument("--size", choices=sorted(SIZES), default="default",
                        help="widths, batch and length of the throughput and memory table (default: default)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:index] (default cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU (default 1)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which measurements (default: all)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                        help="models for the throughput part (default: all; the Transformer is always added)")
    args = parser.parse_args()
    if args.device != "cpu" and not (args.device.startswith("cuda") and torch.cuda.is_available()):
        parser.error(f"--device {args.device}: choose cpu, or cuda[:index] on a machine with a CUDA GPU")
    torch.set_num_threads(args.threads)
    args.models = ["transformer"] + [m for m in dict.fromkeys(args.models) if m != "transformer"]
    data = batch(args)
    parts = {"cms_step": bench_cms_step, "cms_clocks": bench_cms_clocks, "throughput": bench_throughput,
             "optimizers": bench_optimizers}
    for name in PARTS:
        if name in args.parts:
            parts[name](args, *data)


if __name__ == "__main__":
    main()

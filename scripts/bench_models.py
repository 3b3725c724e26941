"""Cost of the CMS update rule and of the memory models, measured in one process.

1. CMS step: one training step (forward, backward, optimizer step, zero_grad) of model=cms through
   its MultiFrequencyOptimizer (levels stepped at their periods), against the same network, same
   weights and same batch, trained by the same optimizer (Adam over every parameter, every step).
   Timed over whole cycles of the longest period, so level steps and skipped steps both count.
   Target: ratio <= 1.15x.
2. CMS clocks: one training step of model=cms on the token clock (reset and carry: levels updated
   inside forward every C^(l) tokens) against the step clock, same weights and batch. Target <= 2x.
3. Throughput: tokens per second of hope_nl and titans against the Transformer, each as configured
   in conf/model (all at d_model 64), for a training step (with the optimizer the framework would
   give it) and for evaluation (eval mode, no grad: the memories still update in context).

Every figure is the median over --repeats rounds after --warmup untimed steps; the models take turns
within each round. One torch thread, as the framework's runs use by default (config `threads`).
Batches are real commute-task batches (batch 64, their sequence length) unless --seq-len is given,
which times random token sequences of that length instead.

    python scripts/bench_models.py [--repeats 7] [--warmup 3] [--seq-len 64]
"""
from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from nested_learning.data.vocab import Vocabulary

REPO = Path(__file__).resolve().parent.parent


def model_config(name: str, overrides: list[str] | None = None):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=[f"model={name}", "logger=none", *(overrides or [])])


def build(name: str, vocab_size: int, max_len: int, overrides: list[str] | None = None) -> torch.nn.Module:
    cfg = model_config(name, overrides)
    net_cfg = {k: v for k, v in cfg.model.items() if k != "name"}
    torch.manual_seed(0)
    return instantiate(net_cfg, vocab_size=vocab_size, max_len=max_len, _convert_="all")


def batch(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(inputs, targets, vocab size, pad id): the first training batch of the commute task, or random tokens."""
    task = instantiate(model_config("transformer").task, _convert_="all")
    vocab = Vocabulary(task)
    if args.seq_len:
        shape = (args.batch_size, args.seq_len + 1)
        tokens = torch.randint(2, len(vocab), shape, generator=torch.Generator().manual_seed(0))
        return tokens[:, :-1], tokens[:, 1:], len(vocab), vocab.pad_id
    inputs, targets = vocab.encode(list(task.tasks[0].train) * task.repeats)
    return inputs[: args.batch_size], targets[: args.batch_size], len(vocab), vocab.pad_id


def optimizer_for(net: torch.nn.Module, factory):
    """The optimizer ContinualLM.configure_optimizers would give this net."""
    configure = getattr(net, "configure_optimizer", None)
    return configure(factory) if callable(configure) else factory(net.parameters())


def timed_steps(net, optimizer, inputs, targets, pad_id: int, steps: int) -> float:
    """Seconds per training step, over `steps` consecutive steps."""
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(net(inputs).flatten(0, 1), targets.flatten(), ignore_index=pad_id)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


@torch.no_grad()
def timed_eval(net, inputs, steps: int) -> float:
    net.eval()
    start = time.perf_counter()
    for _ in range(steps):
        net(inputs)
    net.train()
    return (time.perf_counter() - start) / steps


def median_rounds(contestants: dict, measure, args: argparse.Namespace, steps: int) -> dict[str, float]:
    for entry in contestants.values():
        measure(*entry, steps=args.warmup)
    times: dict[str, list[float]] = {name: [] for name in contestants}
    for _ in range(args.repeats):
        for name, entry in contestants.items():
            times[name].append(measure(*entry, steps=steps))
    return {name: statistics.median(values) for name, values in times.items()}


def bench_cms_step(args, inputs, targets, vocab_size, pad_id) -> None:
    factory = partial(torch.optim.Adam, lr=1e-3)
    cms = build("cms", vocab_size, inputs.shape[1])
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


def bench_cms_clocks(args, inputs, targets, vocab_size, pad_id) -> None:
    """One training step of model=cms on the token clock (levels updated inside forward, reset and
    carry) against the step clock, same weights and batch, each through its own optimizer. Target <= 2x."""
    factory = partial(torch.optim.Adam, lr=1e-3)
    nets = {"step": build("cms", vocab_size, inputs.shape[1])}
    for state in ("reset", "carry"):
        nets[f"token, {state}"] = build("cms", vocab_size, inputs.shape[1], ["model.cms_clock=token", f"model.cms_state={state}"])
        nets[f"token, {state}"].load_state_dict(nets["step"].state_dict(), strict=False)  # carry adds its zero buffers
    entries = {name: (net, net.configure_optimizer(factory)) for name, net in nets.items()}
    med = median_rounds(entries, partial(timed_steps, inputs=inputs, targets=targets, pad_id=pad_id), args, args.cms_steps)
    print(f"\nCMS clocks (model=cms, periods [1, 3, 6], Adam, batch {inputs.shape[0]} x {inputs.shape[1]} tokens, "
          f"{args.cms_steps} steps per round):")
    for name, seconds in med.items():
        print(f"  {name + ' clock' if name == 'step' else 'token clock, ' + name.split(', ')[1]:<22} {seconds * 1e3:8.3f} ms/step"
              + ("" if name == "step" else f"   {seconds / med['step']:6.2f}x   (target <= 2x)"))


def bench_throughput(args, inputs, targets, vocab_size, pad_id) -> None:
    factory = partial(torch.optim.Adam, lr=1e-3)
    nets = {name: build(name, vocab_size, inputs.shape[1]) for name in ("transformer", "titans", "hope_nl")}
    entries = {name: (net, optimizer_for(net, factory)) for name, net in nets.items()}
    train_step = partial(timed_steps, inputs=inputs, targets=targets, pad_id=pad_id)
    train = median_rounds(entries, train_step, args, args.model_steps)
    evals = median_rounds({n: (net,) for n, net in nets.items()}, partial(timed_eval, inputs=inputs), args, args.model_steps)
    tokens = inputs.numel()
    print(f"\nThroughput (batch {inputs.shape[0]} x {inputs.shape[1]} tokens, d_model 64, tokens/s):")
    print(f"  {'model':<12} {'params':>8} {'train':>10} {'vs tf':>7} {'eval':>10} {'vs tf':>7}")
    for name, net in nets.items():
        params = sum(p.numel() for p in net.parameters())
        tr, ev = tokens / train[name], tokens / evals[name]
        tr_ref, ev_ref = tokens / train["transformer"], tokens / evals["transformer"]
        print(f"  {name:<12} {params:>8} {tr:>10.0f} {tr / tr_ref:>6.2f}x {ev:>10.0f} {ev / ev_ref:>6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds; the median is reported (default 7)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model before timing (default 3)")
    parser.add_argument("--cms-steps", type=int, default=24,
                        help="CMS steps per round, rounded to whole cycles of the longest period (default 24)")
    parser.add_argument("--model-steps", type=int, default=3, help="steps per round for the throughput figures (default 3)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=0,
                        help="time random sequences of this length instead of commute batches")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = batch(args)
    bench_cms_step(args, *data)
    bench_cms_clocks(args, *data)
    bench_throughput(args, *data)


if __name__ == "__main__":
    main()

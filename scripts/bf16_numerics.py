"""What `trainer.precision=bf16-mixed` does to the memories' numerics, on the CPU (docs/hardware.md).

Lightning's bf16-mixed runs each training step's forward under torch.autocast(dtype=bfloat16): matrix
products run in bfloat16 (8 bits of mantissa), elementwise work in the dtype of its inputs. The
memories' inner recurrences (Titans Eq. 13-14, HOPE-NL's Eq. 96, the token-clock CMS levels) are
built from matrix products, so they run in it too. For each model, same weights and tokens: the
logits and the loss's parameter gradient under autocast against float32, as relative errors
||a - b|| / ||b||, at a short and a long sequence (a recurrence's error may grow with length), and
the dtype of the logits autocast produced.

    python scripts/bf16_numerics.py [--lengths 16 512] [--batch 8] [--models 'hope (seed cell)' titans ...]
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from bench_models import build  # scripts/ is on sys.path when this runs as a script

VOCAB = 64
MODELS = {  # label -> (config name, overrides)
    "transformer": ("transformer", []),
    "hope (seed cell)": ("hope", []),
    "cms (step clock)": ("cms", []),
    "cms (token clock, carry)": ("cms", ["model.cms_clock=token", "model.cms_state=carry"]),
    "titans": ("titans", []),
    "hope_nl": ("hope_nl", []),
}


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def logits_and_grad(net: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, bf16: bool):
    net.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = net(inputs)  # (B, T, V)
    loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
    loss.backward()
    grad = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
    return logits.detach(), grad, logits.dtype


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 512])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS), metavar="MODEL")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, CPU autocast bfloat16 vs float32; batch {args.batch}, vocabulary {VOCAB}")
    print(f"{'model':26} {'T':>4} {'logits rel err':>15} {'grad rel err':>13} {'logits dtype':>14}")
    for label in args.models:
        name, overrides = MODELS[label]
        for T in args.lengths:
            net = build(name, VOCAB, T, overrides=overrides).train()
            torch.manual_seed(1)
            tokens = torch.randint(1, VOCAB, (args.batch, T + 1))
            inputs, targets = tokens[:, :-1], tokens[:, 1:]
            state = {k: v.clone() for k, v in net.state_dict().items()}  # carried CMS state changes in forward
            torch.manual_seed(2)  # the same dropout masks in both
            ref_logits, ref_grad, _ = logits_and_grad(net, inputs, targets, bf16=False)
            net.load_state_dict(state)
            torch.manual_seed(2)
            logits, grad, dtype = logits_and_grad(net, inputs, targets, bf16=True)
            print(f"{label:26} {T:>4} {relative(logits, ref_logits):15.2e} {relative(grad, ref_grad):13.2e} {str(dtype):>14}")


if __name__ == "__main__":
    main()

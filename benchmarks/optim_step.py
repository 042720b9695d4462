"""Optimizer step time on the parameters of a CIFAR ResNet18 (11.2M parameters).

Measures, side by side in one run, the median time of one ``step()`` with random
gradients for MAS (each path) and for torch's Adam and SGD, and prints the ratios
to ``torch.optim.Adam(foreach=True)``. The optimizers take turns in rounds, so
that a slow spell of the machine hits them all alike.

    python benchmarks/optim_step.py [--device cpu|cuda] [--rounds 7] [--steps 10]

Target (issue 2): MAS's default path at most 1.3x Adam(foreach=True) on CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from masbench.models.resnet import cifar_resnet
from masbench.optim import MAS


def naive_mas(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, momentum=0.9, lambda_adam=0.5, lambda_sgd=0.5):
    """A plain per-parameter MAS, written straight from the formula: the baseline for 'fast'."""
    state = {p: dict(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p), buf=None) for p in params}

    def step():
        with torch.no_grad():
            for p in params:
                s = state[p]
                g = p.grad
                s["t"] += 1
                s["m"] = betas[0] * s["m"] + (1 - betas[0]) * g
                s["v"] = betas[1] * s["v"] + (1 - betas[1]) * g * g
                bc1, bc2 = 1 - betas[0] ** s["t"], 1 - betas[1] ** s["t"]
                d_adam = s["m"] / (s["v"].sqrt() / bc2**0.5 + eps)
                s["buf"] = g.clone() if s["buf"] is None else momentum * s["buf"] + g
                direction = lambda_sgd * s["buf"] + lambda_adam * d_adam
                p -= (lambda_sgd * lr + lambda_adam * lr / bc1) * direction

    return step


def resnet18_tensors(device: torch.device) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The parameters of a CIFAR ResNet18 (11.17M in 62 tensors) on ``device``, and a random gradient for each."""
    model = cifar_resnet(18, (3, 32, 32), 10)
    base = [p.detach().to(device) for p in model.parameters()]
    generator = torch.Generator(device=device).manual_seed(0)
    return base, [torch.randn(p.shape, generator=generator, device=device) for p in base]


MAS_KWARGS = dict(lr=1e-3, momentum=0.9, lambda_adam=0.5, lambda_sgd=0.5)
CANDIDATES = {
    "Adam(foreach=True)": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True).step,
    "SGD(momentum=0.9, foreach=True)": lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, foreach=True).step,
    "Adam(fused=True)": lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True).step,
    "MAS (default path)": lambda ps: MAS(ps, **MAS_KWARGS).step,
    "MAS(fused=True)": lambda ps: MAS(ps, fused=True, **MAS_KWARGS).step,
    "MAS(foreach=True)": lambda ps: MAS(ps, foreach=True, **MAS_KWARGS).step,
    "MAS(foreach=False)": lambda ps: MAS(ps, foreach=False, **MAS_KWARGS).step,
    "naive per-parameter MAS": naive_mas,
}


def time_steps(names, base, grads, device: torch.device, rounds: int, steps: int) -> dict[str, list[float]]:
    """Seconds per ``step()`` of each of ``CANDIDATES[names]``, taking turns in ``rounds`` rounds of ``steps``."""
    step_of = {}
    for name in names:
        params = [torch.nn.Parameter(p.clone()) for p in base]
        for p, g in zip(params, grads):
            p.grad = g
        step_of[name] = CANDIDATES[name](params)
        step_of[name]()  # allocate state outside the timings

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times: dict[str, list[float]] = {name: [] for name in step_of}
    for _ in range(rounds):
        for name, step in step_of.items():
            sync()
            for _ in range(steps):
                start = time.perf_counter()
                step()
                sync()
                times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per optimizer per round")
    args = parser.parse_args()
    device = torch.device(args.device)

    base, grads = resnet18_tensors(device)
    n_params = sum(p.numel() for p in base)
    times = time_steps(CANDIDATES, base, grads, device, args.rounds, args.steps)

    baseline = statistics.median(times["Adam(foreach=True)"])
    print(f"ResNet18 (CIFAR stem) parameters: {n_params / 1e6:.2f}M in {len(base)} tensors; device {device}; "
          f"torch {torch.__version__}; {torch.get_num_threads()} CPU threads; "
          f"{args.rounds} rounds x {args.steps} steps each")
    print(f"{'optimizer':34s} {'median ms':>10s} {'x Adam(foreach)':>16s}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:34s} {median * 1e3:10.2f} {median / baseline:16.2f}")
    ratio = statistics.median(times["MAS (default path)"]) / baseline
    verdict = "met" if ratio <= 1.3 else "MISSED"
    print(f"target: MAS default path <= 1.30x Adam(foreach=True): {ratio:.2f}x ({verdict})")


if __name__ == "__main__":
    main()

"""Training throughput of masbench's engine against a minimal hand-written PyTorch loop.

Both train the same model (the small CNN) with the same optimizer (MAS) on the
same device-resident images with the same per-batch augmentation; each epoch's
training loop is timed (evaluation left out), engine and hand loop taking turns.
Prints samples per second and the ratio, engine / hand loop.

    python benchmarks/engine_epoch.py [--rounds 5] [--per-class 500] [--batch-size 256]

Target (issue 3): the engine at least 0.95 of the hand loop's throughput.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import image_folder  # noqa: E402

from masbench.spec import RunSpec  # noqa: E402
from masbench.engine import ExecOptions  # noqa: E402
from masbench.data.base import random_crop_flip  # noqa: E402
from masbench.engine import Callback, prepare, train_one  # noqa: E402
from masbench.models import build_model  # noqa: E402
from masbench.optim import MAS  # noqa: E402


def hand_loop_epoch(model, optimizer, data, batch_size, generator, device) -> float:
    """One epoch the way one writes it by hand; returns samples per second."""
    images, labels = data.train.images.to(device), data.train.labels.to(device)
    mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)
    model.train()
    start = time.perf_counter()
    order = torch.randperm(len(labels), generator=generator).to(device)
    for i in range(0, len(labels), batch_size):
        index = order[i : i + batch_size]
        x = random_crop_flip(images[index], 4, generator)
        x = (x.float() / 255 - mean) / std
        loss = F.cross_entropy(model(x), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return len(labels) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-class", type=int, default=500, help="training images per class")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    root, what = image_folder(args.per_class, 100)
    work = Path(tempfile.mkdtemp(prefix="masbench-engine-bench-"))
    spec = RunSpec(dataset=f"imagefolder:{root}", model="cnn", optimizer="mas", lr=1e-3, momentum=0.9,
                   batch_size=args.batch_size, epochs=args.rounds)
    options = ExecOptions(device=args.device, data_dir=work / "data", checkpoint_dir=work / "ckpt")
    prepared = prepare([spec], options)
    device = prepared.device

    torch.manual_seed(0)
    hand_model = build_model("cnn", prepared.dataset).to(device)
    hand_opt = MAS(hand_model.parameters(), lr=1e-3, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    hand_loop_epoch(hand_model, hand_opt, prepared.dataset, args.batch_size, generator, device)  # warm-up

    engine, hand = [], []

    class Interleave(Callback):
        """After each engine epoch, one hand-loop epoch: the two take turns in one run."""

        def on_epoch(self, metrics):
            engine.append(metrics.samples_per_second)
            hand.append(hand_loop_epoch(hand_model, hand_opt, prepared.dataset, args.batch_size, generator, device))

    train_one(spec, options, [Interleave()], prepared=prepared)

    e, h = statistics.median(engine), statistics.median(hand)
    print(f"data: {what}; {len(prepared.dataset.train)} training images; model cnn; MAS; batch {args.batch_size}; "
          f"device {device}; torch {torch.__version__}; {torch.get_num_threads()} threads; {args.rounds} rounds")
    print(f"engine     {e:10.0f} samples/s   (rounds: {', '.join(f'{v:.0f}' for v in engine)})")
    print(f"hand loop  {h:10.0f} samples/s   (rounds: {', '.join(f'{v:.0f}' for v in hand)})")
    ratio = e / h
    print(f"target: engine >= 0.95 x hand loop: {ratio:.3f}x ({'met' if ratio >= 0.95 else 'MISSED'})")


if __name__ == "__main__":
    main()

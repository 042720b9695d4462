"""Images per second: masbench's tensor-resident pipeline against torchvision's DataLoader.

The DataLoader is the usual one: ImageFolder with RandomCrop(32, padding=4),
RandomHorizontalFlip, ToTensor and Normalize, decoding each JPEG with PIL in
worker processes. masbench decodes the folder once into a uint8 tensor (a cached
file afterwards), then crops, flips, normalises and batches on the device. Both
produce one shuffled, augmented training epoch of float batches; they take
turns, and the medians are compared.

    python benchmarks/image_pipeline.py [--rounds 3] [--batch-size 512] [--workers 2] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import image_folder  # noqa: E402

from masbench.data import load_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--per-class", type=int, default=None, help="training images per class (default: all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    import torchvision
    from torchvision import transforms

    root, what = image_folder(args.per_class, 10)
    cache_dir = Path(tempfile.mkdtemp(prefix="masbench-pipeline-"))
    start = time.perf_counter()
    data = load_dataset(f"imagefolder:{root}", cache_dir)
    first_load = time.perf_counter() - start
    start = time.perf_counter()
    data = load_dataset(f"imagefolder:{root}", cache_dir)
    cached_load = time.perf_counter() - start

    loader = torch.utils.data.DataLoader(
        torchvision.datasets.ImageFolder(
            str(root / "train"),
            transforms.Compose([
                transforms.RandomCrop(32, padding=4),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(data.mean, data.std),
            ]),
        ),
        batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=False,
        persistent_workers=args.workers > 0, pin_memory=device.type == "cuda",
    )
    generator = torch.Generator().manual_seed(0)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def ours() -> float:
        sync()
        start = time.perf_counter()
        n = 0
        for batch in data.batches("train", args.batch_size, device, generator):
            n += len(batch)
        sync()
        return n / (time.perf_counter() - start)

    def theirs() -> float:
        sync()
        start = time.perf_counter()
        n = 0
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            n += len(labels)
        sync()
        return n / (time.perf_counter() - start)

    ours()  # the first epoch moves the set to the device once
    results = {"masbench tensor pipeline": [], "torchvision DataLoader": []}
    for _ in range(args.rounds):
        results["masbench tensor pipeline"].append(ours())
        results["torchvision DataLoader"].append(theirs())

    print(f"data: {what}; {len(data.train)} training images; batch {args.batch_size}; device {device}; "
          f"DataLoader workers {args.workers}; torch {torch.__version__}; {args.rounds} rounds")
    print(f"masbench one-time decode {first_load:.1f}s, then {cached_load:.2f}s from its cache")
    for name, values in results.items():
        print(f"{name:26s} {statistics.median(values):12,.0f} images/s   "
              f"(rounds: {', '.join(f'{v:,.0f}' for v in values)})")
    ratio = statistics.median(results["masbench tensor pipeline"]) / statistics.median(results["torchvision DataLoader"])
    print(f"masbench / DataLoader: {ratio:.1f}x")


if __name__ == "__main__":
    main()

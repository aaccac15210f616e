"""Prediction speed of the shipped GRU: single-name latency and batched throughput.

Run: python benchmarks/predict_speed.py [--data-dir DIR] [--model gru|rnn] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from core.data import DatasetError, load_dataset
from core.device import DEVICE_CHOICES, resolve_device
from core.models import MODEL_KINDS
from core.predict import Predictor

FALLBACK_NAMES = [
    "Dostoevsky",
    "Nakamura",
    "O'Brien",
    "De la Cruz",
    "Abdel-Malek",
    "Nguyen",
    "Schmidt",
    "Rossi",
]


def sample_names(data_dir: str | None, count: int) -> list[str]:
    """Real surnames when the dataset is present (cycled to ``count``), else a fixed list."""
    try:
        pool = [ex.name for ex in load_dataset(data_dir).examples]
    except DatasetError:
        pool = FALLBACK_NAMES
    return [pool[i % len(pool)] for i in range(count)]


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile of ``values``."""
    return statistics.quantiles(values, n=1000, method="inclusive")[round(share * 1000) - 1]


def main() -> None:
    """Print p50/p99 single-name latency and names/s for batched prediction."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--model", choices=MODEL_KINDS, default="gru")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="cpu")
    parser.add_argument("--single", type=int, default=3000, help="single-name calls to time")
    parser.add_argument("--batched", type=int, default=100_000, help="names for the throughput run")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3, help="throughput runs; the median is printed")
    args = parser.parse_args()
    predictor = Predictor.shipped(args.model, resolve_device(args.device))
    names = sample_names(args.data_dir, max(args.single, args.batched))

    for name in names[:200]:  # warm-up: allocator, kernels, unidecode tables
        predictor.predict(name)
    latencies = []
    for name in names[: args.single]:
        started = time.perf_counter()
        predictor.predict(name)
        latencies.append((time.perf_counter() - started) * 1000)

    rates = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        for start in range(0, args.batched, args.batch_size):
            predictor.predict_many(names[start : start + args.batch_size])
        rates.append(args.batched / (time.perf_counter() - started))
    throughput = statistics.median(rates)

    print(f"model {predictor.version} on {args.device}, torch threads {torch.get_num_threads()}")
    print(
        f"single name (parse + model + top-3), {args.single} calls: p50 {percentile(latencies, 0.5):.2f} ms, "
        f"p99 {percentile(latencies, 0.99):.2f} ms, max {max(latencies):.2f} ms (target p99 <= 5 ms)"
    )
    print(
        f"batched, {args.batched} names in batches of {args.batch_size}: median {throughput:,.0f} names/s over "
        f"{args.repeats} runs (min {min(rates):,.0f}, max {max(rates):,.0f}; target >= 20,000)"
    )


if __name__ == "__main__":
    main()

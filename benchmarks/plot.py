"""
Plot msgs/s against item size (64 B ... 4 MB) for tsyncp_tx and pyzmq:
mpsc, 1 sender -> 1 receiver, raw bytes, separate processes on 127.0.0.1,
interleaved runs, medians.  Writes C{docs/performance-sizes.png} (and,
with C{--json PATH}, the per-run figures).

    python -m benchmarks.plot [--quick] [--runs N] [--out PATH]

Needs matplotlib (in the C{bench} extra).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence

from benchmarks._harness import (
    MiB,
    ROOT,
    TSYNCP,
    ZMQ,
    BenchmarkError,
    Case,
    Target,
    Variant,
    _available,
    environment,
    install_signal_handlers,
    measure,
)

SIZES = [64, 256, 1024, 4096, 16 * 1024, 64 * 1024, 256 * 1024, MiB, 4 * MiB]

# pyzmq copies small messages anyway; from 64 KiB on, zero-copy pays.
ZMQ_ZERO_COPY_FROM = 64 * 1024

SERIES = {
    "tsyncp_tx": "tsyncp_tx (defaults)",
    "tsyncp_tx tuned": "tsyncp_tx (read_size=1 MiB, send_limit=4 MiB)",
    "pyzmq": "pyzmq PUSH/PULL",
}


def count_for(size: int, quick: bool) -> int:
    """
    Items per run for a size: about the same bytes per run from 16 KiB up,
    capped for small items.

    @param size: Item size in bytes.
    @param quick: Smaller counts.
    @return: The count.
    """
    budget = 40 * 10**6 if quick else 2 * 10**9
    cap = 20_000 if quick else 600_000
    floor = 40 if quick else 300
    return max(floor, min(cap, budget // size))


def size_label(size: int) -> str:
    """
    C{"64 B"}, C{"16 KiB"}, C{"4 MiB"}.
    """
    if size >= MiB:
        return f"{size // MiB} MiB"
    if size >= 1024:
        return f"{size // 1024} KiB"
    return f"{size} B"


def variants(size: int, tuned: bool, have_zmq: bool) -> List[Variant]:
    """
    The variants measured at one size.
    """
    raw = {"kind": "raw", "size": size}
    out = [Variant("tsyncp_tx", "headline", TSYNCP, "mpsc", dict(raw))]
    if tuned:
        out.append(Variant("tsyncp_tx tuned", "extra", TSYNCP, "mpsc",
                           dict(raw, options={"read_size": MiB, "send_limit": 4 * MiB})))
    if have_zmq:
        out.append(Variant("pyzmq", "peer", ZMQ, "mpsc", dict(raw, copy=size < ZMQ_ZERO_COPY_FROM)))
    return out


def measure_sizes(sizes: Sequence[int], runs: int, quick: bool, tuned: bool, have_zmq: bool,
                  timeout: float) -> Dict[str, Dict[int, List[float]]]:
    """
    Measure every series at every size, runs interleaved.

    @return: C{{series: {size: [msgs/s per run]}}}.
    """
    results: Dict[str, Dict[int, List[float]]] = {}
    for size in sizes:
        count = count_for(size, quick)
        case = Case(f"mpsc-raw-{size}", "", "rate", count, count, size, 1,
                    variants(size, tuned, have_zmq), Target(""))
        for run in range(runs):
            for variant in case.variants:
                try:
                    m = measure(case, variant, count, timeout)
                except BenchmarkError as e:
                    print(f"{size_label(size):>8} run {run + 1} {variant.label}: ERROR {e}", flush=True)
                    continue
                results.setdefault(variant.label, {}).setdefault(size, []).append(m.value)
                print(f"{size_label(size):>8} run {run + 1} {variant.label:16} "
                      f"{m.value:>12,.0f} msgs/s {m.value * size / 1e6:>9,.1f} MB/s", flush=True)
    return results


def plot(medians: Dict[str, Dict[int, float]], out: str, title: str, note: str) -> None:
    """
    Draw msgs/s (top) and MB/s (bottom) against item size, log scales.

    @param medians: C{{series: {size: msgs/s}}}.
    @param out: The PNG's path.
    @param title: The figure's title.
    @param note: Small print at the bottom (machine, versions).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 8), dpi=110)
    styles = {"tsyncp_tx": ("tab:blue", "-", "o"), "tsyncp_tx tuned": ("tab:cyan", "--", "s"),
              "pyzmq": ("tab:red", "-", "^")}
    for series, by_size in medians.items():
        sizes = sorted(by_size)
        color, line, marker = styles.get(series, ("black", "-", "x"))
        label = SERIES.get(series, series)
        top.plot(sizes, [by_size[s] for s in sizes], color=color, linestyle=line, marker=marker, label=label)
        bottom.plot(sizes, [by_size[s] * s / 1e6 for s in sizes], color=color, linestyle=line,
                    marker=marker, label=label)
    all_sizes = sorted({s for by_size in medians.values() for s in by_size})
    for axis in (top, bottom):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.25)
        axis.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
        axis.yaxis.set_minor_formatter(NullFormatter())
        axis.xaxis.set_minor_formatter(NullFormatter())
    bottom.set_xticks(all_sizes)
    bottom.set_xticklabels([size_label(s) for s in all_sizes], rotation=30)
    bottom.set_xlabel("item size")
    top.set_ylabel("messages / s")
    bottom.set_ylabel("MB / s (payload)")
    top.legend(fontsize=8, loc="lower left")
    top.set_title(title, fontsize=10)
    fig.text(0.01, 0.005, note, fontsize=6, alpha=0.8)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(out)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """
    The command line.

    @return: The exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts, 1 run")
    parser.add_argument("--runs", type=int, default=None, help="runs per point (default 3; 1 with --quick)")
    parser.add_argument("--sizes", default="", help="comma-separated sizes in bytes (default 64 B ... 4 MiB)")
    parser.add_argument("--no-tuned", action="store_true",
                        help="skip the tsyncp_tx series with read_size/send_limit raised")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per run")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "performance-sizes.png"),
                        help="the PNG to write")
    parser.add_argument("--json", metavar="PATH", help="also write the per-run figures as JSON here")
    args = parser.parse_args(argv)
    if not _available("matplotlib"):
        print("matplotlib is not installed: pip install '.[bench]'", file=sys.stderr)
        return 2
    have_zmq = _available("zmq")
    if not have_zmq:
        print("pyzmq is not installed: plotting tsyncp_tx only")
    runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()] or SIZES
    env = environment()
    print(env, flush=True)
    started = time.monotonic()
    results = measure_sizes(sizes, runs, args.quick, not args.no_tuned, have_zmq, args.timeout)
    medians = {series: {size: statistics.median(xs) for size, xs in by_size.items()}
               for series, by_size in results.items()}
    stamp = time.strftime("%Y-%m-%d")
    title = (f"mpsc 1 -> 1, raw items, 127.0.0.1, separate processes, median of {runs} run(s)"
             + (" [--quick]" if args.quick else ""))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    plot(medians, args.out, title, f"{stamp}: {env}")
    if args.json:
        dump = {
            "environment": env, "date": stamp, "runs": runs, "quick": args.quick,
            "counts": {size: count_for(size, args.quick) for size in sizes},
            "results": {series: {str(size): xs for size, xs in by_size.items()}
                        for series, by_size in results.items()},
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dump, f, indent=1)
    print(f"\n{'size':>8} " + " ".join(f"{s:>18}" for s in medians))
    for size in sizes:
        print(f"{size_label(size):>8} " + " ".join(
            f"{medians[s].get(size, float('nan')):>18,.0f}" for s in medians))
    print(f"wrote {args.out} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    install_signal_handlers()
    sys.exit(main())

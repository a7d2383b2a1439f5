"""Reads the predictor benchmark's tables and the Python baselines' RESULT line from the same
`just bench` run and prints the ratios the issues set targets for."""

import json
import re
import sys


def rows(text, header_start):
    """Rows (lists of cells) of the markdown table whose header starts with `header_start`."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header_start):
            out = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                out.append([c.strip() for c in row.strip("|").split("|")])
            return out
    return []


def main(predictor_path, python_path):
    pred = open(predictor_path).read()
    result = next(json.loads(l[len("RESULT "):]) for l in open(python_path) if l.startswith("RESULT "))
    rust_best = max(float(r[-1]) for r in rows(pred, "| threads | chunk |"))
    ticks = {int(r[0].replace(",", "")): float(re.split(r"\s*/\s*", r[2])[0]) for r in rows(pred, "| servers |")}
    torch_1000 = next(r["torch_per_s"] for r in result["inference"] if r["batch"] == 1000)
    ort_1000 = next(r["ort_per_s"] for r in result["inference"] if r["batch"] == 1000)
    gflops = 2 * result["macs"] * rust_best / 1e9
    print("| comparison | ours | baseline | ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| inference, forecasts/s (Rust ort, fastest workers x threads x chunk on the 2 cores) vs eager PyTorch batch 1,000 (2 threads) | {rust_best:.0f} | {torch_1000:.0f} "
          f"| {rust_best / torch_1000:.1f}x | >= 2x |")
    print(f"| same, ONNX Runtime from Python at batch 1,000 | {ort_1000:.0f} | {torch_1000:.0f} | {ort_1000 / torch_1000:.1f}x | |")
    print(f"| inference GFLOP/s vs this CPU's matmul peak | {gflops:.2f} | {result['peak_flops'] / 1e9:.1f} "
          f"| {100 * gflops * 1e9 / result['peak_flops']:.1f} % | |")
    lean = result.get("lean_tick_ms", {})
    for n, ms in sorted(result["original_tick_ms"].items(), key=lambda kv: int(kv[0])):
        ours = ticks.get(int(n))
        if ours:
            print(f"| tick for {int(n):,} servers (p50 ms) vs the original's way (original_way.py) | {ours:.0f} | {ms:.0f} "
                  f"| {ms / ours:.1f}x | >= 20x |")
            if n in lean:
                print(f"| same, vs the lean Python floor (forward + groupby + forecasts JSON only) | {ours:.0f} "
                      f"| {lean[n]:.0f} | {lean[n] / ours:.1f}x | |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

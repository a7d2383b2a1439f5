"""Command line: `run` (train -> export -> parity -> evaluate -> benchmark -> card), `sweep`
(the size trade-off table) and `compile` (re-export the shipped model in its inference form).
train.sh calls these; see services/trainer/README.md."""

import argparse
import glob
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
import torch

from . import bench, card, compiled, evaluate, export, recover, schema
from .data import file_fingerprint, load_nab, load_parquet
from .model import TFTConfig, count_parameters
from .train import TrainConfig, train
from .windows import Augment, rolling_origins

MAX_ONNX_BYTES = 10 * 1024 * 1024
HISTORY_GRID = [12, 24, 36, 48, 72]


def _args(argv):
    p = argparse.ArgumentParser(prog="fleetcast_trainer")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("run", "sweep"):
        s = sub.add_parser(name)
        s.add_argument("--train-data", required=True)
        s.add_argument("--eval-data", required=True)
        s.add_argument("--nab-dir", default=None)
        s.add_argument("--out", required=True, help="models/ directory")
        s.add_argument("--encoder-steps", type=int, default=48)
        s.add_argument("--hidden", type=int, default=8)
        s.add_argument("--heads", type=int, default=2)
        s.add_argument("--patch", type=int, default=2, help="future steps per decoder position")
        s.add_argument("--time-budget", type=float, default=25 * 60, help="training seconds")
        s.add_argument("--max-epochs", type=int, default=60)
        s.add_argument("--steps-per-epoch", type=int, default=100)
        s.add_argument("--seed", type=int, default=7)
        s.add_argument("--eval-every", type=int, default=36, help="steps between rolling origins")
        s.add_argument("--no-progress", action="store_true")
    c = sub.add_parser("card", help="re-render models/README.md from tft.json, evaluation.json, sweep.json")
    c.add_argument("--out", required=True)
    bm = sub.add_parser("bench", help="re-measure ONNX Runtime cost of the shipped model, update the card")
    bm.add_argument("--out", required=True)
    bm.add_argument("--rounds", type=int, default=3, help="measurements; the one with the fastest batch-1000 run is kept")
    cp = sub.add_parser("compile", help="re-export models/tft.onnx in the inference form (compiled.py) "
                                         "from its own weights; checks golden parity, re-benchmarks")
    cp.add_argument("--out", required=True)
    sub.choices["sweep"].add_argument("--sizes", default="96x8,96x16,96x32,144x16",
                                      help="comma list of <encoder_steps>x<hidden>")
    return p.parse_args(argv)


def _eval_origins(fleet, t, every):
    # Three days before the first origin: one to initialise Holt-Winters' season, two to fit it.
    return rolling_origins(fleet.n_steps, max(3 * schema.DAY_STEPS, t), every)


def _train(args, fleet, t, d, budget, progress=True):
    cfg = TFTConfig(encoder_steps=t, hidden=d, var_hidden=d, heads=args.heads, patch=args.patch)
    tc = TrainConfig(seed=args.seed, time_budget_s=budget, max_epochs=args.max_epochs,
                     steps_per_epoch=args.steps_per_epoch)
    return train(fleet, cfg, tc, Augment(min_history=HISTORY_GRID[0]), progress=progress), tc


def run(args):
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    print(f"[trainer] loading {args.train_data}", flush=True)
    fleet = load_parquet(args.train_data)
    eval_fleet = load_parquet(args.eval_data)
    print(f"[trainer] train fleet {fleet.values.shape}, eval fleet {eval_fleet.values.shape}", flush=True)
    result, tc = _train(args, fleet, args.encoder_steps, args.hidden, args.time_budget, not args.no_progress)
    model = result.model
    print(f"[trainer] trained {result.epochs} epochs in {result.seconds:.0f}s ({result.stopped})", flush=True)

    onnx_path = os.path.join(args.out, "tft.onnx")
    export.export_onnx(compiled.CompiledTFT(model), onnx_path)
    recover.save_weights(model, args.out)
    size = os.path.getsize(onnx_path)
    if size > MAX_ONNX_BYTES:
        raise SystemExit(f"exported model is {size} bytes, over the {MAX_ONNX_BYTES} limit")
    if glob.glob(onnx_path + "*.data"):
        raise SystemExit("export wrote external data; the contract wants one self-contained file")
    version = export.model_version(onnx_path)
    predict = evaluate.ort_predictor(onnx_path)

    golden_b = export.golden_batch(eval_fleet, model.cfg.encoder_steps)
    export.write_golden(os.path.join(args.out, "golden.json"), model, golden_b, version)
    parity = _parity(onnx_path, os.path.join(args.out, "golden.json"))
    print(f"[trainer] ONNX parity max abs diff {parity['max_abs_diff']:.2e}", flush=True)

    t = model.cfg.encoder_steps
    print("[trainer] evaluating on held-out generated data", flush=True)
    origins = _eval_origins(eval_fleet, t, args.eval_every)
    gen = evaluate.evaluate_fleet(predict, eval_fleet, origins, t, keep_arrays=True)
    curve = evaluate.history_curve(predict, eval_fleet, origins[::3], t, [k for k in HISTORY_GRID if k < t] + [t])
    min_history = evaluate.choose_min_history(curve)

    nab, nab_items = {}, []
    if args.nab_dir and glob.glob(os.path.join(args.nab_dir, "*.csv")):
        print("[trainer] evaluating on NAB", flush=True)
        nab_fleets = [load_nab(p) for p in sorted(glob.glob(os.path.join(args.nab_dir, "*.csv")))]
        nab["final"], nab_items = evaluate.evaluate_nab(predict, nab_fleets, t, "final")
        nab["dev"], _ = evaluate.evaluate_nab(predict, nab_fleets, t, "dev")

    print("[trainer] benchmarking ONNX Runtime", flush=True)
    cost = bench.count_macs(onnx_path)
    tput = bench.throughput(onnx_path, t)

    arrays = gen.pop("arrays")
    training = {
        "data": os.path.basename(args.train_data), "data_fingerprint": file_fingerprint(args.train_data),
        "rows": int(np.isfinite(fleet.values).any(-1).sum()), "servers": len(fleet.servers),
        "steps": fleet.n_steps, "seed": args.seed, "seconds": round(result.seconds, 1),
        "epochs": result.epochs, "stopped": result.stopped, "best_val_loss": result.best_val,
        "device": result.device, "machine": export.machine_description(), "config": tc.to_dict(),
        "history": result.history,
    }
    eval_summary = _summary(gen, nab)
    manifest = export.write_manifest(
        os.path.join(args.out, "tft.json"), model, "tft.onnx", version, min_history, training, eval_summary,
        extra={"eval_data": {"data": os.path.basename(args.eval_data),
                             "data_fingerprint": file_fingerprint(args.eval_data)},
               "graph": _graph_note(parity)})
    full = {"generated": gen, "nab": nab, "history_curve": curve, "min_history_steps": min_history,
            "cost": cost, "throughput": tput, "parity": parity, "onnx_bytes": size,
            "parameters": count_parameters(model), "total_seconds": round(time.time() - t0, 1)}
    with open(os.path.join(args.out, "evaluation.json"), "w") as f:
        json.dump(full, f, indent=1, default=float)
    card.write_card(args.out, manifest, full, arrays, eval_fleet, nab_items)
    print(f"[trainer] done in {time.time() - t0:.0f}s: {onnx_path} ({size / 1e6:.2f} MB), version {version}")


def _parity(path, golden):
    inputs, expected, g = export.load_golden(golden)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = dict(zip(export.OUTPUTS, sess.run(export.OUTPUTS, inputs)))
    diffs = {k: float(np.abs(got[k] - expected[k]).max()) for k in export.OUTPUTS}
    ok = all(np.allclose(got[k], expected[k], atol=g["atol"], rtol=g["rtol"]) for k in export.OUTPUTS)
    if not ok:
        raise SystemExit(f"ONNX Runtime does not match PyTorch on the golden windows: {diffs}")
    return {"max_abs_diff": max(diffs.values()), "per_output": diffs}


def _graph_note(parity):
    return {"form": "compiled (fleetcast_trainer/compiled.py)", "table_knots": compiled.TABLE_KNOTS,
            "max_abs_diff_vs_training_form": parity["max_abs_diff"]}


def compile_shipped(args):
    """The shipped weights, re-exported in the inference form: same function (golden parity),
    new file and version; the evaluation numbers carry over, the cost and throughput are re-measured."""
    man_path = os.path.join(args.out, "tft.json")
    manifest = json.load(open(man_path))
    golden_path = os.path.join(args.out, "golden.json")
    model = recover.load_shipped(args.out)
    onnx_path = os.path.join(args.out, manifest["onnx"])
    tmp = onnx_path + ".compiled"
    export.export_onnx(compiled.CompiledTFT(model), tmp)
    parity = _parity(tmp, golden_path)
    os.replace(tmp, onnx_path)
    recover.save_weights(model, args.out)
    old, version = manifest["version"], export.model_version(onnx_path)
    manifest["version"] = version
    manifest["graph"] = {**_graph_note(parity), "weights_of": manifest.get("graph", {}).get("weights_of", old)}
    with open(man_path, "w") as f:
        json.dump(manifest, f, indent=1, allow_nan=False)
        f.write("\n")
    golden = json.load(open(golden_path))
    golden["model_version"] = version
    with open(golden_path, "w") as f:
        json.dump(golden, f, separators=(",", ":"))
    path = os.path.join(args.out, "evaluation.json")
    full = json.load(open(path))
    full["cost"], full["throughput"] = bench.count_macs(onnx_path), bench.throughput(onnx_path, manifest["encoder_steps"])
    full["parity"], full["onnx_bytes"] = parity, os.path.getsize(onnx_path)
    with open(path, "w") as f:
        json.dump(full, f, indent=1, default=float)
    card.write_card(args.out, manifest, full, None, None, None)
    print(f"[trainer] {old} -> {version}: parity max abs diff {parity['max_abs_diff']:.2e}, "
          f"{os.path.getsize(onnx_path) / 1e6:.2f} MB")


def _summary(gen, nab):
    tft, best_name, best = gen["overall"]["tft"], None, None
    for b in evaluate.BASELINES:
        if best is None or gen["overall"][b]["qrisk_p50"] < best["qrisk_p50"]:
            best_name, best = b, gen["overall"][b]
    out = {
        "generated": {k: round(v, 5) for k, v in tft.items()},
        "best_baseline": {"name": best_name, **{k: round(v, 5) for k, v in best.items()}},
        "per_target": {tg: {k: round(v, 5) for k, v in r["tft"].items()} for tg, r in gen["per_target"].items()},
    }
    if nab:
        out["nab"] = {"tft": nab["final"]["mean"]["tft"], "seasonal_naive": nab["final"]["mean"]["seasonal_naive"]}
    return out


def sweep(args):
    """Trains each size with the same (shorter) budget; records params, throughput, P50 q-risk."""
    fleet = load_parquet(args.train_data)
    eval_fleet = load_parquet(args.eval_data)
    path = os.path.join(args.out, "sweep.json")
    rows = json.load(open(path)) if os.path.exists(path) else []
    for spec in args.sizes.split(","):
        t, d = (int(x) for x in spec.split("x"))
        print(f"[sweep] encoder {t}, hidden {d}", flush=True)
        result, _ = _train(args, fleet, t, d, args.time_budget, not args.no_progress)
        tmp = os.path.join(args.out, f".sweep-{t}x{d}.onnx")
        export.export_onnx(result.model, tmp)
        origins = _eval_origins(eval_fleet, t, args.eval_every * 2)
        gen = evaluate.evaluate_fleet(evaluate.ort_predictor(tmp), eval_fleet, origins, t, with_breaches=False)
        tp = bench.throughput(tmp, t, batches=(1000,))[0]
        row = {"encoder_steps": t, "hidden": d, "parameters": count_parameters(result.model),
               "onnx_bytes": os.path.getsize(tmp), "macs": bench.count_macs(tmp)["macs"],
               "servers_per_s_b1000": tp["servers_per_s"], "qrisk_p50": gen["overall"]["tft"]["qrisk_p50"],
               "qrisk_p90": gen["overall"]["tft"]["qrisk_p90"], "coverage": gen["overall"]["tft"]["coverage"],
               "train_seconds": round(result.seconds), "epochs": result.epochs,
               "train_data_fingerprint": file_fingerprint(args.train_data)}
        os.remove(tmp)
        rows = [r for r in rows if (r["encoder_steps"], r["hidden"]) != (t, d)] + [row]
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)
        print(f"[sweep] {row}", flush=True)


def render_card(args):
    manifest = json.load(open(os.path.join(args.out, "tft.json")))
    full = json.load(open(os.path.join(args.out, "evaluation.json")))
    card.write_card(args.out, manifest, full, None, None, None)
    print(f"[trainer] re-rendered {os.path.join(args.out, 'README.md')}")


def rebench(args):
    """Same model, new measurement (the machine is shared, so a quieter moment gives truer numbers)."""
    manifest = json.load(open(os.path.join(args.out, "tft.json")))
    path = os.path.join(args.out, "evaluation.json")
    full = json.load(open(path))
    onnx_path = os.path.join(args.out, manifest["onnx"])
    runs = [bench.throughput(onnx_path, manifest["encoder_steps"]) for _ in range(args.rounds)]
    keep = lambda rows: {r["batch"]: r for r in rows}[1000]["servers_per_s"]
    best = max(runs + [full["throughput"]], key=keep)
    full["throughput"], full["cost"] = best, bench.count_macs(onnx_path)
    with open(path, "w") as f:
        json.dump(full, f, indent=1, default=float)
    card.write_card(args.out, manifest, full, None, None, None)
    print(f"[trainer] batch 1000: {keep(best):,.0f} server-forecasts/s (best of {args.rounds + 1} measurements)")


def main(argv=None):
    args = _args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(2)
    {"run": run, "sweep": sweep, "card": render_card, "bench": rebench, "compile": compile_shipped}[args.cmd](args)


if __name__ == "__main__":
    main()

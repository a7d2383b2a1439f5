"""One tick of the original stack (NordIQ / Argus), re-created for `just bench` so our tick can be
set against it on the same machine, fleet and model. What each stage does follows
../shared/notes/original-system.md (section 3) and the design note in ../shared/seed/:

1. ingest:   the generator's `POST /feed/data` JSON body (one record per server, ISO timestamp,
             profile, status, notes, 14 metrics) is parsed and appended to the rolling deque;
2. frame:    `pd.DataFrame(list(deque))`, timestamps parsed, sorted by server and time;
3. features: what the daemon rebuilt before each forward pass: `server_id` from sha256 of the
             name, `time_idx` by cumcount, profile by the name regexes, calendar features
             (hour, day of week, month, weekend), the 18 fleet features per timestamp
             (fleet mean/std/max of cpu, mem, iowait, load; share of servers over 80 % cpu,
             85 % mem, 15 % iowait; each server's cpu/mem/iowait minus the fleet mean), then the
             model's input tensors per server;
4. forward:  the shipped model (same weights' architecture, same batch) in eager PyTorch;
5. results:  per server: P10/P50/P90 lists, current and trend per target, the 70/30 points risk
             score (profile-aware memory), the alert level of scheme 1, `display_metrics`,
             threshold alerts over the first 12 steps; fleet incident probabilities (30 min /
             8 h); summary with level counts and top 5/10/20;
6. json:     the `/predictions/current` body serialised.

Being generous to the original: inference runs once per tick (the original re-ran it for each GET,
and its dashboard made two per refresh: `/predictions/current` and `/alerts/active`), the window
is the model's 96 steps per server (the original's shared 6,000-record deque held fewer), and
FastAPI's `jsonable_encoder` (much slower than `json.dumps`) is left out.
"""

import hashlib
import json
import re
import time
from collections import deque
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import torch

from fleetcast_trainer import schema
from fleetcast_trainer.windows import calendar_features

PROFILE_PATTERNS = [
    ("ml_compute", r"ppml|ppgpu|cptrain|ml-node-"),
    ("database", r"ppdb|psdb|oracle|mongo|postgres|mysql"),
    ("web_api", r"ppweb|ppapi|nginx|tomcat|api-server-"),
    ("conductor_mgmt", r"ppcon|conductor|egomgmt|maestro"),
    ("data_ingest", r"ppetl|ppkafka|stream|spark|flink"),
    ("risk_analytics", r"pprisk|varrisk|credit|quant"),
]
FLEET_BASE = ["cpu_user_pct", "mem_used_pct", "cpu_iowait_pct", "load_average"]
ALERT_THRESHOLDS = {"cpu": (85.0, 95.0), "mem": (90.0, 98.0), "iowait": (20.0, 30.0), "swap": (25.0, 50.0), "disk": (85.0, 95.0)}
PROB_THRESHOLDS = {"cpu": (80.0, 90.0), "iowait": (20.0, 40.0), "mem": (85.0, 95.0), "swap": (10.0, 30.0), "disk": (80.0, 90.0)}
UNITS = {"cpu": "%", "mem": "%", "iowait": "%", "swap": "%", "disk": "%", "load": "", "net_in": "MB/s", "net_out": "MB/s"}
LEVELS = [(70, "critical", "#ff4444", "red"), (40, "warning", "#ff9900", "orange"), (20, "watch", "#ffcc00", "yellow"),
          (0, "healthy", "#44ff44", "green")]
STAGES = ["ingest", "frame", "features", "forward", "results", "json"]


def detect_profile(name):
    low = name.lower()
    for profile, pattern in PROFILE_PATTERNS:
        if re.search(pattern, low):
            return profile
    return "generic"


def server_id(name):
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 1_000_000


def make_fleet(n):
    kinds = ["ppweb", "ppml", "ppdb", "ppetl", "pprisk", "ppcon", "ppgen"]
    return [f"{kinds[i % len(kinds)]}{i:04d}" for i in range(n)]


def make_post(servers, when, rng):
    """One generator POST body: a record per server for the step at `when`."""
    vals = rng.random((len(servers), len(schema.METRICS))) * 50
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S")
    records = []
    for name, row in zip(servers, vals.tolist()):
        rec = {"timestamp": stamp, "server_name": name, "profile": detect_profile(name), "status": "healthy",
               "problem_child": False, "notes": ""}
        rec.update(zip(schema.METRICS, row))
        records.append(rec)
    return json.dumps({"records": records})


def fill_window(past, mask, i, group, t):
    """Row `i` of the model's past inputs from one server's rows (oldest first): the last `t`
    steps, right-aligned, missing values masked."""
    v = group[schema.METRICS].to_numpy(np.float32)[-t:]
    past[i, t - len(v):] = np.nan_to_num(v)
    mask[i, t - len(v):] = ~np.isnan(v)


def points(value, table):
    for limit, pts in table:
        if value >= limit:
            return pts
    return 0


def risk_score(profile, current, p90):
    """The original's 70 % current / 30 % predicted points, memory thresholds per profile."""
    pred = {k: sum(v[:6]) / 6 for k, v in p90.items()}
    mem_now = ([(99, 50), (98, 30), (95, 15)] if profile == "database" else [(98, 50), (95, 30), (90, 15), (85, 10)])
    now_pts = (points(current["cpu"], [(98, 60), (95, 40), (90, 25), (80, 15)]) + points(current["mem"], mem_now)
               + points(current["iowait"], [(30, 40), (20, 25), (10, 15)]) + points(current["swap"], [(50, 30), (25, 20), (10, 10)])
               + points(current["load"], [(12, 20), (8, 10)]))
    pred_pts = (points(pred["cpu"], [(98, 40), (95, 25), (90, 15)]) + points(pred["mem"], [(98, 30), (95, 20)])
                + points(pred["iowait"], [(30, 25), (20, 15)]))
    return max(0.0, min(100.0, 0.7 * now_pts + 0.3 * pred_pts))


def slope(values):
    n = len(values)
    if n < 2:
        return 0.0
    mx = (n - 1) / 2
    my = sum(values) / n
    num = sum((i - mx) * (v - my) for i, v in enumerate(values))
    den = sum((i - mx) ** 2 for i in range(n))
    return num / den


class OriginalDaemon:
    """The inference daemon's per-tick path, stage by stage, timed."""

    def __init__(self, model, servers, encoder_steps):
        self.model = model
        self.servers = servers
        self.t = encoder_steps
        self.window = deque(maxlen=len(servers) * encoder_steps)

    def feed(self, body):
        self.window.extend(json.loads(body)["records"])

    def tick(self, body, times):
        clock = time.perf_counter()

        def lap(stage):
            nonlocal clock
            now = time.perf_counter()
            times[stage] = times.get(stage, 0.0) + now - clock
            clock = now

        self.feed(body)
        lap("ingest")
        df = pd.DataFrame(list(self.window))
        df["timestamp"] = pd.to_datetime(df["timestamp"])
        df = df.sort_values(["server_name", "timestamp"]).reset_index(drop=True)
        lap("frame")
        inputs, names, frames = self.features(df)
        lap("features")
        with torch.inference_mode():
            q = self.model(*inputs)[0].numpy()
        lap("forward")
        body_out = self.results(q, names, frames)
        lap("results")
        text = json.dumps(body_out)
        lap("json")
        return len(text)

    def features(self, df):
        t, h = self.t, schema.HORIZON
        df["server_id"] = df["server_name"].apply(server_id)
        df["time_idx"] = df.groupby("server_name").cumcount()
        profiles = {name: detect_profile(name) for name in df["server_name"].unique()}
        df["profile"] = df["server_name"].map(profiles)
        ts = df["timestamp"]
        df["hour"], df["day_of_week"], df["month"] = ts.dt.hour, ts.dt.dayofweek, ts.dt.month
        df["is_weekend"] = (df["day_of_week"] >= 5).astype(int)
        by_time = df.groupby("timestamp")
        for col in FLEET_BASE:
            stats = by_time[col].agg(["mean", "std", "max"])
            for stat in ("mean", "std", "max"):
                df[f"fleet_{col}_{stat}"] = df["timestamp"].map(stats[stat])
        for col, limit in (("cpu_user_pct", 80), ("mem_used_pct", 85), ("cpu_iowait_pct", 15)):
            df[f"fleet_pct_{col}_over"] = df["timestamp"].map(by_time[col].apply(lambda s, lim=limit: (s > lim).mean()))
        for col in ("cpu_user_pct", "mem_used_pct", "cpu_iowait_pct"):
            df[f"{col}_vs_fleet"] = df[col] - df[f"fleet_{col}_mean"]

        names, frames = [], []
        n = df["server_name"].nunique()
        past = np.zeros((n, t, len(schema.METRICS)), np.float32)
        mask = np.zeros_like(past)
        time_feat = np.zeros((n, t + h, 4), np.float32)
        profile = np.zeros(n, np.int64)
        step = np.timedelta64(schema.STEP_MS, "ms")
        for i, (name, g) in enumerate(df.groupby("server_name", sort=True)):
            fill_window(past, mask, i, g, t)
            last = g["timestamp"].to_numpy()[-1]
            stamps = (last - (t - 1) * step + np.arange(t + h) * step).astype("datetime64[ms]").astype(np.int64)
            time_feat[i] = calendar_features(stamps)
            profile[i] = schema.PROFILES.index(profiles[name])
            names.append(name)
            frames.append(g)
        tensors = (torch.from_numpy(past), torch.from_numpy(mask), torch.from_numpy(time_feat), torch.from_numpy(profile))
        return tensors, names, frames

    def results(self, q, names, frames):
        predictions, alerts, risks = {}, [], {}
        prob_30m = prob_8h = 0.0
        for i, (name, g) in enumerate(zip(names, frames)):
            profile = detect_profile(name)
            last = g.iloc[-1]
            vals = g[schema.METRICS].to_numpy()
            history = {tgt: (src[2] + src[1] * vals[:, schema.METRICS.index(src[0])]).tolist()
                       for tgt, src in schema.TARGET_SOURCE.items()}
            server, current, p50s, p90s = {}, {}, {}, {}
            for j, tgt in enumerate(schema.TARGETS):
                p10, p50, p90 = q[i, :, j, 0].tolist(), q[i, :, j, 1].tolist(), q[i, :, j, 2].tolist()
                hist = history[tgt]
                trend = 0.7 * slope(hist[-24:]) + 0.3 * slope(hist[-5:])
                current[tgt], p50s[tgt], p90s[tgt] = hist[-1], p50, p90
                server[tgt] = {"p10": p10, "p50": p50, "p90": p90, "current": hist[-1], "trend": trend}
            risk = risk_score(profile, current, p90s)
            risks[name] = risk
            level = next(lv for lv in LEVELS if risk >= lv[0])
            server["risk_score"] = risk
            server["profile"] = profile.replace("_", " ").title()
            server["alert"] = {"level": level[1], "score": risk, "color": level[2], "emoji": level[3], "label": level[1].title()}
            display = {}
            for tgt in schema.TARGETS:
                predicted = sum(p50s[tgt][:6]) / 6
                display[tgt] = {"current": current[tgt], "predicted": predicted, "delta": predicted - current[tgt],
                                "unit": UNITS[tgt], "trend": server[tgt]["trend"]}
            server["display_metrics"] = display
            server["timestamp"] = last["timestamp"].isoformat()
            predictions[name] = server
            for tgt, (warn, crit) in ALERT_THRESHOLDS.items():
                for step_i, value in enumerate(p50s[tgt][:12]):
                    severity = "critical" if value >= crit else "warning" if value >= warn else None
                    if severity:
                        alerts.append({"server": name, "metric": tgt, "severity": severity, "predicted_value": value,
                                       "threshold": crit if severity == "critical" else warn, "steps_ahead": step_i + 1,
                                       "minutes_ahead": (step_i + 1) * 5,
                                       "message": f"{name} {tgt} predicted {value:.1f} in {(step_i + 1) * 5} min"})
            near = far = 0.0
            for tgt, (warn, crit) in PROB_THRESHOLDS.items():
                early, whole = max(p50s[tgt][:6]), max(p50s[tgt])
                early90, whole90 = max(p90s[tgt][:6]), max(p90s[tgt])
                near += 0.25 if early >= crit or early90 >= crit + 5 else 0.10 if early >= warn or early90 >= warn + 5 else 0.0
                far += 0.20 if whole >= crit or whole90 >= crit + 5 else 0.08 if whole >= warn or whole90 >= warn + 5 else 0.0
            prob_30m += min(near, 1.0)
            prob_8h += min(far, 1.0)
        alerts.sort(key=lambda a: (a["severity"] != "critical", a["steps_ahead"]))
        n = max(len(names), 1)
        ranked = sorted(risks.items(), key=lambda kv: kv[1], reverse=True)
        counts = {lv[1]: 0 for lv in LEVELS}
        for r in risks.values():
            counts[next(lv for lv in LEVELS if r >= lv[0])[1]] += 1
        env = {"prob_30m": prob_30m / n, "prob_8h": prob_8h / n, "total_servers": len(names),
               "high_risk_servers": sum(1 for r in risks.values() if r >= 70)}
        env["fleet_health"] = "critical" if env["prob_30m"] > 0.6 else "warning" if env["prob_30m"] > 0.3 else "healthy"
        summary = dict(counts, avg_risk=sum(risks.values()) / n, max_risk=max(risks.values(), default=0.0),
                       top_5=ranked[:5], top_10=ranked[:10], top_20=ranked[:20])
        return {"predictions": predictions, "alerts": alerts, "environment": env, "summary": summary,
                "metadata": {"model_type": "TFT", "horizon_steps": schema.HORIZON, "device": "cpu"}}


def original_tick(model, n, t, timed):
    """Median seconds per tick and the mean seconds per stage, for `n` servers."""
    rng = np.random.default_rng(1)
    servers = make_fleet(n)
    start = datetime(2026, 11, 20, tzinfo=timezone.utc)
    daemon = OriginalDaemon(model, servers, t)
    for k in range(t):
        daemon.feed(make_post(servers, start + timedelta(minutes=5 * k), rng))
    bodies = [make_post(servers, start + timedelta(minutes=5 * (t + k)), rng) for k in range(24)]
    state = {"k": 0, "times": {}, "runs": 0}

    def one():
        daemon.tick(bodies[state["k"] % len(bodies)], state["times"])
        state["k"] += 1
        state["runs"] += 1

    median = timed(one, min_seconds=3.0, min_runs=3, max_runs=20)
    stages = {s: state["times"].get(s, 0.0) / state["runs"] for s in STAGES}
    return median, stages

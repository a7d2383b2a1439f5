"""The product's fixed vocabulary, mirrored from the Rust `schemas` crate.

The ONNX graph's input/output order is this order; a test (tests/test_schema.py) reads
`schemas/src/*.rs` and fails if the two ever drift apart.
"""

METRICS = [
    "cpu_user_pct", "cpu_sys_pct", "cpu_iowait_pct", "cpu_idle_pct", "java_cpu_pct",
    "mem_used_pct", "swap_used_pct", "disk_usage_pct", "net_in_mb_s", "net_out_mb_s",
    "back_close_wait", "front_close_wait", "load_average", "uptime_days",
]
PERCENT_METRICS = {m for m in METRICS if m.endswith("_pct")}

TARGETS = ["cpu", "mem", "iowait", "swap", "disk", "load", "net_in", "net_out"]
# target -> (source metric, sign, offset): value = offset + sign * metric  (CPU used = 100 - idle).
TARGET_SOURCE = {
    "cpu": ("cpu_idle_pct", -1.0, 100.0),
    "mem": ("mem_used_pct", 1.0, 0.0),
    "iowait": ("cpu_iowait_pct", 1.0, 0.0),
    "swap": ("swap_used_pct", 1.0, 0.0),
    "disk": ("disk_usage_pct", 1.0, 0.0),
    "load": ("load_average", 1.0, 0.0),
    "net_in": ("net_in_mb_s", 1.0, 0.0),
    "net_out": ("net_out_mb_s", 1.0, 0.0),
}
TARGET_METRIC_INDEX = [METRICS.index(TARGET_SOURCE[t][0]) for t in TARGETS]
TARGET_SIGN = [TARGET_SOURCE[t][1] for t in TARGETS]
TARGET_OFFSET = [TARGET_SOURCE[t][2] for t in TARGETS]
# Physical range of each target, used to clip the quantiles (monotone, so still non-crossing).
TARGET_UPPER = [100.0 if TARGET_SOURCE[t][0] in PERCENT_METRICS else 1.0e9 for t in TARGETS]

PROFILES = ["ml_compute", "database", "web_api", "conductor_mgmt", "data_ingest", "risk_analytics", "generic"]

QUANTILES = [0.1, 0.5, 0.9]
HORIZON = 96
STEP_MS = 300_000
DAY_STEPS = 288

# Breach thresholds evaluated in the card ("P90 crosses the threshold").
BREACH_THRESHOLDS = {"cpu": 90.0, "mem": 95.0, "iowait": 30.0, "swap": 50.0}
BREACH_WINDOWS = {"30min": 6, "8h": 96}

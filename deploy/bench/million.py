"""1,000,000 servers on paper: reads the `RESULT` line of `cluster_tick` (the same `just bench`
run) and prints, as markdown, how many partitions, predictors and cores a million-server fleet
needs and what the 3-node cluster has to carry at R3, each figure as its formula with the
measured numbers in it. Everything per server is taken as linear in the fleet's size: that is
the extrapolation, and the text says where it is weakest.

    python3 deploy/bench/million.py cluster.txt
"""

import json
import math
import sys

TARGET = 1_000_000
STEP_S = 300  # one step per 5 minutes
BUDGET_S = 60  # a tick must be done within a minute of its step's close
RSS_LIMIT_MB = 2048  # per predictor, as issue 14 asks of one predictor at 100,000 servers
MAX_PARTITIONS = 1024  # the predictor's --partitions range


def layout(result, nodes, partitioned):
    for r in result["layouts"]:
        if r["nodes"] == nodes and (r["partitions"] > 1) == partitioned:
            return r
    return None


def mean(values):
    return sum(values) / len(values) if values else float("nan")


def main(path):
    line = next((l for l in open(path) if l.startswith("RESULT ")), None)
    if line is None:
        print("(no figures from the cluster run: no arithmetic)")
        return
    result = json.loads(line[len("RESULT "):])
    n, cores_here = result["servers"], result["cores"]
    r3 = layout(result, 3, True)
    r1 = layout(result, 1, False)
    if r3 is None or r1 is None:
        print("(the cluster run is missing: no arithmetic)")
        return
    scale = TARGET / n
    k = n / 1000
    p3, pred3 = r3["partitions"], r3["predictors"]
    cpu3, cpu1 = r3["predictor_cpu_s_per_tick"], r1["predictor_cpu_s_per_tick"]
    per_1k = cpu3 * 1000 / k  # CPU ms per 1,000 servers per tick
    per_1k_r1 = cpu1 * 1000 / k
    broker_per_1k = r3["broker_cpu_s_per_tick"] * 1000 / k
    stages = r3["stages"]
    part_servers = n / p3
    part_wall = sum(stages.values())
    print(f"From the cluster run above ({n:,} servers, {pred3} predictors sharing {p3} partitions on the 3-node "
          f"cluster at R3, this machine's {cores_here} cores). Assumptions: one step per {STEP_S} s, a tick done within "
          f"**{BUDGET_S} s**, at most {RSS_LIMIT_MB} MiB per predictor; everything per server linear in the fleet's size.")
    print()
    print("**Per-partition cost.** CPU of the predictors (user + system, `/proc`) per tick, per 1,000 servers:")
    print()
    print(f"- c = {cpu3:.2f} CPU s per tick / {k:g} thousand servers = **{per_1k:.0f} ms of one core per 1,000 servers per tick** "
          f"(R3, partitioned; the single predictor on one node (R1, whole fleet): {per_1k_r1:.0f} ms, so partitioning and R3 cost "
          f"x{per_1k / per_1k_r1:.2f})")
    r1p = layout(result, 1, True)
    if r1p is not None:
        per_1k_r1p = r1p["predictor_cpu_s_per_tick"] * 1000 / k
        print(f"- split: partitioning alone (the same {r1p['predictors']} predictors x {r1p['partitions']} partitions on one node, R1): "
              f"{per_1k_r1p:.0f} ms, x{per_1k_r1p / per_1k_r1:.2f} of the whole-fleet predictor; the cluster's R3 on top: "
              f"x{per_1k / per_1k_r1p:.2f}")
    print(f"- a partition of {part_servers:,.0f} servers ticked in {part_wall:.0f} ms of stage time (wall, sharing the cores with "
          f"its predictor's other partitions): {part_wall / part_servers * 1000:.0f} ms per 1,000 servers; the CPU figure above "
          f"is the one that adds up across machines")
    print(f"- the nats-servers: b = {r3['broker_cpu_s_per_tick']:.2f} CPU s per tick / {k:g} = {broker_per_1k:.0f} ms per 1,000 servers (3 nodes together)")
    print()

    cpu_m = per_1k / 1000 * TARGET / 1000  # core-seconds per tick at 1M
    cores = math.ceil(cpu_m / BUDGET_S)
    per_pred_cores = cores_here
    pred_cpu = math.ceil(cores / per_pred_cores)
    # Memory: resident = base + per-server x servers, from the one predictor holding the whole
    # fleet and the partitioned ones holding part of it (same run).
    rss1 = r1["rss_mb"][0]
    rss_part = mean(r3["rss_mb"])
    held = n / pred3
    per_server_mb = (rss1 - rss_part) / (n - held) if n > held and rss1 > rss_part else rss1 / n
    base_mb = max(rss_part - per_server_mb * held, 0.0)
    pred_mem = math.ceil(TARGET * per_server_mb / (RSS_LIMIT_MB - base_mb)) if RSS_LIMIT_MB > base_mb else float("inf")
    predictors = max(pred_cpu, pred_mem)
    with_spare = predictors + 1
    partitions = min(1 << math.ceil(math.log2(4 * with_spare)), MAX_PARTITIONS)
    held_m = TARGET / predictors
    print("**Predictors, cores, partitions for 1,000,000 servers.**")
    print()
    print(f"- CPU per tick: c x 1,000 thousand servers = {per_1k:.0f} ms x 1,000 = **{cpu_m:,.0f} core-seconds**")
    print(f"- cores to finish within {BUDGET_S} s: ceil({cpu_m:,.0f} / {BUDGET_S}) = **{cores} cores** (every partition ticking in parallel)")
    print(f"- predictors of {per_pred_cores} cores (as this machine): ceil({cores} / {per_pred_cores}) = {pred_cpu}")
    print(f"- memory: resident = base + m x servers held; from {rss1:.0f} MiB holding {n:,} (R1) and {rss_part:.0f} MiB holding "
          f"{held:,.0f} (R3): m = ({rss1:.0f} - {rss_part:.0f}) / ({n:,} - {held:,.0f}) = {per_server_mb * 1024:.1f} KiB per server, "
          f"base = {base_mb:.0f} MiB, so {TARGET * per_server_mb / 1024:,.0f} GiB for the whole fleet; "
          f"under {RSS_LIMIT_MB} MiB each: ceil(1,000,000 x {per_server_mb * 1024:.1f} KiB / ({RSS_LIMIT_MB} - {base_mb:.0f}) MiB) "
          f"= {pred_mem} predictors")
    binding = "memory" if pred_mem > pred_cpu else "CPU"
    print(f"- predictors: max({pred_cpu}, {pred_mem}) = {predictors} ({binding} decides), **{with_spare} with one spare** so the "
          f"partitions of one that dies fit on the others ({with_spare * per_pred_cores} cores); each holds {held_m:,.0f} servers and "
          f"ticks them in about {per_1k / 1000 * held_m / 1000:.0f} core-seconds, {per_1k / 1000 * held_m / 1000 / per_pred_cores:.0f} s "
          f"on its {per_pred_cores} cores (budget {BUDGET_S} s)")
    print(f"- partitions: a power of two with about 4 per predictor, as measured ({p3} for {pred3}), so shares stay even and a "
          f"failover moves small pieces: 2^ceil(log2(4 x {with_spare})) = **{partitions}** (at most {MAX_PARTITIONS}), "
          f"{TARGET / partitions:,.0f} servers each ({TARGET / partitions / 1000 * per_1k / 1000:.1f} core-seconds per partition tick)")
    print(f"- nats-servers: {broker_per_1k:.0f} ms x 1,000 = {broker_per_1k:,.0f} core-seconds per tick / {BUDGET_S} s = "
          f"**{math.ceil(broker_per_1k / BUDGET_S)} cores** over the 3 nodes")
    print()

    print(f"**Broker throughput at R3.** What a tick wrote into each stream (the table above) as a part per partition and a part "
          f"per server, fitted from the same fleet written by 1 partition (R1, {n:,} servers) and by {p3} (R3): "
          f"bytes = a x partitions + b x servers, a = (B{p3} - B1) / ({p3} - 1), b = (B1 - a) / {n:,}; then at "
          f"{partitions} partitions and 1,000,000 servers. Every write is stored on 3 nodes (the stream's leader sends it to 2 "
          f"followers).")
    print()
    print(f"| written per tick | 1 partition, {n:,} servers | {p3} partitions | a, per partition | b, per server | "
          f"1,000,000 servers, {partitions} partitions | x 3 replicas | per s over the {BUDGET_S} s tick | per s averaged over the {STEP_S} s step |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    names = [("METRICS", "METRICS ingest"), ("KV_windows", "KV windows"), ("KV_forecasts", "KV forecasts"),
             ("PREDICTIONS", "snapshots (PREDICTIONS)"), ("HISTORY", "HISTORY (tick summaries, alerts)"), ("KV_state", "KV state")]
    total = 0.0
    msgs = {}
    empty = {"bytes_per_tick": 0.0, "msgs_per_tick": 0.0}
    for key, label in names:
        b1 = r1["streams"].get(key, empty)["bytes_per_tick"]
        bp = r3["streams"].get(key, empty)["bytes_per_tick"]
        a = max((bp - b1) / (p3 - 1), 0.0)
        per = max(b1 - a, 0.0) / n
        m = a * partitions + per * TARGET
        total += m
        msgs[key] = r3["streams"].get(key, empty)["msgs_per_tick"]
        print(f"| {label} | {b1 / 1e6:.2f} MB | {bp / 1e6:.2f} MB | {a / 1e3:,.1f} KB | {per:,.0f} B | {m / 1e6:,.0f} MB | "
              f"{3 * m / 1e6:,.0f} MB | {3 * m / BUDGET_S / 1e6:,.1f} MB/s | {3 * m / STEP_S / 1e6:,.1f} MB/s |")
    print(f"| **all** | | | | | {total / 1e6:,.0f} MB | {3 * total / 1e6:,.0f} MB | "
          f"**{3 * total / BUDGET_S / 1e6:,.0f} MB/s** | {3 * total / STEP_S / 1e6:,.0f} MB/s |")
    print()
    kv_msgs = (msgs["KV_windows"] + msgs["KV_forecasts"]) * scale
    print(f"- KV puts: ({msgs['KV_windows']:,.0f} + {msgs['KV_forecasts']:,.0f}) per tick x {scale:,.0f} = {kv_msgs:,.0f} per tick, "
          f"{kv_msgs / BUDGET_S:,.0f} per s within the budget; each bucket is one stream with one leader, so about "
          f"{kv_msgs / 2 / BUDGET_S:,.0f} puts/s land on a single leader (not measured at that rate; the buckets could be split by "
          f"partition to spread the leaders)")
    fleet3 = sorted(r3["fleet_ms"])
    p50_s = fleet3[(len(fleet3) - 1) // 2] / 1000 if fleet3 else float("nan")
    kv_here = msgs["KV_windows"] + msgs["KV_forecasts"]
    print(f"- measured here at R3: {kv_here:,.0f} KV puts within a whole-fleet tick of {p50_s:.1f} s (p50), at least "
          f"{kv_here / p50_s:,.0f} puts/s, while the predictors, three nats-servers and the benchmark shared {cores_here} cores: "
          f"a floor, not the cluster's ceiling")
    print(f"- between the nodes: 2 x {total / 1e6:,.0f} MB = {2 * total / 1e6:,.0f} MB of replication per tick; readers (the "
          f"predictors consuming METRICS, every dashboard reading the snapshots) add their own egress, not counted here")
    print()
    print(f"Measured: CPU, memory and bytes at {n:,} servers on {cores_here} shared cores (noisy: the machine runs other "
          f"work, and {r3['ticks']} ticks per layout are few). Extrapolated: that CPU and memory per server stay linear to 1,000,000 (inference and "
          "encoding are per server) and bytes linear in servers and partitions; that partitions tick in parallel on separate "
          "machines without contending as the two predictors here contend for the same cores; and that one 3-node cluster's "
          "stream leaders sustain the put rate above, the least certain of them.")


if __name__ == "__main__":
    main(sys.argv[1])

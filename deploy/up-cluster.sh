#!/usr/bin/env bash
# `just up-cluster`: `just up` on a 3-node NATS cluster (deploy/nats-cluster/n{1,2,3}.conf:
# routes, JetStream, the least-privilege users of deploy/nats-auth.conf) instead of the single
# nats.conf node. The predictor creates METRICS, HISTORY, PREDICTIONS, its consumer and the KV
# buckets at R3 (PREDICTOR_REPLICAS=3). Services connect to n1 and learn n2 and n3 from it, so
# they reconnect by themselves when a node goes away. Two predictors share the fleet's 8
# partitions (FLEETCAST_PARTITIONS, which the generator and ingest publish by too; PREDICTORS):
# kill one and the other takes its partitions within member_ttl. Everything else is up.sh's.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CLUSTER=3
export NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
export PREDICTOR_REPLICAS="${PREDICTOR_REPLICAS:-3}"
export FLEETCAST_PARTITIONS="${FLEETCAST_PARTITIONS:-8}"
export PREDICTORS="${PREDICTORS:-2}"
exec "$root/deploy/up.sh" "$@"

"""The trainer's metric/target/profile order must be the Rust wire contract's order."""

import os
import re

from conftest import REPO
from fleetcast_trainer import schema


def _rust(path):
    return open(os.path.join(REPO, "schemas", "src", path)).read()


def _fn_body(src, fn, after):
    """Body of the first `fn <fn>(self)` after `after` (the wire names, not the display labels)."""
    return src.split(after, 1)[1].split(f"pub fn {fn}(self)", 1)[1].split("\n    }\n", 1)[0]


def test_metric_order_matches_rust():
    body = _rust("metric.rs").split("metrics! {", 1)[1].split("}", 1)[0]
    assert re.findall(r"=>\s*(\w+)\s*:", body) == schema.METRICS


def test_target_order_and_sources_match_rust():
    src = _rust("metric.rs")
    # Whatever rustfmt does with the line breaks: from `ALL: [Target; TARGET_COUNT] =` to `];`.
    all_block = re.split(r"pub const ALL: \[Target; TARGET_COUNT\] =\s*\[", src, maxsplit=1)[1].split("];", 1)[0]
    variants = re.findall(r"Target::(\w+)", all_block)
    names = dict(re.findall(r"Target::(\w+) => \"(\w+)\"", _fn_body(src, "name", after="impl Target")))
    assert [names[v] for v in variants] == schema.TARGETS


def test_profile_order_matches_rust():
    src = _rust("profile.rs")
    block = re.split(r"pub const ALL: \[Profile; 7\] =\s*\[", src, maxsplit=1)[1].split("];", 1)[0]
    variants = re.findall(r"Profile::(\w+)", block)
    names = dict(re.findall(r"Profile::(\w+) => \"(\w+)\"", _fn_body(src, "name", after="impl Profile")))
    assert [names[v] for v in variants] == schema.PROFILES


def test_cpu_target_is_inverted_idle():
    assert schema.TARGET_SOURCE["cpu"] == ("cpu_idle_pct", -1.0, 100.0)
    assert schema.METRICS[schema.TARGET_METRIC_INDEX[0]] == "cpu_idle_pct"

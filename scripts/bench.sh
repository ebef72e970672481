#!/usr/bin/env bash
# `make bench`: the engine benchmarks (criterion), the burst run against rate-limited Tapkey,
# Salto KS and Brivo simulators and a Nexudus simulator at its documented limits, its picture
# (docs/bench/convergence.svg), the no-change resync at scale (peak memory), then one table of
# the figures against their goals (design §7, issue 14). PORTIER_BURST_WEBHOOKS / _RATE_TAPKEY /
# _RATE_SALTO / _RATE_BRIVO / _WORKERS / _NEXUDUS_LIMITED size the burst; PORTIER_RESYNC_PEOPLE the resync.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="${CARGO_TARGET_DIR:-target}"

cargo bench -p portier-shared --bench engine
burst=$(cargo run --release -q -p portier-testkit --example burst | sed -n 's/^BURST //p')
resync=$(cargo test --release -q -p portier-testkit --test resync_scale -- --ignored --nocapture | sed -n 's/^RESYNC //p')

python3 - "$target/criterion" "$burst" "$resync" <<'PY'
import json, sys, os
crit, burst, resync = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])

def mean_ns(group, name):
    with open(os.path.join(crit, group, name, "new", "estimates.json")) as f:
        return json.load(f)["mean"]["point_estimate"]

rows = []
def row(what, value, unit, goal, ok):
    rows.append((what, value, unit, goal, "yes" if ok else "NO"))

for name, label in [("nexudus_hmac", "verify Nexudus HMAC (1.5 KiB)"), ("nexudus_token", "verify Nexudus URL token"),
                    ("standard_webhooks", "verify Standard Webhooks (1.5 KiB)")]:
    per_s = 1e9 / mean_ns("verify", name)
    row(label, f"{per_s:,.0f}", "webhooks/s", "-", True)
plans = 60e9 / mean_ns("plan", "subject")
row("planning, one core", f"{plans:,.0f}", "subjects/min", ">= 100,000", plans >= 100_000)
ingress = 1e9 / mean_ns("ingress", "nexudus_embedded")
row("embedded ingress (verify+parse+enqueue)", f"{ingress:,.0f}", "webhooks/s", ">= 5,000", ingress >= 5_000)
b = burst
bottleneck = next(p for p in b["providers"] if p["name"] == b["bottleneck"])
nx = b["nexudus"]
row(f"burst {b['webhooks']} webhooks x 3 providers: time / bound (set by {b['bound_by']})",
    f"{b['ratio_to_bound']:.3f}", f"({b['converged_s']:.1f} s / {b['bound_s']:.1f} s; bound = max of each API's C/R, Nexudus reads at its limits {nx['bound_s']:.1f} s)",
    "<= 1.2", b["ratio_to_bound"] <= 1.2)
limited = "at 1/100 ms, 120/min" if b["nexudus_limited"] else "LIFTED"
row("Nexudus reads per change, lone webhook", str(nx["lone_reads"]), "(pass-only tenant)", "<= 1", nx["lone_reads"] <= 1)
row("Nexudus reads per change, burst", f"{nx['reads_per_change']:.3f}", f"({nx['reads']} reads, Nexudus {limited})", "<= 0.1", nx["reads_per_change"] <= 0.1)
row("Nexudus throttled (409)", str(nx["throttled"]), "", "0", nx["throttled"] == 0)
row("Tapkey calls per new grant, burst", f"{b['tapkey_calls_per_grant']:.3f}", "(contact inline)", "<= 1.1", b["tapkey_calls_per_grant"] <= 1.1)
row("Tapkey calls per new grant, lone webhook", str(nx["lone_tapkey_calls"]), "", "<= 1.1", nx["lone_tapkey_calls"] <= 1.1)
row("Salto KS membership calls per change, burst", f"{b['salto_membership_calls_per_change']:.3f}", "(shared PATCH {add_ids, remove_ids})", "< 0.5", b["salto_membership_calls_per_change"] < 0.5)
row("burst: sustained calls / R (bottleneck)", f"{b['sustained_ratio']:.3f}", "", ">= 0.9", b["sustained_ratio"] >= 0.9)
for p in b["providers"]:
    n = p["name"]
    row(f"burst: {n} calls at R = {p['rate_limit_per_s']:g}/s", str(p["calls"]), f"(C/R {p['bound_s']:.1f} s)", "-", True)
    row(f"burst: {n} throttled (429 / Over Qps)", str(p["throttled"]), "", "0", p["throttled"] == 0)
    if n == "salto_ks":
        # People joining one group together share its PATCH: well below one per change.
        row(f"{n}: access writes per changed entitlement", f"{p['access_writes_per_change']:.3f}", "(shared PATCH)", "< 0.5", p["access_writes_per_change"] < 0.5)
    else:
        row(f"{n}: access writes per changed entitlement", f"{p['access_writes_per_change']:g}", "", "1", p["access_writes_per_change"] == 1)
    what = {"tapkey": "(contact: inline in the grant)", "salto_ks": "(user)", "brivo": "(user + mobile-pass invitation)"}.get(n, "")
    row(f"{n}: person writes per new person", f"{p['person_writes_per_change']:g}", what, "once, then cached", True)
    row(f"{n}: no-change resync writes", str(p["resync_writes"]), f"({p['resync_calls']} listing calls)", "0", p["resync_writes"] == 0)
row("no-change resync: Nexudus writes", str(b["resync_source_writes"]), "", "0", b["resync_source_writes"] == 0)
r = resync
row(f"no-change resync of {r['people']:,} people: writes", str(r["writes"]),
    f"(listing only: {r['nexudus_calls']} Nexudus, {r['tapkey_calls']} Tapkey calls; {r['seconds']:.1f} s)", "0", r["writes"] == 0)
row(f"no-change resync of {r['people']:,} people: peak RSS", f"{r['peak_rss_mb']:.0f} MB",
    f"(whole process, simulators included; {r['rss_before_mb']:.0f} MB before)", "< 200 MB", r["peak_rss_mb"] < 200)

w = [max(len(str(r[i])) for r in rows + [("figure", "value", "unit", "goal", "met")]) for i in range(5)]
line = lambda r: "| " + " | ".join(str(c).ljust(w[i]) for i, c in enumerate(r)) + " |"
print(line(("figure", "value", "unit", "goal", "met")))
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for r in rows:
    print(line(r))
print("\npicture: docs/bench/convergence.svg")
PY

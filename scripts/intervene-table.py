#!/usr/bin/env python3
"""Prints, from the committed tables, how often the intervention names the planted cause of each planted-cause
benchmark's failures (issue 50's done-when: at least 90% of the failures the cause accounts for), and per clustering
how many clusters have a tested cause, and how pure the failures are when grouped by their tested cause.
Usage: scripts/intervene-table.py (from the repository root)."""
import collections
import csv
import json
import pathlib

BENCHMARKS = [("signs", "recovery"), ("eyes", "recovery-eyes"), ("faces", "recovery-faces"),
              ("pairs", "recovery-pairs"), ("Fashion-MNIST corrupted", "recovery-fashion")]

print("| benchmark | planted cause (parameters) | failing | named by the intervention (share) | of them exactly"
      " | attributable to the cause | named ÷ attributable |")
print("|---|---|---|---|---|---|---|")
for label, name in BENCHMARKS:
    tables = pathlib.Path("reports") / name / "tables"
    if not (tables / "intervene-summary.json").exists():
        continue
    summary = json.loads((tables / "intervene-summary.json").read_text())
    exposure = json.loads((tables / "recovery-hudd.json").read_text())["exposure"]["causes"]
    attributable = {c["cause"]: c["failing"] * c["attributable"] for c in exposure}
    for s in summary.get("scenarios", []):
        a = attributable[s["scenario"]]
        print(f"| {label} | {s['scenario']} ({', '.join(s['planted'])}) | {s['images']} | {s['named']} "
              f"({s['named'] / s['images']:.2f}) | {s['exactly']} | {a:.0f} | {s['named'] / a:.2f} |")
print()
print("| benchmark | failing | fixed by one restoration | only by a pair | by none | sham fixes |"
      " clusters with a tested cause (HUDD's; generic) |")
print("|---|---|---|---|---|---|---|")
for label, name in BENCHMARKS:
    path = pathlib.Path("reports") / name / "tables" / "intervene-summary.json"
    if not path.exists():
        continue
    s = json.loads(path.read_text())
    per = []
    for clustering in ["cluster", "cluster-generic"]:
        cs = [c for c in s["clusters"] if c["clustering"] == clustering]
        tested = [c for c in cs if c["causes"]]
        per.append(f"{len(tested)} of {len(cs)} ({sum(c['images'] for c in tested)} images)")
    print(f"| {label} | {s['assessed']} | {s['by_single']} | {s['by_pair']} | {s['unexplained']} | "
          f"{s['sham']['rate']:.1%} | {'; '.join(per)} |")
print()
print("| benchmark | failures | groups | fixed by none (one more group) | purity | coverage | the generic clusters' purity |")
print("|---|---|---|---|---|---|---|")
for label, name in BENCHMARKS:
    tables = pathlib.Path("reports") / name / "tables"
    if not (tables / "intervene-images.csv").exists():
        continue
    # Every failure grouped by its tested cause (the restoration or pair that fixes it; those nothing fixes in one
    # group, which covers no cause), scored as `recovery` scores a clustering.
    planted = {c["cause"] for c in json.loads((tables / "recovery-hudd.json").read_text())["exposure"]["causes"]
               if c.get("planted", True) and c["cause"] not in ("clean", "nominal")}
    groups = {}
    for row in csv.DictReader((tables / "intervene-images.csv").open()):
        groups.setdefault(row["cause"], collections.Counter())[row["scenario"]] += 1
    total = sum(sum(g.values()) for g in groups.values())
    purity = sum(g.most_common(1)[0][1] for g in groups.values()) / total
    covered = {g.most_common(1)[0][0] for cause, g in groups.items() if cause} & planted
    generic = json.loads((tables / "recovery-generic.json").read_text())["purity"]
    print(f"| {label} | {total} | {len(groups)} | {sum(groups.get('', {}).values())} | {purity:.3f} | "
          f"{len(covered)} of {len(planted)} | {generic:.3f} |")

"""Per-k NT-variant comparison of a transplant run's result JSON (issue 19); validation-only selection.

Usage: python analyse.py RESULT.json [REFERENCE_RESULT.json [OUT.json]]. Prints, per k and NT variant, test accuracy
at the best-validation and the last fine-tuning epoch minus the best member's (pp, mean ± std over seeds, per seed),
the four goals, and the test accuracy of the variant chosen per seed by best-epoch validation accuracy; with a
reference, the rows of best member, ensemble, nt, avg and ot that differ from it by more than 1e-6."""
import json
import sys

import numpy as np

res = json.load(open(sys.argv[1]))
ref = json.load(open(sys.argv[2])) if len(sys.argv) > 2 else None
rows = res["rows"]
VARIANTS = ("nt", "nt_iterative", "nt_hierarchical")


def find(method, k, seed, rs=rows) -> dict | None:
    return next((r for r in rs if r["method"] == method and r["k"] == k and r["seed"] == seed), None)


def get(method, k, seed, rs=rows) -> dict:
    r = find(method, k, seed, rs)
    if r is None:
        raise KeyError(f"no row for method {method!r}, k = {k}, seed {seed}")
    return r


def ms(v):
    v = np.asarray(v, float)
    return f"{v.mean():+.2f} ± {v.std(ddof=1):.2f}"


out = {}
seeds = sorted({r["seed"] for r in rows})
for k in sorted({r["k"] for r in rows}):
    best = np.array([get("best_member", k, s)["test"] for s in seeds])
    avg = {key: np.array([get("avg", k, s)[key] for s in seeds]) for key in ("test_at_best_val", "test_before")}
    ot_ep = [get("ot", k, s)["epochs_to_best_member"] for s in seeds]
    inf = 99
    print(f"k = {k}: best member {100 * best.mean():.2f}; avg ft {100 * avg['test_at_best_val'].mean():.2f}, "
          f"before {100 * avg['test_before'].mean():.2f}; ot epochs {ot_ep}")
    present = [m for m in VARIANTS if find(m, k, seeds[0]) is not None]
    for m in present:
        rs = [get(m, k, s) for s in seeds]
        bv = np.array([r["test_at_best_val"] for r in rs])
        last = np.array([r["test_last"] for r in rs])
        before = np.array([r["test_before"] for r in rs])
        ep = [r["epochs_to_best_member"] for r in rs]
        goals = {"ft_ge_best_plus_0.3pp": bool(bv.mean() >= best.mean() + 0.003),
                 "last_ge_best_plus_0.3pp": bool(last.mean() >= best.mean() + 0.003),
                 "ft_ge_avg_ft": bool(bv.mean() >= avg["test_at_best_val"].mean()),
                 "before_gt_avg_before": bool(before.mean() > avg["test_before"].mean()),
                 "epochs_le_ot_every_seed": bool(all((a if a is not None else inf) <= (b if b is not None else inf)
                                                     for a, b in zip(ep, ot_ep)))}
        d_bv, d_last = 100 * (bv - best), 100 * (last - best)
        print(f"  {m:16s} best-val - best member {ms(d_bv)} pp (per seed {np.round(d_bv, 2).tolist()}), "
              f"last {ms(d_last)} pp; ft {100 * bv.mean():.2f}, before {100 * before.mean():.2f}, epochs {ep}; {goals}")
        out[f"k{k}_{m}"] = {"ft_minus_best_pp": d_bv.round(3).tolist(), "last_minus_best_pp": d_last.round(3).tolist(),
                            "ft_minus_best_pp_mean": round(float(d_bv.mean()), 3),
                            "ft_minus_best_pp_std": round(float(d_bv.std(ddof=1)), 3),
                            "last_minus_best_pp_mean": round(float(d_last.mean()), 3),
                            "last_minus_best_pp_std": round(float(d_last.std(ddof=1)), 3),
                            "test_at_best_val_mean": round(float(bv.mean()), 5),
                            "test_before_mean": round(float(before.mean()), 5),
                            "epochs_to_best_member": ep, **goals}
    # validation-only selection: per seed, the variant with the highest best-epoch validation accuracy
    pick = [max(present, key=lambda m: get(m, k, s)["val_best"]) for s in seeds]
    sel = np.array([get(m, k, s)["test_at_best_val"] for m, s in zip(pick, seeds)])
    sel_last = np.array([get(m, k, s)["test_last"] for m, s in zip(pick, seeds)])
    # one variant for all seeds: the highest mean best-epoch validation accuracy
    glob = max(present, key=lambda m: np.mean([get(m, k, s)["val_best"] for s in seeds]))
    print(f"  val-selected per seed {pick}: best-val - best member {ms(100 * (sel - best))} pp, "
          f"last {ms(100 * (sel_last - best))} pp; one variant by mean val: {glob}")
    out[f"k{k}_val_selected"] = {"per_seed_pick": pick, "ft_minus_best_pp": (100 * (sel - best)).round(3).tolist(),
                                 "ft_minus_best_pp_mean": round(float(100 * (sel - best).mean()), 3),
                                 "ft_ge_best_plus_0.3pp": bool(sel.mean() >= best.mean() + 0.003),
                                 "one_variant_by_mean_val": glob}
    if ref is not None:
        for m in ("best_member", "ensemble", "nt", "avg", "ot"):
            for s in seeds:
                a, b = get(m, k, s), get(m, k, s, ref["rows"])
                keys = [key for key in ("test", "val", "test_before", "test_last", "test_at_best_val", "val_best",
                                        "epochs_to_best_member") if key in a]
                # the reference JSON holds float32 accuracies (0.8863999843...), this one exact fractions (0.8864)
                diff = {key: (a[key], b[key]) for key in keys
                        if (a[key] is None) != (b[key] is None) or (a[key] is not None and abs(a[key] - b[key]) > 1e-6)}
                if diff:
                    print(f"  differs from reference: {m} seed {s}: {diff}")
                out.setdefault("reference_differences", []).extend(   # rows of the reference run that differ
                    [{"k": k, "method": m, "seed": s, "key": key, "this": v[0], "reference": v[1]}
                     for key, v in diff.items()])
if len(sys.argv) > 3:
    json.dump(out, open(sys.argv[3], "w"), indent=1)

#!/usr/bin/env python3
"""Validity report and SNR calibration of a replay run (`moba replay report RUN`, docs/replay.md).

Reads RUN/replay.csv, replay.h5, run.json, dump.h5 and RUN/analyze/ (`moba analyze` on the dump
of the same window) and writes RUN/report/:

  validity.csv        per configuration: real dNLL and output KL (bootstrap CIs over position
                      chunks) beside every proxy of `moba analyze` (coverage, oracle coverage,
                      -ln R, block recall, token recall, output error) and the replay's online
                      proxies (the same measured on the perturbed stream each layer really sees)
  paired.csv          dNLL(config) - dNLL(other) on the same positions, paired bootstrap CI: each
                      router against moba at the same (B, k), each B against its router's smallest
  rank_correlation.csv  Spearman rho across configurations, proxy vs real dNLL / KL
  per_position.csv    Spearman rho across positions per configuration, raw and with the
                      position trend removed (bucket means subtracted), vs KL, |dNLL| and dNLL
  calibration.csv     per layer, head and B: block-score noise vs the i.i.d. prediction
                      (inflation), SNR measured / model / calibrated, p_fail vs Phi(-SNR)
  calibration_slopes.csv  per layer and head: fitted slopes of log SNR and log inflation vs log B
  report.md           the tables, and what each number is
  plots/*.png         figures (needs python3-matplotlib; skipped with a note otherwise)

Only numpy and h5py (and matplotlib for the figures).
"""
import argparse
import csv
import json
import math
import os
import sys
import warnings

import numpy as np

warnings.filterwarnings("ignore", message="All-NaN slice", category=RuntimeWarning)
warnings.filterwarnings("ignore", message="Mean of empty slice", category=RuntimeWarning)

EXIT_INPUT = 2
PROXIES = (  # (column of summary/aggregate.csv, label, sign: +1 when larger means more loss)
    ("kl_mean", "-ln R (kl)", +1),
    ("coverage_mean", "coverage R", -1),
    ("block_recall_mean", "block recall", -1),
    ("token_recall_mean", "token recall", -1),
    ("output_rel_err_mean", "output error", +1),
)
ONLINE = (("online_kl_mean", "online -ln R", +1), ("online_coverage_mean", "online coverage", -1),
          ("online_out_err_mean", "online output error", +1))
TARGETS = (("dnll_mean", "dNLL"), ("kl_mean", "output KL"))
RANK_BOOT = 500  # bootstrap replicates of the across-configuration Spearman rho


class ReportError(Exception):
    pass


def phi(x):
    return 0.5 * math.erfc(-x / math.sqrt(2.0)) if math.isfinite(x) else (1.0 if x > 0 else 0.0)


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def read_csv(path):
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except OSError as e:
        raise ReportError("%s: %s" % (path, e.strerror))


def write_csv(path, header, rows):
    with open(path + ".tmp", "w") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            out = []
            for h in header:
                v = r.get(h, "")
                if isinstance(v, float):
                    v = "nan" if math.isnan(v) else "%.6g" % v
                out.append(str(v))
            f.write(",".join(out) + "\n")
    os.replace(path + ".tmp", path)


def rankdata(x):
    """Ranks 1..n, ties get their average rank."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(x.size)
    xs = x[order]
    i = 0
    while i < x.size:
        j = i
        while j + 1 < x.size and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    return ranks


def spearman(x, y):
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return math.nan
    rx, ry = rankdata(x[ok]), rankdata(y[ok])
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def detrend(x, t, width):
    """x minus the mean of x over its position bucket [i*width, (i+1)*width)."""
    x = np.asarray(x, dtype=np.float64).copy()
    b = np.asarray(t) // width
    for v in np.unique(b):
        m = b == v
        x[m] -= np.nanmean(x[m])
    return x


def fit_slope(xs, ys):
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    ok = np.isfinite(xs) & np.isfinite(ys) & (xs > 0) & (ys > 0)
    if ok.sum() < 2:
        return math.nan, math.nan
    slope, icpt = np.polyfit(np.log(xs[ok]), np.log(ys[ok]), 1)
    return float(slope), float(icpt)


def paired_bootstrap(a, b, chunk, n_boot, seed):
    d = np.asarray(a, float) - np.asarray(b, float)
    n_chunks = max(1, int(math.ceil(d.size / chunk)))
    sums = np.array([d[i * chunk:(i + 1) * chunk].sum() for i in range(n_chunks)])
    cnt = np.array([d[i * chunk:(i + 1) * chunk].size for i in range(n_chunks)], float)
    idx = np.random.default_rng(seed).integers(0, n_chunks, size=(n_boot, n_chunks))
    means = sums[idx].sum(1) / cnt[idx].sum(1)
    return float(d.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


# ---------------------------------------------------------------------------------------------


class Run:
    def __init__(self, d):
        self.dir = d
        try:
            with open(os.path.join(d, "run.json")) as f:
                self.run = json.load(f)
        except (OSError, ValueError) as e:
            raise ReportError("%s: not a replay run directory (run.json: %s)" % (d, e))
        if self.run.get("command") != "replay":
            raise ReportError("%s: run.json is not from moba replay" % d)
        self.rows = [r for r in read_csv(os.path.join(d, "replay.csv")) if not r["config"].startswith("dense_")]
        self.T = int(self.run["config"]["n_tokens"])
        self.layers = list(self.run["config"]["layers"])
        c = self.run["config"]
        self.chunk, self.n_boot, self.seed = int(c["chunk"]), int(c["bootstrap"]), int(c["seed"])
        import h5py
        self.h5 = h5py.File(os.path.join(d, "replay.h5"), "r")
        an = os.path.join(d, "analyze")
        self.analyze = an if os.path.isfile(os.path.join(an, "aggregate.csv")) else None
        self.agg, self.summary = {}, []
        if self.analyze:
            for r in read_csv(os.path.join(an, "aggregate.csv")):
                if r["scope"] == "overall":
                    self.agg[(r["router"], int(r["block_size"]), int(r["top_k"]))] = r
            self.summary = read_csv(os.path.join(an, "summary.csv"))

    def per_position(self, name):
        g = self.h5["configs/" + name]
        return g["dnll"][...], g["kl"][...]


def analyze_positions(run, router, B, k):
    """Per query position, over analysed layers and heads: sum of -ln R, mean coverage, mean
    output error, mean block recall (NaN-aware), from analyze/analysis.h5 (needs per-position
    arrays of every head: --positions metrics --keep-heads all, as replay runs it)."""
    import h5py
    path = os.path.join(run.analyze, "analysis.h5")
    out = {"sum_kl": np.zeros(run.T), "coverage": np.zeros(run.T), "out_err": np.zeros(run.T),
           "block_recall": np.zeros(run.T)}
    n, nr = 0, np.zeros(run.T)
    with h5py.File(path, "r") as f:
        for l in f["layers"]:
            for h in f["layers/%s/heads" % l]:
                key = "layers/%s/heads/%s/B%d_k%d/%s" % (l, h, B, k, router)
                if key not in f or "kl" not in f[key]:
                    continue
                g = f[key]
                out["sum_kl"] += g["kl"][...]
                out["coverage"] += g["coverage"][...]
                out["out_err"] += g["output_rel_err"][...]
                br = g["block_recall"][...]
                out["block_recall"] += np.where(np.isfinite(br), br, 0)
                nr += np.isfinite(br)
                n += 1
    if n == 0:
        return None
    out["coverage"] /= n
    out["out_err"] /= n
    out["block_recall"] = np.where(nr > 0, out["block_recall"] / np.maximum(nr, 1), np.nan)
    return out


def online_positions(run, name):
    g = run.h5["configs/" + name]
    cov = np.stack([g["layers/%d/coverage" % l][...] for l in run.layers]).astype(np.float64)
    err = np.stack([g["layers/%d/out_err" % l][...] for l in run.layers]).astype(np.float64)
    return {"sum_kl": -np.log(np.maximum(cov, 1e-300)).sum(axis=(0, 1)), "out_err": err.mean(axis=(0, 1))}


# ---------------------------------------------------------------------------------------------
# SNR calibration


def block_noise(s, B):
    """Within-query block-score noise of one head from its token scores s [T, T] = q . k^T
    (unscaled, float64 from the dump's stored values): over queries with c = floor(t/B) >= 3 routable blocks, the signal block b* holds
    the top routable key (ties: larger j); returns (mean over queries of the variance of the
    block means s_b = mean_{j in b} q.k_j over the other routable blocks, mean of sigma_t^2 =
    the variance of the token scores outside b*, number of queries). Under i.i.d. token noise
    the first is sigma^2 / B."""
    T = s.shape[0]
    nb_all = T // B
    t = np.arange(T)
    c = t // B
    rows = np.flatnonzero(c >= 3)
    if rows.size == 0:
        return math.nan, math.nan, 0
    vb_sum, s2_sum = 0.0, 0.0
    for r0 in range(0, rows.size, 512):
        r = rows[r0:r0 + 512]
        sr = s[r, :nb_all * B]
        cr = c[r]
        key_ok = np.arange(nb_all * B)[None, :] < (cr * B)[:, None]
        masked = np.where(key_ok, sr, -np.inf)
        jstar = nb_all * B - 1 - np.argmax(masked[:, ::-1], axis=1)      # ties: larger j
        bstar = jstar // B
        blocks = sr.reshape(r.size, nb_all, B)
        bsum = blocks.sum(-1)                              # [rows, nb]
        bsq = (blocks * blocks).sum(-1)
        bmean = bsum / B
        bidx = np.arange(nb_all)[None, :]
        noise_b = (bidx < cr[:, None]) & (bidx != bstar[:, None])
        nbn = noise_b.sum(1)
        mb = np.where(noise_b, bmean, 0).sum(1) / nbn
        vb = np.where(noise_b, (bmean - mb[:, None]) ** 2, 0).sum(1) / (nbn - 1)
        ntok = nbn * B
        st = np.where(noise_b, bsum, 0).sum(1)
        st2 = np.where(noise_b, bsq, 0).sum(1)
        var_tok = (st2 - st * st / ntok) / (ntok - 1)
        vb_sum += vb.sum()
        s2_sum += var_tok.sum()
    return vb_sum / rows.size, s2_sum / rows.size, int(rows.size)


def calibration(run, quiet):
    """Per layer, head, B (router moba): rows of calibration.csv, and the slope rows."""
    if not run.summary:
        return [], []
    import h5py

    rows = []
    by_head = {}
    for r in run.summary:
        if r["router"] != "moba" or r["scope"] != "head":
            continue
        key = (int(r["layer"]), int(r["head"]), int(r["block_size"]))
        if key in by_head:      # SNR is per head and B (equal across k)
            continue
        by_head[key] = r
    dump = os.path.join(run.dir, "dump.h5")
    with h5py.File(dump, "r") as f:
        def load(l, name):
            ds = f["layers/%d/%s" % (l, name)]
            a = ds[...]
            if ds.attrs.get("dtype", "") in ("bfloat16", b"bfloat16"):
                a = (a.astype(np.uint32) << 16).view(np.float32)
            return a.astype(np.float64)
        cache, scores = {}, {}
        for (l, h, B), r in sorted(by_head.items()):
            if l not in cache:
                cache = {l: (load(l, "q"), load(l, "k"))}
            q, k = cache[l]
            if (l, h) not in scores:
                scores = {(l, h): q[h] @ k[h // (q.shape[0] // k.shape[0])].T}   # [T, T] unscaled
            vb, s2, nq = block_noise(scores[(l, h)], B)
            sigma, std_d = num(r["sigma"]), num(r["snr_std_d"])
            snr_emp, snr_th, dme = num(r["snr_emp"]), num(r["snr_theory"]), num(r["delta_mu_eff"])
            pred_d = sigma * math.sqrt(2.0 / B)
            infl = std_d / pred_d if pred_d > 0 else math.nan
            infl_w = math.sqrt(vb / (s2 / B)) if s2 > 0 and vb >= 0 else math.nan
            snr_cal = dme / (B * std_d) if std_d > 0 else math.nan
            rows.append({"layer": l, "head": h, "block_size": B, "sigma": sigma, "std_d": std_d,
                         "std_d_iid": pred_d, "inflation": infl, "inflation_within": infl_w,
                         "rho_within": (infl_w ** 2 - 1) / (B - 1) if B > 1 and math.isfinite(infl_w) else math.nan,
                         "snr_emp": snr_emp, "snr_theory": snr_th, "snr_calibrated": snr_cal,
                         "p_fail_emp": num(r["p_fail_emp"]), "phi_snr_emp": phi(-snr_emp),
                         "phi_snr_theory": phi(-snr_th), "phi_snr_calibrated": phi(-snr_cal),
                         "snr_queries": int(num(r["snr_queries"])), "noise_queries": nq})
    # leave-one-B-out: the inflation's power law in B fitted on the other block sizes predicts
    # the noise, hence the SNR, at the held-out B.
    slopes = []
    heads = sorted({(r["layer"], r["head"]) for r in rows})
    for lh in heads:
        rs = [r for r in rows if (r["layer"], r["head"]) == lh]
        bs = [r["block_size"] for r in rs]
        for r in rs:
            others = [o for o in rs if o is not r]
            sl, ic = fit_slope([o["block_size"] for o in others], [o["inflation"] for o in others])
            f_pred = math.exp(ic + sl * math.log(r["block_size"])) if math.isfinite(sl) else math.nan
            r["snr_predicted_loo"] = r["snr_theory"] / f_pred if f_pred and math.isfinite(f_pred) else math.nan
        s_emp, _ = fit_slope(bs, [r["snr_emp"] for r in rs])
        s_th, _ = fit_slope(bs, [r["snr_theory"] for r in rs])
        s_inf, _ = fit_slope(bs, [r["inflation"] for r in rs])
        s_dme, _ = fit_slope(bs, [r["snr_emp"] * r["std_d"] * r["block_size"] for r in rs])
        slopes.append({"layer": lh[0], "head": lh[1], "n_block_sizes": len(bs), "slope_snr_emp": s_emp,
                       "slope_snr_theory": s_th, "slope_inflation": s_inf, "slope_delta_mu_eff": s_dme})
    return rows, slopes


# ---------------------------------------------------------------------------------------------
# Figures


def figures(run, out_dir, valid, pos_rows, cal_rows, slope_rows):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (Debian: python3-matplotlib): no figures"
    matplotlib.rcParams.update({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 8,
                                "savefig.dpi": 110})
    os.makedirs(out_dir, exist_ok=True)
    meta = {"Software": None}
    written = []
    routers = sorted({r["router"] for r in valid}, key=lambda x: ("moba", "moba-kconv", "oracle").index(x))
    colors = {"moba": "C0", "moba-kconv": "C2", "oracle": "C3"}

    def save(fig, stem):
        p = os.path.join(out_dir, stem + ".png")
        fig.savefig(p, metadata=meta)
        plt.close(fig)
        written.append(stem + ".png")

    # 1. real dNLL and KL by B
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for ax, (col, label) in zip(axs, TARGETS):
        for ri, rt in enumerate(routers):
            rs = sorted([r for r in valid if r["router"] == rt], key=lambda r: (r["block_size"], r["top_k"]))
            x = np.array([r["block_size"] for r in rs], float) * (1 + 0.04 * (ri - 1))
            y = np.array([r[col] for r in rs])
            lo = np.array([r[col.replace("_mean", "_lo")] for r in rs])
            hi = np.array([r[col.replace("_mean", "_hi")] for r in rs])
            ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", capsize=3, color=colors.get(rt), label=rt)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("block size B")
        ax.set_ylabel(label + " (nats/token)")
        ax.set_title("real %s, mean over positions with a choice, 95%% CI" % label)
        if col == "dnll_mean":
            ax.axhline(0, color="k", lw=0.6)
        ax.legend()
    save(fig, "real_loss_by_B")

    # 2. proxies vs real, across configurations
    fig, axs = plt.subplots(2, len(PROXIES), figsize=(3.2 * len(PROXIES), 6.4), layout="constrained", squeeze=False)
    for i, (col, label) in enumerate(TARGETS):
        for j, (pcol, plabel, _) in enumerate(PROXIES):
            ax = axs[i, j]
            for rt in routers:
                rs = [r for r in valid if r["router"] == rt]
                ax.scatter([r.get("analyze_" + pcol, math.nan) for r in rs], [r[col] for r in rs], color=colors.get(rt),
                           label=rt, s=18)
                for r in rs:
                    ax.annotate(str(r["block_size"]), (r.get("analyze_" + pcol, math.nan), r[col]), fontsize=6)
            rho = spearman([r.get("analyze_" + pcol, math.nan) for r in valid], [r[col] for r in valid])
            ax.set_title("%s  (Spearman %.2f)" % (plabel, rho), fontsize=8)
            ax.set_xlabel(plabel + " (moba analyze)")
            ax.set_ylabel(label)
            if i == 0 and j == 0:
                ax.legend()
    save(fig, "proxies_vs_real")

    # 3. per position: binned -ln R sum vs KL and |dNLL| (moba configurations)
    if pos_rows:
        mcfg = [r for r in valid if r["router"] == "moba"]
        fig, axs = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
        for r in mcfg:
            name = r["config"]
            pp = run._pos_cache.get(name)
            if pp is None:
                continue
            x, kl, adn = pp
            order = np.argsort(x)
            bins = np.array_split(order, 20)
            xm = [x[b].mean() for b in bins]
            axs[0].plot(xm, [kl[b].mean() for b in bins], marker=".", label="B=%d" % r["block_size"])
            axs[1].plot(xm, [adn[b].mean() for b in bins], marker=".", label="B=%d" % r["block_size"])
        for ax, lab in zip(axs, ("output KL", "|dNLL|")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("sum over layers and heads of -ln R at the position (moba analyze)")
            ax.set_ylabel("mean %s in the bin" % lab)
            ax.set_title("per position, moba: 20 quantile bins of the proxy")
            ax.legend()
        save(fig, "per_position_moba")

    # 4. SNR vs B: measured, model, calibrated (median over heads) and the inflation
    if cal_rows:
        bs = sorted({r["block_size"] for r in cal_rows})
        fig, axs = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
        for col, lab, st in (("snr_emp", "measured", "-o"), ("snr_theory", "model (i.i.d.)", "--s"),
                             ("snr_predicted_loo", "model x inflation (leave-one-B-out)", ":^")):
            axs[0].plot(bs, [np.nanmedian([r[col] for r in cal_rows if r["block_size"] == B]) for B in bs], st, label=lab)
        axs[0].set_xscale("log", base=2)
        axs[0].set_yscale("log")
        axs[0].set_xlabel("B")
        axs[0].set_ylabel("routing SNR (median over heads)")
        axs[0].legend()
        for col, lab in (("inflation", "std(D) / (sigma sqrt(2/B))"), ("inflation_within", "within-query block noise")):
            vals = [[r[col] for r in cal_rows if r["block_size"] == B] for B in bs]
            axs[1].plot(bs, [np.nanmedian(v) for v in vals], "-o", label=lab + " (median)")
            axs[1].fill_between(bs, [np.nanquantile(v, 0.1) for v in vals], [np.nanquantile(v, 0.9) for v in vals],
                                alpha=0.15)
        axs[1].set_xscale("log", base=2)
        axs[1].set_xlabel("B")
        axs[1].set_ylabel("noise inflation over i.i.d. (10-90% band)")
        axs[1].axhline(1, color="k", lw=0.6)
        axs[1].legend()
        axs[2].scatter([r["phi_snr_theory"] for r in cal_rows], [r["p_fail_emp"] for r in cal_rows], s=8,
                       label="Phi(-SNR model)")
        axs[2].scatter([r["phi_snr_emp"] for r in cal_rows], [r["p_fail_emp"] for r in cal_rows], s=8,
                       label="Phi(-SNR measured)")
        axs[2].scatter([r["phi_snr_calibrated"] for r in cal_rows], [r["p_fail_emp"] for r in cal_rows], s=8,
                       label="Phi(-SNR calibrated)")
        axs[2].plot([0, 0.5], [0, 0.5], "k", lw=0.6)
        axs[2].set_xlabel("predicted pairwise p_fail")
        axs[2].set_ylabel("measured p_fail (P(D < 0))")
        axs[2].legend()
        save(fig, "snr_calibration")
    return "figures: " + ", ".join(written)


# ---------------------------------------------------------------------------------------------


def fmt(v, digits=4):
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, int):
        return str(v)
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4):
        return "%.*e" % (digits - 2, v)
    return "%.*g" % (digits, v)


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        out.append("| " + " | ".join(fmt(v) for v in r) + " |")
    return "\n".join(out)


def build(run_dir, quiet=False, detrend_width=256):
    run = Run(run_dir)
    out = os.path.join(run_dir, "report")
    os.makedirs(out, exist_ok=True)
    valid = []
    for r in run.rows:
        v = {"config": r["config"], "router": r["router"], "block_size": int(r["block_size"]), "top_k": int(r["top_k"])}
        for c in ("n_choice", "dnll_mean", "dnll_lo", "dnll_hi", "kl_mean", "kl_lo", "kl_hi", "abs_dnll_mean",
                  "dnll_pos_share", "online_coverage_mean", "online_kl_mean", "online_out_err_mean"):
            v[c] = num(r[c])
        a = run.agg.get((v["router"], v["block_size"], v["top_k"]))
        for c in ("coverage_mean", "oracle_coverage_mean", "kl_mean", "block_recall_mean", "token_recall_mean",
                  "output_rel_err_mean", "sparsity_mean", "snr_emp", "p_fail_emp"):
            v["analyze_" + c] = num(a[c]) if a else math.nan
        valid.append(v)
    vcols = list(valid[0]) if valid else []
    write_csv(os.path.join(out, "validity.csv"), vcols, valid)

    # paired differences against moba at the same (B, k)
    paired = []
    for v in valid:
        if v["router"] == "moba":
            continue
        base = "moba_B%d_k%d" % (v["block_size"], v["top_k"])
        if "configs/" + base not in run.h5:
            continue
        a, _ = run.per_position(v["config"])
        b, _ = run.per_position(base)
        first = v["top_k"] * v["block_size"]
        m, lo, hi = paired_bootstrap(a[first:], b[first:], run.chunk, run.n_boot, run.seed)
        paired.append({"config": v["config"], "versus": base, "block_size": v["block_size"], "top_k": v["top_k"],
                       "ddnll_mean": m, "ddnll_lo": lo, "ddnll_hi": hi})
    # ... and against the smallest B of the same router (positions with a choice in both)
    for v in valid:
        same = [w for w in valid if w["router"] == v["router"]]
        base = min(same, key=lambda w: (w["block_size"], w["top_k"]))
        if base is v:
            continue
        a, _ = run.per_position(v["config"])
        b, _ = run.per_position(base["config"])
        first = max(v["top_k"] * v["block_size"], base["top_k"] * base["block_size"])
        m, lo, hi = paired_bootstrap(a[first:], b[first:], run.chunk, run.n_boot, run.seed)
        paired.append({"config": v["config"], "versus": base["config"], "block_size": v["block_size"],
                       "top_k": v["top_k"], "ddnll_mean": m, "ddnll_lo": lo, "ddnll_hi": hi})
    write_csv(os.path.join(out, "paired.csv"), ["config", "versus", "block_size", "top_k", "ddnll_mean", "ddnll_lo",
                                                "ddnll_hi"], paired)

    # rank correlation across configurations, with a bootstrap of the real side: the same
    # resampled position chunks (absolute position // chunk) for every configuration
    n_chunks = int(math.ceil((run.T - 1) / run.chunk))
    chunk_of = np.arange(run.T - 1) // run.chunk
    boot_idx = np.random.default_rng(run.seed).integers(0, n_chunks, size=(RANK_BOOT, n_chunks))
    boot = {}
    for v in valid:
        dnll, kl = run.per_position(v["config"])
        ok = np.arange(run.T - 1) >= v["top_k"] * v["block_size"]
        cnt = np.bincount(chunk_of[ok], minlength=n_chunks).astype(float)
        for tcol, arr in (("dnll_mean", dnll), ("kl_mean", kl)):
            sums = np.bincount(chunk_of[ok], weights=arr[ok], minlength=n_chunks)
            with np.errstate(invalid="ignore", divide="ignore"):
                boot[(v["config"], tcol)] = sums[boot_idx].sum(1) / cnt[boot_idx].sum(1)
    rank_rows = []
    groups = [("all", valid)] + [(rt, [v for v in valid if v["router"] == rt])
                                 for rt in sorted({v["router"] for v in valid})]
    for gname, vs in groups:
        for pcol, plabel, sign in PROXIES + ONLINE:
            src = "analyze_" + pcol if not pcol.startswith("online") else pcol
            for tcol, tlabel in TARGETS:
                px = [v[src] for v in vs]
                rho = spearman(px, [v[tcol] for v in vs])
                rb = np.array([spearman(px, [boot[(v["config"], tcol)][i] for v in vs]) for i in range(RANK_BOOT)])
                rb = sign * rb[np.isfinite(rb)]
                lo, hi = (float(np.quantile(rb, 0.025)), float(np.quantile(rb, 0.975))) if rb.size else (math.nan,) * 2
                rank_rows.append({"configs": gname, "n": len(vs), "proxy": plabel, "target": tlabel, "spearman": rho,
                                  "agreement": sign * rho if math.isfinite(rho) else math.nan,
                                  "agreement_lo": lo, "agreement_hi": hi})
    write_csv(os.path.join(out, "rank_correlation.csv"), ["configs", "n", "proxy", "target", "spearman", "agreement",
                                                          "agreement_lo", "agreement_hi"], rank_rows)

    # per position
    pos_rows = []
    run._pos_cache = {}
    t_all = np.arange(run.T - 1)
    for v in valid:
        dnll, kl = run.per_position(v["config"])
        first = v["top_k"] * v["block_size"]
        sel = t_all >= first
        prox = {}
        if run.analyze:
            ap = analyze_positions(run, v["router"], v["block_size"], v["top_k"])
            if ap:
                prox.update({"analyze -ln R (sum)": ap["sum_kl"][:-1], "analyze coverage": -ap["coverage"][:-1],
                             "analyze output error": ap["out_err"][:-1],
                             "analyze block recall": -ap["block_recall"][:-1]})
                run._pos_cache[v["config"]] = (ap["sum_kl"][:-1][sel], kl[sel], np.abs(dnll[sel]))
        op = online_positions(run, v["config"])
        prox.update({"online -ln R (sum)": op["sum_kl"][:-1], "online output error": op["out_err"][:-1]})
        targets = {"output KL": kl, "|dNLL|": np.abs(dnll), "dNLL": dnll}
        for pname, px in prox.items():
            for tname, ty in targets.items():
                x, y, t = px[sel], ty[sel], t_all[sel]
                pos_rows.append({"config": v["config"], "router": v["router"], "block_size": v["block_size"],
                                 "top_k": v["top_k"], "proxy": pname, "target": tname, "n": int(sel.sum()),
                                 "spearman_raw": spearman(x, y),
                                 "spearman_detrended": spearman(detrend(x, t, detrend_width),
                                                                detrend(y, t, detrend_width))})
    write_csv(os.path.join(out, "per_position.csv"), ["config", "router", "block_size", "top_k", "proxy", "target", "n",
                                                      "spearman_raw", "spearman_detrended"], pos_rows)

    cal_rows, slope_rows = calibration(run, quiet) if run.analyze else ([], [])
    ccols = ["layer", "head", "block_size", "sigma", "std_d", "std_d_iid", "inflation", "inflation_within",
             "rho_within", "snr_emp", "snr_theory", "snr_calibrated", "snr_predicted_loo", "p_fail_emp",
             "phi_snr_emp", "phi_snr_theory", "phi_snr_calibrated", "snr_queries", "noise_queries"]
    write_csv(os.path.join(out, "calibration.csv"), ccols, cal_rows)
    write_csv(os.path.join(out, "calibration_slopes.csv"), ["layer", "head", "n_block_sizes", "slope_snr_emp",
                                                            "slope_snr_theory", "slope_inflation",
                                                            "slope_delta_mu_eff"], slope_rows)
    fig_note = figures(run, os.path.join(out, "plots"), valid, pos_rows, cal_rows, slope_rows)
    write_markdown(run, out, valid, paired, rank_rows, pos_rows, cal_rows, slope_rows, fig_note, detrend_width)
    run.h5.close()
    if not quiet:
        print("report: %s (%s)" % (out, fig_note), file=sys.stderr)
    return out


def write_markdown(run, out, valid, paired, rank_rows, pos_rows, cal_rows, slope_rows, fig_note, detrend_width):
    rj = run.run
    L = []
    L.append("# Replay validity report\n")
    inp = rj["input"]
    L.append("Model `%s` (sha256 %s), %d tokens (token ids sha256 %s), MoBA in layers %s; dump `dump.h5` "
             "(sha256 %s). moba git %s.\n" % (
                 os.path.basename(inp["model"]["path"]), inp["model"].get("sha256", "n/a")[:16], run.T,
                 inp["token_ids_sha256"][:16], ",".join(map(str, run.layers)), inp["dump"]["sha256"][:16],
                 rj.get("git_commit", "?")[:12]))
    ch = rj["checks"]
    L.append("## Acceptance checks\n")
    fp = ch["full_vs_plain"]
    L.append("- full-attention replay vs the plain forward: mean NLL %.8f vs %.8f, |diff| %.2e (tolerance %g): %s"
             % (fp["nll_replay_full"], fp["nll_plain"], fp["abs_diff"], fp["tolerance"], "pass" if fp["pass"] else "FAIL"))
    if "dense" in ch:
        d = ch["dense"]
        L.append("- %s (k·B ≥ T): final states identical to full attention: %s, max |dNLL| %g, max KL %g: %s"
                 % (d["config"], d["identical_final_states"], d["max_abs_dnll"], d["max_kl"],
                    "pass" if d["pass"] else "FAIL"))
    rc = ch.get("route_layer0", {})
    if "configs" in rc:
        for c in rc["configs"]:
            L.append("- layer-0 selections of %s = `moba route` on the dump: %d of %d rows differ%s: %s"
                     % (c["config"], c["mismatched_rows"], c["rows"],
                        " (%d of them oracle mass ties)" % c["mismatched_near_ties"] if c["mismatched_near_ties"] else "",
                        c.get("note") or ("pass" if c["pass"] else "FAIL")))
    else:
        L.append("- layer-0 route check: %s" % rc.get("skipped", "not run"))
    L.append("")
    L.append("## Real loss beside the proxies (per configuration)\n")
    L.append("Means over prediction positions with a choice (t ≥ k·B); real dNLL and output KL with 95%% "
             "bootstrap CIs over chunks of %d positions (%d resamples). Proxies: `moba analyze` on the dump "
             "(unperturbed stream, overall means over layers and heads) and the replay's online -ln R "
             "(the stream each layer really sees).\n" % (run.chunk, run.n_boot))
    hdr = ["config", "dNLL", "dNLL 95% CI", "output KL", "KL 95% CI", "dNLL>0 share", "coverage", "oracle cov.",
           "-ln R", "block recall", "output err", "online -ln R"]
    L.append(md_table(hdr, [[v["config"], v["dnll_mean"], "[%s, %s]" % (fmt(v["dnll_lo"]), fmt(v["dnll_hi"])),
                             v["kl_mean"], "[%s, %s]" % (fmt(v["kl_lo"]), fmt(v["kl_hi"])), v["dnll_pos_share"],
                             v["analyze_coverage_mean"], v["analyze_oracle_coverage_mean"], v["analyze_kl_mean"],
                             v["analyze_block_recall_mean"], v["analyze_output_rel_err_mean"], v["online_kl_mean"]]
                            for v in valid]))
    if paired:
        L.append("\nPaired differences (same positions, CI by the same chunk bootstrap): each router against moba "
                 "at the same (B, k), and each configuration against its router's smallest B:\n")
        L.append(md_table(["config", "vs", "dNLL − dNLL(vs)", "95% CI"],
                          [[p["config"], p["versus"], p["ddnll_mean"], "[%s, %s]" % (fmt(p["ddnll_lo"]), fmt(p["ddnll_hi"]))]
                           for p in paired]))
    L.append("\n## Do the proxies rank configurations as the real loss does?\n")
    L.append("Spearman ρ across configurations; `agreement` = ρ signed so that +1 means the proxy orders "
             "configurations exactly as the real loss (coverage and recall are better when larger); in brackets "
             "the 95%% interval when the real loss is resampled by the position-chunk bootstrap (%d replicates, "
             "the same chunks for every configuration).\n" % RANK_BOOT)

    def cell(g, p, t):
        r = next(r for r in rank_rows if (r["configs"], r["proxy"], r["target"]) == (g, p, t))
        return "%s [%s, %s]" % (fmt(r["agreement"], 3), fmt(r["agreement_lo"], 3), fmt(r["agreement_hi"], 3))
    L.append(md_table(["configs", "n", "proxy", "vs dNLL", "vs output KL"],
                      [[g, n, p, cell(g, p, "dNLL"), cell(g, p, "output KL")]
                       for g, n, p in dict.fromkeys((r["configs"], r["n"], r["proxy"]) for r in rank_rows)]))
    L.append("\n## Per position\n")
    L.append("Spearman ρ over the positions with a choice, per configuration: raw, and with the position trend "
             "removed (each series minus its mean over buckets of %d positions). Median over configurations "
             "(min … max).\n" % detrend_width)
    keys = list(dict.fromkeys((r["proxy"], r["target"]) for r in pos_rows))
    tab = []
    for p, t in keys:
        rs = [r for r in pos_rows if (r["proxy"], r["target"]) == (p, t)]
        raw = [r["spearman_raw"] for r in rs]
        det = [r["spearman_detrended"] for r in rs]
        tab.append([p, t, "%s (%s … %s)" % (fmt(float(np.nanmedian(raw))), fmt(float(np.nanmin(raw))), fmt(float(np.nanmax(raw)))),
                    "%s (%s … %s)" % (fmt(float(np.nanmedian(det))), fmt(float(np.nanmin(det))), fmt(float(np.nanmax(det))))])
    L.append(md_table(["proxy", "target", "ρ raw", "ρ detrended"], tab))
    if cal_rows:
        L.append("\n## SNR calibration (router moba, from analyze/summary.csv and the dump)\n")
        L.append("Per head and B: `inflation` = measured std(D) / the i.i.d. prediction σ·sqrt(2/B); "
                 "`within` = within-query std of the non-signal block means / (σ_t/sqrt(B)) (own numpy on "
                 "the dump), `ρ_within` = (within² − 1)/(B − 1), the mean intra-block correlation of the "
                 "token-score noise it implies; SNR measured (mean(D)/std(D)), model (Δμ_eff/(σ·sqrt(2B))), "
                 "calibrated (Δμ_eff/(B·std(D)): the model's signal with the measured noise) and predicted "
                 "leave-one-B-out (model / the inflation's power law fitted on the other B). Medians over "
                 "heads.\n")
        bs = sorted({r["block_size"] for r in cal_rows})
        tab = []
        for B in bs:
            rs = [r for r in cal_rows if r["block_size"] == B]

            def med(c):
                return float(np.nanmedian([r[c] for r in rs]))

            def q(c, a):
                return float(np.nanquantile([r[c] for r in rs], a))
            tab.append([B, len(rs), "%s [%s, %s]" % (fmt(med("inflation"), 3), fmt(q("inflation", 0.1), 3), fmt(q("inflation", 0.9), 3)),
                        med("inflation_within"), med("rho_within"), med("snr_emp"), med("snr_theory"), med("snr_calibrated"),
                        med("snr_predicted_loo"), med("p_fail_emp"), med("phi_snr_emp"), med("phi_snr_theory"),
                        med("phi_snr_calibrated")])
        L.append(md_table(["B", "heads", "inflation [p10, p90]", "within", "ρ_within", "SNR meas.", "SNR model", "SNR calib.",
                           "SNR pred. LOO", "p_fail meas.", "Φ(−SNR meas.)", "Φ(−SNR model)", "Φ(−SNR calib.)"], tab))
        se = [r["slope_snr_emp"] for r in slope_rows]
        st = [r["slope_snr_theory"] for r in slope_rows]
        si = [r["slope_inflation"] for r in slope_rows]
        L.append("\nFitted slopes over B ∈ {%s} per head (median [p10, p90] over %d heads): log SNR measured vs "
                 "log B %s [%s, %s]; model %s [%s, %s]; log inflation vs log B %s [%s, %s]. The i.i.d. model with a "
                 "B-independent Δμ_eff has slope −0.5.\n" % (
                     ", ".join(map(str, bs)), len(slope_rows), fmt(float(np.nanmedian(se)), 3),
                     fmt(float(np.nanquantile(se, 0.1)), 3), fmt(float(np.nanquantile(se, 0.9)), 3),
                     fmt(float(np.nanmedian(st)), 3), fmt(float(np.nanquantile(st, 0.1)), 3),
                     fmt(float(np.nanquantile(st, 0.9)), 3), fmt(float(np.nanmedian(si)), 3),
                     fmt(float(np.nanquantile(si, 0.1)), 3), fmt(float(np.nanquantile(si, 0.9)), 3)))
        err_th = [abs(math.log(r["snr_theory"] / r["snr_emp"])) for r in cal_rows if r["snr_theory"] > 0 and r["snr_emp"] > 0]
        err_lo = [abs(math.log(r["snr_predicted_loo"] / r["snr_emp"])) for r in cal_rows
                  if r["snr_predicted_loo"] > 0 and r["snr_emp"] > 0]
        if err_th and err_lo:
            L.append("Median |ln(SNR predicted / SNR measured)| over heads and B: i.i.d. model %s, with the "
                     "leave-one-B-out inflation %s.\n" % (fmt(float(np.median(err_th)), 3), fmt(float(np.median(err_lo)), 3)))
        L.append("Columns that would belong in analyze's summary.csv: `noise_inflation` (= std(D)/(σ·sqrt(2/B))), "
                 "`block_noise_within` and `rho_within`, `snr_calibrated`, `p_fail_calibrated` (= Φ(−snr_calibrated)).\n")
    L.append("\n## Files\n")
    L.append("validity.csv, paired.csv, rank_correlation.csv, per_position.csv, calibration.csv, "
             "calibration_slopes.csv; %s.\n" % fig_note)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(L))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="moba replay report", description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a moba replay run directory")
    ap.add_argument("--detrend-width", type=int, default=256, help="position bucket width for detrending (256)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        build(args.run, args.quiet, args.detrend_width)
    except ReportError as e:
        print("moba replay report: error: %s" % e, file=sys.stderr)
        return EXIT_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())

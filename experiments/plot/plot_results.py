#!/usr/bin/python3
"""Figures and an HTML report for a MoBA Workbench results directory (`moba plot DIR`).

DIR is either a sweep run directory (DIR/sweep.csv, DIR/provenance.json, DIR/jobs/*/) or
the output of one `moba analyze --out DIR` (summary.csv, aggregate.csv, buckets.csv,
run.json). Writes DIR/plots/<dump>-<figure>.png and .svg and DIR/index.html. What each
figure shows: docs/plots.md; every column: docs/metrics.md.

Output is deterministic: the same inputs give byte-identical files (no dates in SVG/PNG
metadata, a fixed SVG hash salt, sorted inputs, PYTHONHASHSEED=0 (the script re-executes
itself with it), layout positions rounded and frozen before saving).

Exit codes: 0 done, 2 bad input (no such directory, no results in it, matplotlib missing).
Only the Python standard library, numpy and matplotlib (Debian: python3-matplotlib).
"""
import argparse
import csv
import glob
import hashlib
import html
import json
import math
import os
import re
import signal
import sys
import textwrap

if os.environ.get("PYTHONHASHSEED") != "0":
    # Fixed string hashing, so nothing that iterates over a set of names can vary between runs.
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

EXIT_INPUT = 2
GATE_ROUTERS = ("moba", "moba-kconv")
ROUTER_ORDER = ("moba", "moba-kconv", "oracle")


def die(msg):
    print("moba plot: error: " + msg, file=sys.stderr)
    sys.exit(EXIT_INPUT)


try:
    import numpy as np
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    from matplotlib.layout_engine import ConstrainedLayoutEngine
except ImportError as e:  # pragma: no cover - depends on the machine
    die("matplotlib is not available to %s (%s); install it with "
        "`sudo apt-get install python3-matplotlib` or run ./install-deps.sh" % (sys.executable, e))

matplotlib.rcParams.update({
    "svg.hashsalt": "moba-plot",      # stable element ids in SVG
    "svg.fonttype": "path",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8,
    "figure.dpi": 100,
    "savefig.dpi": 110,
})
SVG_META = {"Date": None}
PNG_META = {"Software": None}
FOOTER_SEP = "   |   "  # between the footer's dumps and the commit (a line break where narrow)

# ----------------------------------------------------------------------------- reading


def num(text):
    """A CSV cell as float: 'nan', '', 'all' and unparsable text give NaN."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


# Results-table columns that hold text; every other cell is a number, "nan", "" or "all".
TEXT_COLUMNS = {"scope", "router", "dump", "dump_sha256", "job", "budget_mode", "budget_target"}
# Columns every row must give as a number (the figures' keys).
KEY_NUMBERS = {"block_size", "top_k"}


def read_csv(path):
    """A results table as one dict per row. A truncated or corrupt table (a row with more or
    fewer cells than the header, a number column's cell that is not a number, no newline at
    the end) stops the plot with exit 2, naming the file, the line and the column."""
    try:
        with open(path, newline="") as f:
            text = f.read()
        lines = list(csv.reader(text.splitlines(keepends=True)))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        die("%s: cannot read the table: %s" % (path, e))
    if not lines or not lines[0]:
        die("%s: no header line" % path)
    if not text.endswith("\n"):
        die("%s: the last line has no newline (a truncated table)" % path)
    header = lines[0]
    rows = []
    for n, cells in enumerate(lines[1:], start=2):
        if len(cells) != len(header):
            die("%s: line %d has %d cells, the header %d (a truncated or corrupt table)"
                % (path, n, len(cells), len(header)))
        for name, cell in zip(header, cells):
            if name in TEXT_COLUMNS or (cell in ("", "nan", "all") and name not in KEY_NUMBERS):
                continue
            try:
                x = float(cell)
            except ValueError:
                x = None
            if x is None or (name in KEY_NUMBERS and not math.isfinite(x)):
                die("%s: line %d, column %s: '%s' is not a number" % (path, n, name, cell))
        rows.append(dict(zip(header, cells)))
    return rows


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def argv_values(argv, flag):
    """Values of `--flag X` / `--flag=X` in an argv list or string, comma lists split."""
    if isinstance(argv, str):
        argv = argv.split()
    out = []
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            out += argv[i + 1].split(",")
        elif a.startswith(flag + "="):
            out += a[len(flag) + 1:].split(",")
    return [v for v in out if v]


class Budget:
    """How a configuration's k was chosen: top_k = k, sparsity = nominal s, or another sweep
    mode (e.g. matched attended keys) with its target."""

    def __init__(self, mode, target):
        self.mode = mode
        self.target = target  # text, as written in the CSV

    def key(self):
        order = {"top_k": 0, "sparsity": 1}.get(self.mode, 2)
        return (order, self.mode, num(self.target), self.target)

    def label(self):
        t = self.target
        if self.mode == "top_k":
            return "top-k, k = %s" % t
        if self.mode == "sparsity":
            return "nominal sparsity s = %s" % t
        if self.mode == "attended_fraction":
            return "matched: attended = %s of causal keys" % t
        if self.mode == "attended_keys":
            return "matched: attended ≈ %s keys" % t
        return "%s = %s" % (self.mode, t)

    def short(self):
        """For legends and row labels."""
        t = self.target
        if self.mode == "top_k":
            return "k=%s" % t
        if self.mode == "sparsity":
            return "s=%s" % t
        if self.mode == "attended_fraction":
            return "matched %s" % t
        if self.mode == "attended_keys":
            return "matched %s keys" % t
        return "%s=%s" % (self.mode, t)

    def __eq__(self, o):
        return self.key() == o.key()

    def __hash__(self):
        return hash(self.key())


class Row:
    """One summary/aggregate row with its dump and budget."""

    def __init__(self, raw, dump, sha, budget, job=""):
        self.raw = raw
        self.dump = dump
        self.sha = sha
        self.budget = budget
        self.job = job
        self.router = raw.get("router", "")
        self.layer = raw.get("layer", "")
        self.head = raw.get("head", "")
        # Without a scope column: "all" in layer/head marks an aggregate row (metrics.md).
        self.scope = raw.get("scope") or ("overall" if self.layer == "all" else "layer" if self.head == "all" else "head")
        self.B = int(num(raw.get("block_size")))
        self.k = int(num(raw.get("top_k")))

    def __getitem__(self, col):
        return num(self.raw.get(col))


class Results:
    """Everything the figures need, from either kind of directory."""

    def __init__(self):
        self.kind = ""            # "sweep" or "analyze"
        self.rows = []            # [Row]
        self.buckets = []         # [(dump, budget, raw bucket row)]
        self.dumps = {}           # dump name -> sha256 ("" when unknown)
        self.commit = ""
        self.notes = []           # shown in index.html
        self.tables = []          # (title, csv path relative to DIR)


def analyze_budgets(run, rows):
    """(B, k) -> [Budget] for one analyze run, from the --top-k / --sparsity arguments in
    run.json (docs/routing.md: k = max(1, round((1 - s) T / B)))."""
    cfg = (run or {}).get("config", {})
    argv = cfg.get("argv", [])
    top_ks = [int(num(v)) for v in argv_values(argv, "--top-k") if not math.isnan(num(v))]
    sparsities = [v for v in argv_values(argv, "--sparsity") if not math.isnan(num(v))]
    mapping = {}
    for r in rows:
        key = (r.B, r.k)
        if key in mapping:
            continue
        found = []
        if r.k in top_ks:
            found.append(Budget("top_k", str(r.k)))
        T = r["n_tokens"]
        for s in sparsities:
            k_s = max(1, int(math.floor((1.0 - float(s)) * T / r.B + 0.5)))
            if k_s == r.k:
                found.append(Budget("sparsity", s))
        if not found:  # arguments not recorded: each k is its own budget
            found.append(Budget("top_k", str(r.k)))
        mapping[key] = found
    return mapping


def load_analyze(d, res):
    res.kind = "analyze"
    run = read_json(os.path.join(d, "run.json"))
    if run is None:
        what = "unreadable (not valid JSON)" if os.path.exists(os.path.join(d, "run.json")) else "missing"
        res.notes.append("run.json %s: budgets inferred from top_k, no commit recorded." % what)
    cfg = (run or {}).get("config", {})
    dump_path = cfg.get("dump", "")
    dump = os.path.basename(dump_path) if dump_path else os.path.basename(os.path.abspath(d))
    # The dump's SHA-256 as the run recorded it (run.json "input"); an older run.json without it:
    # the file's, when it is reachable from the current directory.
    sha = ((run or {}).get("input") or {}).get("sha256", "") or ""
    if dump_path and not sha:
        p = dump_path if os.path.isabs(dump_path) else os.path.join(os.getcwd(), dump_path)
        if os.path.isfile(p):
            sha = sha256_of(p)
        else:
            res.notes.append("dump %s not found from the current directory: no SHA-256 in the footer." % dump_path)
    res.dumps[dump] = sha
    res.commit = (run or {}).get("git_commit", "")
    raw = []
    for name in ("summary.csv", "aggregate.csv"):
        p = os.path.join(d, name)
        if os.path.isfile(p):
            raw += read_csv(p)
            res.tables.append((name, name))
    tmp = [Row(x, dump, sha, None) for x in raw]
    mapping = analyze_budgets(run, tmp)
    for r in tmp:
        for b in mapping[(r.B, r.k)]:
            rr = Row(r.raw, dump, sha, b)
            res.rows.append(rr)
    bp = os.path.join(d, "buckets.csv")
    if os.path.isfile(bp):
        res.tables.append(("buckets.csv", "buckets.csv"))
        for x in read_csv(bp):
            key = (int(num(x["block_size"])), int(num(x["top_k"])))
            for b in mapping.get(key, []):
                res.buckets.append((dump, b, x))
    else:
        res.notes.append("buckets.csv missing: the position-bucket figures are left out.")


def sweep_commit(d, prov):
    """provenance.json's git_commit (top level, or build.git_commit with its dirty flag), else
    the first job's run.json."""
    if prov.get("git_commit"):
        return prov["git_commit"]
    build = prov.get("build") if isinstance(prov.get("build"), dict) else {}
    if build.get("git_commit"):
        return build["git_commit"] + ("-dirty" if build.get("git_dirty") else "")
    for run in sorted(glob.glob(os.path.join(d, "jobs", "*", "run.json"))):
        commit = (read_json(run) or {}).get("git_commit")
        if commit:
            return commit
    return ""


def load_sweep(d, res):
    res.kind = "sweep"
    raw = read_csv(os.path.join(d, "sweep.csv"))
    res.tables.append(("sweep.csv", "sweep.csv"))
    for name in ("budgets.csv", "config.resolved.toml", "provenance.json", "jobs.tsv"):
        if os.path.isfile(os.path.join(d, name)):
            res.tables.append((name, name))
    prov = read_json(os.path.join(d, "provenance.json"))
    if prov is None:
        res.notes.append("provenance.json missing or unreadable.")
    res.commit = sweep_commit(d, prov or {})
    job_budgets = {}  # (job, B, k) -> [Budget]
    job_dump = {}
    for x in raw:
        b = Budget(x.get("budget_mode", "") or "top_k", x.get("budget_target", "") or x.get("top_k", ""))
        r = Row(x, x.get("dump", "?"), x.get("dump_sha256", ""), b, x.get("job", ""))
        res.rows.append(r)
        res.dumps.setdefault(r.dump, r.sha)
        lst = job_budgets.setdefault((r.job, r.B, r.k), [])
        if b not in lst:
            lst.append(b)
        job_dump[r.job] = r.dump
    found_any = False
    missing = []
    for job in sorted(job_dump):
        bp = os.path.join(d, "jobs", job, "buckets.csv")
        if not os.path.isfile(bp):
            missing.append(job)
            continue
        found_any = True
        for x in read_csv(bp):
            key = (job, int(num(x["block_size"])), int(num(x["top_k"])))
            for b in job_budgets.get(key, []):
                res.buckets.append((job_dump[job], b, x))
    if not found_any:
        res.notes.append("no DIR/jobs/*/buckets.csv found: the position-bucket figures are left out.")
    elif missing:
        res.notes.append("buckets.csv missing for job(s) %s: the position-bucket figures leave them out."
                         % ", ".join(missing))


# ----------------------------------------------------------------------------- pooling

WEIGHTS = {  # column -> weight column when pooling head rows (docs/metrics.md, aggregate rows)
    "coverage_mean": "n_choice", "oracle_coverage_mean": "n_choice", "kl_mean": "n_choice",
    "output_rel_err_mean": "n_choice", "sparsity_mean": "n_choice", "block_density_mean": "n_choice",
    "token_recall_mean": "n_choice", "block_recall_mean": "n_choice", "attended_keys_mean": "n_choice",
    "snr_emp": "snr_queries", "snr_theory": "snr_queries", "p_fail_emp": "snr_queries",
    "p_fail_theory": "snr_queries", "sparsity_nominal": None, "n_tokens": None,
}


class Pooled:
    """Overall values of one (dump, budget, router, B, k): the scope=overall row when there is
    exactly one, else head rows pooled (count-weighted means; SNR columns as weighted means
    over heads, an approximation of the pooled SNR). attended_keys_mean, which a sweep may
    give for head rows only, is pooled from the head rows when the overall row lacks it."""

    def __init__(self, rows):
        overall = [r for r in rows if r.scope == "overall"]
        heads = [r for r in rows if r.scope == "head"]
        self.exact = len(overall) == 1
        self.values = {}
        for col, wcol in WEIGHTS.items():
            if self.exact and (np.isfinite(overall[0][col]) or col != "attended_keys_mean"):
                self.values[col] = overall[0][col]
                continue
            vals = np.array([r[col] for r in heads], dtype=float)
            w = np.ones_like(vals) if wcol is None else np.array([r[wcol] for r in heads], dtype=float)
            ok = np.isfinite(vals) & np.isfinite(w) & (w > 0)
            self.values[col] = float(np.sum(vals[ok] * w[ok]) / np.sum(w[ok])) if ok.any() else math.nan

    def __getitem__(self, col):
        return self.values.get(col, math.nan)


def overall_table(res, dump):
    """{(budget, router, B, k): Pooled} for one dump."""
    groups = {}
    for r in res.rows:
        if r.dump == dump:
            groups.setdefault((r.budget, r.router, r.B, r.k), []).append(r)
    return {key: Pooled(g) for key, g in groups.items()}


def sorted_budgets(keys):
    return sorted({k[0] for k in keys}, key=Budget.key)


def routers_in(keys):
    present = {k[1] for k in keys}
    return [r for r in ROUTER_ORDER if r in present] + sorted(present - set(ROUTER_ORDER))


# ----------------------------------------------------------------------------- figures

COLORS = {"moba": "#1f77b4", "moba-kconv": "#d62728", "oracle": "#2ca02c"}
B_CMAP = plt.get_cmap("viridis")


def b_colors(bs):
    bs = sorted(bs)
    n = max(1, len(bs) - 1)
    return {b: B_CMAP(0.9 * i / n) for i, b in enumerate(bs)}


def short_sha(sha):
    return sha[:12] if sha else "sha256 n/a"


class FigureWriter:
    def __init__(self, out_dir, res):
        self.out_dir = out_dir
        self.res = res
        self.written = []  # (stem, dump, title, caption)
        self.dump = ""     # the dump whose figures are being drawn

    def footer(self, dumps):
        parts = ["dump %s (sha256 %s)" % (d, short_sha(self.res.dumps.get(d, ""))) for d in dumps]
        return "; ".join(parts) + FOOTER_SEP + "moba git %s" % ((self.res.commit or "unknown")[:12])

    def new(self, w, h, dumps):
        footer_in = 0.4  # inches kept free at the bottom for the footer line
        total = h + footer_in
        fig = plt.figure(figsize=(w, total),
                         layout=ConstrainedLayoutEngine(rect=(0, footer_in / total, 1, 1 - footer_in / total)))
        fig.text(0.01, 0.08 / total, self.footer(dumps), fontsize=7, color="#444444", ha="left", va="bottom",
                 linespacing=1.4)
        return fig

    @staticmethod
    def footer_room(fig):
        """Keeps the bottom free for the footer where fit_figure_texts gave it three or more
        lines (a long dump name in a narrow figure; new() keeps room for two)."""
        lines = max(t.get_text().count("\n") + 1 for t in fig.texts if t.get_horizontalalignment() == "left")
        need = 0.12 + lines * 7 * 1.4 / 72  # inches: the offset and the lines at 7 pt, spacing 1.4
        if need > 0.4:
            total = fig.get_figheight()
            fig.get_layout_engine().set(rect=(0, need / total, 1, 1 - need / total))

    def save(self, fig, stem, title, caption):
        # Constrained layout iterates over sets of Axes (hashed by address), so its result can
        # differ between runs in the last float digits, which changes SVG coordinates and
        # clip-path ids. Lay out once, round every position, and freeze.
        fig.canvas.draw()
        if fit_figure_texts(fig):
            self.footer_room(fig)
            fig.canvas.draw()  # the layout again, around the changed lines
        for t in figure_texts(fig):
            if not text_fits(fig, t):
                print("moba plot: warning: %s: the line \"%s\" is wider than the figure"
                      % (stem, t.get_text().replace("\n", " ")), file=sys.stderr)
        fig.set_layout_engine("none")
        for ax in fig.axes:
            p = ax.get_position()
            ax.set_position([round(v, 5) for v in (p.x0, p.y0, p.width, p.height)])
        for t in fig.texts + ([fig._suptitle] if fig._suptitle is not None else []):
            t.set_position(tuple(round(float(v), 5) for v in t.get_position()))
        for ext, meta in (("png", PNG_META), ("svg", SVG_META)):  # a killed run leaves no half file
            path = os.path.join(self.out_dir, "%s.%s" % (stem, ext))
            tmp = "%s.tmp-%d" % (path, os.getpid())
            try:
                fig.savefig(tmp, format=ext, metadata=meta)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        plt.close(fig)
        self.written.append((stem, self.dump, title, caption))


def figure_texts(fig):
    """The figure-level lines: the title above the panels and the footer."""
    texts = list(fig.texts)
    if fig._suptitle is not None and fig._suptitle not in texts:
        texts.append(fig._suptitle)
    return [t for t in texts if t.get_text()]


def text_room(fig, t):
    """(width of t, room for it) in pixels: a centred title may use 98 % of the figure's
    width, a left-aligned line (the footer) the width right of where it starts."""
    box = t.get_window_extent(fig.canvas.get_renderer())
    if t.get_horizontalalignment() == "center":
        return box.width, 0.98 * fig.bbox.width
    return box.width, 0.99 * fig.bbox.width - box.x0


def text_fits(fig, t):
    width, room = text_room(fig, t)
    return width <= room


def fit_figure_texts(fig):
    """Fits the figure-level lines that are wider than the figure (a long dump name in a
    figure of one panel): the footer's parts on lines of their own, then lines wrapped at
    spaces, then a smaller font where one word is still too wide, and last that word broken.
    True when a line was changed."""
    changed = False
    for t in figure_texts(fig):
        for attempt in range(8):
            width, room = text_room(fig, t)
            if width <= room:
                break
            changed = True
            if FOOTER_SEP in t.get_text():
                t.set_text(t.get_text().replace(FOOTER_SEP, "\n"))
                continue
            lines = t.get_text().split("\n")
            longest = max(len(line) for line in lines)
            chars = max(16, int(0.95 * longest * room / width))  # characters that fit the room
            if any(" " not in line and len(line) > chars for line in lines) and t.get_fontsize() > 7:
                t.set_fontsize(max(7, 0.85 * t.get_fontsize()))  # a word wider than the room
                continue
            t.set_text(textwrap.fill(" ".join(t.get_text().split()), chars, break_long_words=attempt >= 6))
    return changed


def grid(n, max_cols=3):
    cols = min(n, max_cols)
    rows = (n + cols - 1) // cols
    return rows, cols


def axes_grid(fig, n, max_cols=3, **kw):
    rows, cols = grid(n, max_cols)
    axs = fig.subplots(rows, cols, squeeze=False, **kw).ravel()
    for ax in axs[n:]:
        ax.set_visible(False)
    return axs[:n]


def log2_x(ax, bs):
    ax.set_xscale("log", base=2)
    ax.set_xticks(bs)
    ax.set_xticklabels([str(b) for b in bs])
    ax.minorticks_off()


def empty_panel(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#888888", wrap=True)


def fig_coverage(fw, dump, tab, prefix):
    budgets = sorted_budgets(tab)
    routers = routers_in(tab)
    bs_all = sorted({k[2] for k in tab})
    fig = fw.new(4.2 * grid(len(budgets))[1], 3.3 * grid(len(budgets))[0], [dump])
    axs = axes_grid(fig, len(budgets), sharey=True)
    for ax, bud in zip(axs, budgets):
        keys = sorted(k for k in tab if k[0] == bud)
        for router in routers:
            pts = sorted((k[2], k[3], tab[k]["coverage_mean"]) for k in keys if k[1] == router)
            pts = [p for p in pts if np.isfinite(p[2])]
            if pts and router != "oracle":  # kconv: other marker and dash, visible where the lines coincide
                ax.plot([p[0] for p in pts], [p[2] for p in pts], "o-" if router == "moba" else "^-.",
                        color=COLORS.get(router), label=router, ms=6 if router == "moba" else 5)
        # oracle coverage: the same for every router at (B, k); take the first router's row
        orc = {}
        for k in keys:
            v = tab[k]["oracle_coverage_mean"]
            if np.isfinite(v):
                orc.setdefault(k[2], (k[3], v))
        if orc:
            xs = sorted(orc)
            ax.plot(xs, [orc[x][1] for x in xs], "s--", color="black", label="oracle (equal budget)")
            if bud.mode != "top_k":
                for x in xs:
                    ax.annotate("k=%d" % orc[x][0], (x, orc[x][1]), textcoords="offset points",
                                xytext=(0, 7), ha="center", fontsize=7, color="#444444")
        missing = [b for b in bs_all if b not in orc]
        if missing:
            ax.text(0.98, 0.02, "no query with a choice at B = %s" % ", ".join(map(str, missing)),
                    transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="#666666")
        log2_x(ax, bs_all)
        ax.set_title(bud.label())
        ax.set_xlabel("block size B (tokens)")
        if ax is axs[0] or len(budgets) == 1:
            ax.set_ylabel("coverage R (share of attention mass)")
        ax.legend(loc="lower left")
    ymin = min([ax.get_ylim()[0] for ax in axs])
    lo = max(0.0, ymin - 0.02)
    for ax in axs:  # head room above R = 1 for the k labels, room below for the legend
        ax.set_ylim(lo - 0.25 * (1.0 - lo), 1.0 + 0.1 * (1.0 - lo))
    fig.suptitle("%s: coverage of the routed blocks vs block size (mean over queries with a choice)" % dump)
    stem = prefix + "coverage_vs_B"
    fw.save(fig, stem, "Coverage and oracle coverage vs B",
            "Mean attention-mass coverage R of each router (solid) and of the equal-budget oracle "
            "(dashed) against block size, one panel per budget. For budgets that do not fix k, "
            "the k chosen at each B is written above the oracle's point.")


def fit_slope(xs, ys):
    xs = np.asarray(xs, float)
    ys = np.asarray(ys, float)
    ok = np.isfinite(xs) & np.isfinite(ys) & (xs > 0) & (ys > 0)
    if ok.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(xs[ok]), np.log(ys[ok]), 1)[0])


def snr_by_B(tab, router):
    """B -> Pooled (SNR is independent of k and budget: the first budget's row per B)."""
    out = {}
    for k in sorted(tab, key=lambda k: (k[0].key(), k[2], k[3])):
        if k[1] == router:
            out.setdefault(k[2], tab[k])
    return out


def fig_snr(fw, dump, tab, prefix):
    routers = [r for r in routers_in(tab) if r in GATE_ROUTERS]
    fig = fw.new(6.0, 4.2, [dump])
    ax = fig.subplots()
    plotted = False
    nonpos = []
    bs_all = sorted({k[2] for k in tab})
    for router in routers:
        per_b = snr_by_B(tab, router)
        bs = sorted(per_b)
        model_marker = "s--" if router == "moba" else "^--"
        for col, style, what in (("snr_emp", "o-", "measured"), ("snr_theory", model_marker, "model")):
            ys = [per_b[b][col] for b in bs]
            ok = [(b, y) for b, y in zip(bs, ys) if np.isfinite(y) and y > 0]
            nonpos += ["%s %s at B=%d" % (router, what, b) for b, y in zip(bs, ys) if np.isfinite(y) and y <= 0]
            if not ok:
                continue
            slope = fit_slope([p[0] for p in ok], [p[1] for p in ok])
            lab = "%s %s (%s)" % (router, what, "slope %.2f" % slope if np.isfinite(slope) else "one point")
            ax.plot([p[0] for p in ok], [p[1] for p in ok], style, color=COLORS.get(router), label=lab,
                    alpha=1.0 if what == "measured" else 0.8)
            plotted = True
    if plotted:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        log2_x(ax, bs_all)
        ax.legend(loc="best", title="fitted slope of log SNR vs log B")
    else:
        empty_panel(ax, "no positive finite SNR values (gate routers moba / moba-kconv not analysed?)")
        if bs_all:
            log2_x(ax, bs_all)
    notes = []
    missing = sorted(b for b in bs_all if not any(
        b in snr_by_B(tab, r) and np.isfinite(snr_by_B(tab, r)[b]["snr_emp"]) for r in routers))
    if missing:
        notes.append("no SNR at B = %s (no query with ≥ 2 routable blocks)" % ", ".join(map(str, missing)))
    if nonpos:
        ax.text(0.01, 0.06, "left out (SNR ≤ 0, log axis): " + ", ".join(nonpos), transform=ax.transAxes,
                fontsize=7, color="#aa0000", va="bottom")
    ax.set_xlabel("block size B (tokens, log scale)" + "".join("\n" + n for n in notes))
    ax.set_ylabel("routing SNR (dimensionless, log scale)")
    ax.set_title("%s: routing SNR, measured vs FlashMoBA model" % dump)
    stem = prefix + "snr_vs_B"
    fw.save(fig, stem, "Routing SNR: measured vs model, log-log",
            "Measured SNR (snr_emp, solid) and the model's prediction from the measured parameters "
            "(snr_theory, dashed) against block size on log-log axes, pooled over all analysed heads; "
            "the legend gives the least-squares slope of log SNR on log B. The model predicts "
            "SNR ∝ Δμ_eff/√(2B); a measured slope flatter or steeper than the model's shows where the "
            "independent-noise assumption fails.")


def fig_calibration(fw, dump, res, tab, prefix):
    heads = {}
    for r in res.rows:
        if r.dump == dump and r.scope == "head" and r.router in GATE_ROUTERS:
            heads.setdefault((r.router, r.layer, r.head, r.B), r)
    fig = fw.new(5.6, 4.8, [dump])
    ax = fig.subplots()
    bs = sorted({k[3] for k in heads})
    cols = b_colors(bs)
    markers = {"moba": "o", "moba-kconv": "^"}
    hi = 0.0
    n = 0
    for router in GATE_ROUTERS:
        for b in bs:
            pts = [(r["p_fail_theory"], r["p_fail_emp"]) for k, r in sorted(heads.items()) if k[0] == router and k[3] == b]
            pts = [p for p in pts if np.isfinite(p[0]) and np.isfinite(p[1])]
            if not pts:
                continue
            n += len(pts)
            hi = max(hi, max(max(p) for p in pts))
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=14, marker=markers[router], color=cols[b],
                       alpha=0.7, label="%s, B=%d" % (router, b), edgecolors="none")
        per_b = snr_by_B(tab, router)
        for b in sorted(per_b):
            x, y = per_b[b]["p_fail_theory"], per_b[b]["p_fail_emp"]
            if np.isfinite(x) and np.isfinite(y):
                ax.scatter([x], [y], s=70, marker=markers[router], color=cols.get(b, "grey"), edgecolors="black",
                           linewidths=1.0, zorder=5)
                hi = max(hi, x, y)
    if n == 0:
        empty_panel(ax, "no finite p_fail values (gate routers not analysed?)")
        hi = 0.5
    hi = min(1.0, hi * 1.08 + 1e-3)
    ax.plot([0, hi], [0, hi], color="grey", lw=1, ls=":", label="y = x (calibrated)")
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("Φ(−SNR_measured): Gaussian failure rate (p_fail_theory)")
    ax.set_ylabel("measured pairwise failure rate P(D < 0) (p_fail_emp)")
    ax.set_title("%s: p_fail calibration\n(small: one head × layer; large, black edge: pooled)" % dump)
    if n:
        ax.legend(loc="upper left", fontsize=7, ncol=2 if len(bs) > 4 else 1)
    stem = prefix + "pfail_calibration"
    fw.save(fig, stem, "p_fail calibration",
            "Each small marker is one layer × head at one block size (color) for a gate router "
            "(marker shape): the measured share of signal-vs-noise block pairs that the gate ranks "
            "wrongly (p_fail_emp) against Φ(−snr_emp), the failure rate a Gaussian score gap with the "
            "same SNR would have. Large markers: all heads pooled. Points on the dotted y = x line "
            "mean the gaps are Gaussian; above it, heavier tails than Gaussian.")


def pool_buckets(items):
    """[(t_mid, value)] from bucket rows of several heads: n_choice-weighted by position."""
    acc = {}
    for x, col in items:
        t0, t1 = num(x["t_begin"]), num(x["t_end"])
        v, w = num(x[col]), num(x["n_choice"])
        if not (np.isfinite(v) and np.isfinite(w) and w > 0):
            continue
        a = acc.setdefault((t0, t1), [0.0, 0.0])
        a[0] += v * w
        a[1] += w
    return sorted(((t0 + t1) / 2.0, s / w) for (t0, t1), (s, w) in acc.items())


def fig_buckets(fw, dump, res, prefix, col, ylabel, name, stem_name, caption):
    rows = [(b, x) for d, b, x in res.buckets if d == dump]
    routers = sorted({x["router"] for _, x in rows}, key=lambda r: (ROUTER_ORDER + (r,)).index(r))
    router = "moba" if "moba" in routers else (routers[0] if routers else "")
    rows = [(b, x) for b, x in rows if x["router"] == router]
    budgets = sorted({b for b, _ in rows}, key=Budget.key)
    if not budgets:
        return False
    bs = sorted({int(num(x["block_size"])) for _, x in rows})
    cols = b_colors(bs)
    fig = fw.new(4.2 * grid(len(budgets))[1], 3.2 * grid(len(budgets))[0], [dump])
    axs = axes_grid(fig, len(budgets), sharey=True)
    allv = []
    for ax, bud in zip(axs, budgets):
        sel = [x for b, x in rows if b == bud]
        for b in bs:
            mine = [x for x in sel if int(num(x["block_size"])) == b]
            if not mine:
                continue
            pts = pool_buckets([(x, col) for x in mine])
            if not pts:
                continue
            k = int(num(mine[0]["top_k"]))
            allv += [p[1] for p in pts]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=3, color=cols[b], label="B=%d, k=%d" % (b, k))
        ax.set_title(bud.label())
        ax.set_xlabel("query position t (tokens, bucket centre)")
        if ax is axs[0]:
            ax.set_ylabel(ylabel)
        if ax.lines:
            ax.legend(loc="best")
        else:
            empty_panel(ax, "no bucket with a choice")
    pos = [v for v in allv if v > 0]
    if pos and min(pos) > 0 and max(pos) / min(pos) > 50 and len(pos) == len(allv):
        for ax in axs:
            ax.set_yscale("log")
    fig.suptitle("%s: %s by query position (router %s, mean over heads)" % (dump, name, router))
    fw.save(fig, prefix + stem_name, "%s by position bucket" % (name[0].upper() + name[1:]), caption)
    return True


def fig_heatmap(fw, dump, res, prefix):
    heads = [r for r in res.rows if r.dump == dump and r.scope == "head"]
    router = "moba" if any(r.router == "moba" for r in heads) else (heads[0].router if heads else "")
    heads = [r for r in heads if r.router == router]
    if not heads:
        return False
    layers = sorted({int(num(r.layer)) for r in heads})
    hs = sorted({int(num(r.head)) for r in heads})
    bs = sorted({r.B for r in heads})
    budgets = sorted({r.budget for r in heads}, key=Budget.key)
    li = {l: i for i, l in enumerate(layers)}
    hi = {h: i for i, h in enumerate(hs)}

    def grid_of(sel, col):
        g = np.full((len(layers), len(hs)), np.nan)
        for r in sel:
            g[li[int(num(r.layer))], hi[int(num(r.head))]] = r[col]
        return g

    show_snr = router in GATE_ROUTERS
    nrows = len(budgets) + (1 if show_snr else 0)
    cell = max(0.16, min(0.35, 2.4 / max(len(hs), len(layers))))
    pw = len(hs) * cell + 0.9
    # A row at least as tall as its colour bar's label needs (a dump of one or two layers):
    # the bar spans 80 % of its rows, the labels wrap onto a second line where one is too long.
    ph = max(len(layers) * cell + 0.75, 1.1, 1.6 / len(budgets))
    cov_label = "coverage R (share of attention mass)"
    if 0.8 * ph * len(budgets) < 2.6:
        cov_label = "coverage R (share\nof attention mass)"
    snr_label = "measured SNR (snr_emp)" if 0.8 * ph >= 1.6 else "measured SNR\n(snr_emp)"
    fig = fw.new(pw * len(bs) + 1.6, ph * nrows + 0.6, [dump])
    axs = fig.subplots(nrows, len(bs), squeeze=False)
    cov = {(bud, b): grid_of([r for r in heads if r.budget == bud and r.B == b], "coverage_mean")
           for bud in budgets for b in bs}
    vals = np.concatenate([g.ravel() for g in cov.values()])
    vals = vals[np.isfinite(vals)]
    vmin = float(vals.min()) if vals.size else 0.0
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("#dddddd")
    im = None
    for i, bud in enumerate(budgets):
        for j, b in enumerate(bs):
            ax = axs[i, j]
            g = cov[(bud, b)]
            ks = sorted({r.k for r in heads if r.budget == bud and r.B == b})
            im = ax.imshow(np.ma.masked_invalid(g), cmap=cmap, vmin=vmin, vmax=1.0, aspect="equal")
            ax.set_title("B=%d, k=%s" % (b, ",".join(map(str, ks)) or "–"), fontsize=8)
            if not np.isfinite(g).any():
                empty_panel(ax, "no query\nwith a choice" if ks else "not analysed")
            if j == 0:
                ax.set_ylabel("%s\nlayer" % bud.short(), fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axs[:len(budgets), :].ravel().tolist(), shrink=0.8,
                     label=cov_label)
    if show_snr:
        snr = {}
        for b in bs:  # SNR depends on (head, B) only: the first finite value over budgets and k
            g = np.full((len(layers), len(hs)), np.nan)
            for r in sorted((r for r in heads if r.B == b), key=lambda r: (r.budget.key(), r.k)):
                i, j = li[int(num(r.layer))], hi[int(num(r.head))]
                if not np.isfinite(g[i, j]):
                    g[i, j] = r["snr_emp"]
            snr[b] = g
        sv = np.concatenate([g.ravel() for g in snr.values()])
        sv = sv[np.isfinite(sv)]
        cmap2 = plt.get_cmap("magma").copy()
        cmap2.set_bad("#dddddd")
        im2 = None
        for j, b in enumerate(bs):
            ax = axs[-1, j]
            im2 = ax.imshow(np.ma.masked_invalid(snr[b]), cmap=cmap2, aspect="equal",
                            vmin=float(sv.min()) if sv.size else 0, vmax=float(sv.max()) if sv.size else 1)
            ax.set_title("B=%d (any k)" % b, fontsize=8)
            if not np.isfinite(snr[b]).any():
                empty_panel(ax, "no query with\n≥ 2 routable blocks")
            if j == 0:
                ax.set_ylabel("SNR\nlayer", fontsize=8)
        fig.colorbar(im2, ax=axs[-1, :].ravel().tolist(), shrink=0.8, label=snr_label)
    for ax in axs.ravel():
        ax.set_xticks(range(len(hs)))
        ax.set_xticklabels([str(h) for h in hs], fontsize=6)
        ax.set_yticks(range(len(layers)))
        ax.set_yticklabels([str(l) for l in layers], fontsize=6)
        ax.grid(False)
        ax.set_xlabel("query head", fontsize=7)
    fig.suptitle("%s: coverage (rows: budgets) and measured SNR (last row) per layer × head, router %s"
                 % (dump, router))
    fw.save(fig, prefix + "heatmap_layer_head", "Layer × head heatmaps of coverage and SNR",
            "One cell per layer (rows) and query head (columns), router %s. Top rows: mean coverage R "
            "at each budget (rows) and block size (columns), one colour scale for all; bottom row: "
            "measured routing SNR per block size (independent of k). Grey: not analysed." % router)
    return True


def fig_sparsity(fw, dump, tab, prefix):
    router = "moba" if any(k[1] == "moba" for k in tab) else routers_in(tab)[0]
    keys = sorted((k for k in tab if k[1] == router), key=lambda k: (k[0].key(), k[2], k[3]))
    budgets = sorted_budgets(keys)
    bs = sorted({k[2] for k in keys})
    cols = b_colors(bs)
    has_att = any(np.isfinite(tab[k]["attended_keys_mean"]) for k in keys)
    fig = fw.new(11.5 if has_att else 8.5, 4.0, [dump])
    axs = fig.subplots(1, 3 if has_att else 2, squeeze=False).ravel()
    ax = axs[0]
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    bmark = {bud: markers[i % len(markers)] for i, bud in enumerate(budgets)}
    lo = 1.0
    for k in keys:
        x, y = tab[k]["sparsity_nominal"], tab[k]["sparsity_mean"]
        if np.isfinite(x) and np.isfinite(y):
            ax.scatter([x], [y], color=cols[k[2]], marker=bmark[k[0]], s=30, zorder=3)
            lo = min(lo, x, y)
    lo = max(0.0, lo - 0.05)
    ax.plot([lo, 1], [lo, 1], ls=":", color="grey", lw=1)
    for b in bs:
        ax.scatter([], [], color=cols[b], marker="o", label="B=%d" % b)
    for bud in budgets:
        ax.scatter([], [], color="grey", marker=bmark[bud], label=bud.short())
    ax.plot([], [], ls=":", color="grey", label="y = x")
    ax.set_xlim(lo, 1)
    ax.set_ylim(lo, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("nominal sparsity 1 − k·B/T (causality ignored)")
    ax.set_ylabel("achieved token sparsity (causal, mean)")
    ax.set_title("achieved vs nominal")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=7, ncol=2)
    ax = axs[1]
    for i, bud in enumerate(budgets):
        pts = sorted((k[2], tab[k]["sparsity_mean"], tab[k]["sparsity_nominal"]) for k in keys if k[0] == bud)
        pts = [p for p in pts if np.isfinite(p[1])]
        if not pts:
            continue
        c = plt.get_cmap("tab10")(i % 10)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=bmark[bud], color=c, label=bud.short() + " achieved")
        ax.plot([p[0] for p in pts], [p[2] for p in pts], ls="--", color=c, alpha=0.6)
    ax.plot([], [], ls="--", color="grey", label="nominal (dashed)")
    if bs:
        log2_x(ax, bs)
    ax.set_xlabel("block size B (tokens)")
    ax.set_ylabel("token sparsity (causal, mean)")
    ax.set_title("sparsity vs B per budget")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=7, ncol=2)
    if has_att:
        ax = axs[2]
        for i, bud in enumerate(budgets):
            pts = sorted((k[2], tab[k]["attended_keys_mean"]) for k in keys if k[0] == bud)
            pts = [p for p in pts if np.isfinite(p[1])]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=bmark[bud],
                        color=plt.get_cmap("tab10")(i % 10), label=bud.short())
        log2_x(ax, bs)
        ax.set_xlabel("block size B (tokens)")
        ax.set_ylabel("attended keys per query (causal, mean)")
        ax.set_title("real budget: keys attended")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=7, ncol=2)
    fig.suptitle("%s: achieved vs nominal sparsity (router %s, queries with a choice)" % (dump, router))
    fw.save(fig, prefix + "sparsity", "Achieved vs nominal sparsity",
            "Left: measured token sparsity (causal denominator, mean over queries with a choice) "
            "against the nominal 1 − k·B/T of each configuration; colour = B, marker = budget; points "
            "above y = x skip more keys than nominal. Middle: the same per budget against B (dashed: "
            "nominal), which shows whether a budget is really equal across block sizes."
            + (" Right: mean attended keys per query (sweep column attended_keys_mean)." if has_att else ""))


# ----------------------------------------------------------------------------- html

TABLE_COLS = ["budget", "router", "block_size", "top_k", "sparsity_nominal", "sparsity_mean",
              "attended_keys_mean", "coverage_mean", "oracle_coverage_mean", "kl_mean",
              "output_rel_err_mean", "snr_emp", "snr_theory", "p_fail_emp", "p_fail_theory"]


def fmt(v):
    if isinstance(v, str):
        return html.escape(v)
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "nan" if v is None or math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, int) or float(v).is_integer() and abs(v) < 1e9:
        return str(int(v))
    return "%.4g" % v


def html_table(header, rows):
    out = ["<table>", "<tr>" + "".join("<th>%s</th>" % html.escape(h) for h in header) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join("<td>%s</td>" % fmt(v) for v in r) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


CSS = """body{font-family:sans-serif;max-width:1300px;margin:1em auto;padding:0 1em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
img{max-width:100%;border:1px solid #ddd}table{border-collapse:collapse;font-size:12px;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f0f0f0}
td:first-child,td:nth-child(2){text-align:left}.note{color:#a40}.meta{color:#555;font-size:.9em}
figure{margin:1em 0}figcaption{font-size:.92em;color:#333;max-width:60em}"""


def write_index(d, res, fw, tabs):
    title = "MoBA Workbench results: %s" % os.path.basename(os.path.abspath(d))
    lines = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>%s</title><style>%s</style></head><body>" % (html.escape(title), CSS),
             "<h1>%s</h1>" % html.escape(title)]
    kind = "sweep run directory (sweep.csv)" if res.kind == "sweep" else "moba analyze output"
    lines.append('<p class="meta">Source: %s. moba git commit: <code>%s</code>.<br>Dumps: %s.<br>'
                 "Column meanings: docs/metrics.md; figures: docs/plots.md (in the MoBA Workbench "
                 "repository). Raw files: %s.</p>" % (
                     kind, html.escape(res.commit or "unknown"),
                     "; ".join("<code>%s</code> (sha256 <code>%s</code>)" % (html.escape(k), html.escape(v or "n/a"))
                               for k, v in sorted(res.dumps.items())),
                     ", ".join('<a href="%s">%s</a>' % (html.escape(p), html.escape(t)) for t, p in res.tables)))
    for n in res.notes:
        lines.append('<p class="note">Note: %s</p>' % html.escape(n))
    lines.append("<h2>Contents</h2><ul>")
    for stem, dump, t, _ in fw.written:
        lines.append('<li><a href="#%s">%s</a></li>' % (stem, html.escape("%s: %s" % (dump, t))))
    for dump, _ in tabs:
        lines.append('<li><a href="#table-%s">%s: overall results table</a></li>' % (safe_stem(dump), html.escape(dump)))
    lines.append("</ul>")
    for stem, dump, t, cap in fw.written:
        lines.append('<figure id="%s"><h2>%s</h2><a href="plots/%s.svg"><img src="plots/%s.png" alt="%s"></a>'
                     '<figcaption>%s (<a href="plots/%s.svg">SVG</a>, <a href="plots/%s.png">PNG</a>)'
                     "</figcaption></figure>" % (stem, html.escape("%s: %s" % (dump, t)), stem, stem,
                                                  html.escape(t), html.escape(cap), stem, stem))
    for dump, tab in tabs:
        lines.append('<h2 id="table-%s">Overall results: %s</h2>' % (safe_stem(dump), html.escape(dump)))
        exact = all(p.exact for p in tab.values())
        lines.append('<p class="meta">%s</p>' % (
            "One row per budget × router × (B, k): the scope=overall rows (all analysed layers and heads)."
            if exact else "One row per budget × router × (B, k), pooled from the head rows "
            "(count-weighted means; SNR columns are snr_queries-weighted means over heads)."))
        rows = []
        for k in sorted(tab, key=lambda k: (k[0].key(), routers_in(tab).index(k[1]), k[2], k[3])):
            p = tab[k]
            rows.append([k[0].label(), k[1], k[2], k[3]] + [p[c] for c in TABLE_COLS[4:]])
        lines.append(html_table(TABLE_COLS, rows))
    bp = os.path.join(d, "budgets.csv")
    if res.kind == "sweep" and os.path.isfile(bp):
        with open(bp, newline="") as f:
            raw = list(csv.reader(f))
        if raw:
            lines.append('<h2 id="budgets">Matched budgets (budgets.csv)</h2>')
            lines.append('<p class="meta">Per dump, matched target and B: the k chosen, the mean attended '
                         "keys it achieves and its deviation from the target (as the sweep wrote them).</p>")
            lines.append(html_table(raw[0], raw[1:]))
    lines.append("</body></html>\n")
    tmp = os.path.join(d, "index.html.tmp-%d" % os.getpid())
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
        os.replace(tmp, os.path.join(d, "index.html"))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ----------------------------------------------------------------------------- main


def safe_stem(name):
    stem = re.sub(r"\.(h5|hdf5|safetensors)$", "", name)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "dump"


def main():
    ap = argparse.ArgumentParser(prog="moba plot", description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--commit", default="", help="git commit to show when the directory records none")
    a = ap.parse_args()
    d = a.dir
    if not os.path.isdir(d):
        die("%s: no such directory (expected a `moba sweep` run directory or a `moba analyze --out` directory)" % d)
    res = Results()
    if os.path.isfile(os.path.join(d, "sweep.csv")):
        load_sweep(d, res)
    elif os.path.isfile(os.path.join(d, "summary.csv")) or os.path.isfile(os.path.join(d, "aggregate.csv")):
        load_analyze(d, res)
    else:
        die("%s: no results here: expected sweep.csv (moba sweep) or summary.csv / aggregate.csv "
            "(moba analyze --out DIR); see docs/plots.md" % d)
    if not res.rows:
        die("%s: the results table has no rows" % d)
    if not res.commit:
        res.commit = a.commit
    out = os.path.join(d, "plots")
    os.makedirs(out, exist_ok=True)
    fw = FigureWriter(out, res)
    tabs = []
    for dump in sorted(res.dumps):
        prefix = safe_stem(dump) + "-"
        fw.dump = dump
        tab = overall_table(res, dump)
        tabs.append((dump, tab))
        fig_coverage(fw, dump, tab, prefix)
        fig_snr(fw, dump, tab, prefix)
        fig_calibration(fw, dump, res, tab, prefix)
        fig_buckets(fw, dump, res, prefix, "kl_mean", "−ln R (nats)", "KL proxy −ln R", "kl_by_position",
                    "Mean −ln R (the KL divergence of the renormalised routed distribution from full "
                    "attention, nats) by query-position bucket, one line per block size, one panel per "
                    "budget; pooled over heads (weighted by queries with a choice).")
        fig_buckets(fw, dump, res, prefix, "output_rel_err_mean", "relative output error ‖Δo‖/‖o‖",
                    "output error", "output_err_by_position",
                    "Mean relative error of the MoBA attention output against full attention by "
                    "query-position bucket, one line per block size, one panel per budget.")
        if not fig_heatmap(fw, dump, res, prefix):
            res.notes.append("%s: no per-head rows (scope=head): the layer × head heatmap is left out." % dump)
        fig_sparsity(fw, dump, tab, prefix)
    write_index(d, res, fw, tabs)
    print("moba plot: wrote %d figures (PNG + SVG) to %s and %s"
          % (len(fw.written), out, os.path.join(d, "index.html")))
    for n in res.notes:  # also on the page; here so that a script or a reader of the log sees them
        print("moba plot: note: " + n, file=sys.stderr)
    return 0


def on_sigterm(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_sigterm)  # unwind (temporaries removed) as for Ctrl-C
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("moba plot: interrupted; finished figures were kept, index.html was not rewritten",
              file=sys.stderr)
        sys.exit(130)

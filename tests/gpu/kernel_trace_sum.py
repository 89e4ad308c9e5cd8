#!/usr/bin/env python3
"""Summarise a kernel trace (tests/gpu/kernel_trace.cpp) and, given the run's
`moba analyze --trace` file, lay the two side by side.

  kernel_trace_sum.py GPU.json [HOST.json] [--heads] [--gaps MS] [--api MS] [--templates] [--alone]

Prints: the device's span and busy time (union of all activities), the idle gaps, each
kernel's count, summed time and fair share of the busy time (time split evenly among the
activities running at once), and with HOST.json the device's busy fraction inside each of
the host's "gpu: head" intervals and before the first one. A trace recorded with
MOBA_KERNEL_TRACE_API=1 also holds the runtime API calls: their summed time by name, and
every call longer than --api MS (1 by default) in time order (relative to HOST.json's origin
when given). Kernels are grouped by name without their template arguments; --templates keeps
them (e.g. the gather kernel's instances by head dim, numerics and key step). --alone adds
each kernel's time with nothing else running, the fair shares of the time in which no
attention kernel runs (a fair share overstates what cutting a kernel that runs beside the
gathers saves: kernels/cuda/NOTES.md, fifty-third session), and the attention's waits: the
stretches between one attention kernel and the next (fifty-fourth session).
"""
import argparse
import collections
import json
import re


# The attention stage's kernels (the gathers and the tile path), by name.
ATTENTION = re.compile(r"(moba_attention_kernel|tile_attention)")


def load(path):
    with open(path) as f:
        return json.load(f)


def union(intervals):
    total, cur_s, cur_e, out = 0.0, None, None, []
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                out.append((cur_s, cur_e))
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        out.append((cur_s, cur_e))
    return out


def busy_in(merged, a, b):
    return sum(max(0.0, min(e, b) - max(s, a)) for s, e in merged)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gpu", metavar="GPU.json", help="the kernel trace (MOBA_KERNEL_TRACE)")
    ap.add_argument("host", metavar="HOST.json", nargs="?", help="the same run's `moba analyze --trace` file")
    ap.add_argument("--heads", action="store_true",
                    help="with HOST.json: the device's busy fraction inside every head interval")
    ap.add_argument("--gaps", type=float, default=0.05, metavar="MS", help="list idle gaps longer than this (0.05)")
    ap.add_argument("--api", type=float, default=1.0, metavar="MS", help="list runtime API calls longer than this (1)")
    ap.add_argument("--templates", action="store_true", help="kernels by instance, template arguments kept")
    ap.add_argument("--alone", action="store_true",
                    help="each kernel's time with nothing beside it; fair shares of the time no attention kernel "
                         "runs; the attention's waits")
    opt = ap.parse_args()
    host = load(opt.host) if opt.host else None
    every = [e for e in load(opt.gpu)["traceEvents"] if e.get("ph") == "X"]
    gpu = [e for e in every if e.get("cat") != "api"]
    templates = opt.templates
    key = (lambda n: n) if templates else (lambda n: re.sub(r"<.*", "", n))
    api = [e for e in every if e.get("cat") == "api"]
    if api:
        origin = 0.0
        if host is not None:
            origin = host["otherData"]["steady_clock_origin_ns"] / 1e3
        by_name, calls = collections.defaultdict(float), collections.Counter()
        for e in api:
            by_name[e["name"]] += e["dur"]
            calls[e["name"]] += 1
        print("runtime API calls: %d, %.1f ms in all; by name (ms, calls):" % (len(api), sum(by_name.values()) / 1e3))
        for n, t in sorted(by_name.items(), key=lambda x: -x[1])[:12]:
            print("  %-40s %9.2f %6d" % (n, t / 1e3, calls[n]))
        print("calls > %.2f ms (start ms, duration ms, thread):" % opt.api)
        for e in sorted(api, key=lambda e: e["ts"]):
            if e["dur"] > opt.api * 1e3:
                print("  %9.2f %8.2f %8d %s" % ((e["ts"] - origin) / 1e3, e["dur"] / 1e3, e["tid"], e["name"]))
    if not gpu:
        print("no device activity recorded")
        return
    acts = [(e["ts"], e["ts"] + e["dur"], e["name"], e.get("tid", 0)) for e in gpu]
    merged = union([(s, e) for s, e, _, _ in acts])
    t0, t1 = merged[0][0], merged[-1][1]
    busy = sum(e - s for s, e in merged)
    print("device: %d activities, span %.1f ms, busy %.1f ms (%.0f %%), %d streams"
          % (len(acts), (t1 - t0) / 1e3, busy / 1e3, 100 * busy / (t1 - t0), len({a[3] for a in acts})))

    # Fair share: sweep the start/end points, splitting each slice among what runs in it.
    points = sorted({p for s, e, _, _ in acts for p in (s, e)})
    share = collections.defaultdict(float)
    count = collections.Counter()
    summed = collections.defaultdict(float)
    for s, e, n, _ in acts:
        base = key(n)
        count[base] += 1
        summed[base] += e - s
    events = sorted([(s, 1, i) for i, (s, e, _, _) in enumerate(acts)] + [(e, -1, i) for i, (s, e, _, _) in enumerate(acts)])
    running, last = set(), None
    # --alone: time in which one kernel (its instances) runs with nothing else, and the fair
    # shares of the time in which no attention kernel runs (what the attention does not hide).
    alone = collections.defaultdict(float)
    bare = collections.defaultdict(float)
    for t, kind, i in events:
        if last is not None and running and t > last:
            for j in running:
                share[key(acts[j][2])] += (t - last) / len(running)
            if opt.alone:
                names = {key(acts[j][2]) for j in running}
                if len(names) == 1:
                    alone[next(iter(names))] += t - last
                if not any(ATTENTION.match(n) for n in names):
                    for j in running:
                        bare[key(acts[j][2])] += (t - last) / len(running)
        last = t
        if kind == 1:
            running.add(i)
        else:
            running.discard(i)
    width = min(90, max([40] + [len(n) for n in share])) if templates else 40
    print("%-*s %7s %10s %10s %6s" % (width, "kernel / copy", "count", "sum ms", "share ms", "share"))
    for n, v in sorted(share.items(), key=lambda x: -x[1])[:24]:
        print("%-*s %7d %10.2f %10.2f %5.1f%%" % (width, n[:width], count[n], summed[n] / 1e3, v / 1e3, 100 * v / busy))

    if opt.alone:
        print("alone: time in which the kernel's instances run with nothing else beside them")
        for n, v in sorted(alone.items(), key=lambda x: -x[1])[:12]:
            print("  %-*s %10.2f ms" % (width, n[:width], v / 1e3))
        total = sum(bare.values())
        print("no attention kernel running: %.1f ms (%.1f %% of the busy time); fair shares inside it:"
              % (total / 1e3, 100 * total / busy))
        for n, v in sorted(bare.items(), key=lambda x: -x[1])[:12]:
            print("  %-*s %10.2f ms" % (width, n[:width], v / 1e3))
        # The waits between attention kernels: the gaps of their union inside the device's span
        # (where the attention stops for something, e.g. the next window's routing rows).
        att = union([(s, e) for s, e, n, _ in acts if ATTENTION.match(key(n))])
        waits = [b - a for a, b in zip([t0] + [e for _, e in att], [s for s, _ in att] + [t1]) if b > a]
        if waits:
            waits.sort()
            long = [x for x in waits if x >= 10e3]
            print("attention waits (no attention kernel between two, idle time included): %d, median %.2f ms, "
                  "the longest %.2f ms; %d of at least 10 ms, %.1f ms in all"
                  % (len(waits), waits[len(waits) // 2] / 1e3, waits[-1] / 1e3, len(long), sum(long) / 1e3))

    gaps = [(merged[i][1], merged[i + 1][0]) for i in range(len(merged) - 1)
            if merged[i + 1][0] - merged[i][1] > opt.gaps * 1e3]
    idle = sum(b - a for a, b in gaps)
    print("idle gaps > %.2f ms: %d, %.1f ms in all" % (opt.gaps, len(gaps), idle / 1e3))

    if host is not None:
        origin = host.get("otherData", {}).get("steady_clock_origin_ns")
        if origin is None:
            print("host trace has no steady_clock_origin_ns; not aligned")
            return
        off = origin / 1e3
        spans = [e for e in host["traceEvents"] if e.get("ph") == "X"]
        heads = sorted([(e["ts"] + off, e["ts"] + off + e["dur"], e["name"]) for e in spans
                        if e["name"].startswith("gpu: head")])
        wall = [e for e in spans if e["name"] == "moba analyze (wall)"]
        if wall:
            w0, w1 = wall[0]["ts"] + off, wall[0]["ts"] + off + wall[0]["dur"]
            print("host wall %.1f ms; device first activity at +%.1f ms, last ends at +%.1f ms"
                  % ((w1 - w0) / 1e3, (t0 - w0) / 1e3, (t1 - w0) / 1e3))
            print("device busy over the wall: %.0f %%" % (100 * busy_in(merged, w0, w1) / (w1 - w0)))
        if heads:
            first = heads[0][0]
            if wall:
                print("before the first head's enqueue: %.1f ms, device busy %.1f ms"
                      % ((first - w0) / 1e3, busy_in(merged, w0, first) / 1e3))
            per = [(b - a, busy_in(merged, a, b)) for a, b, _ in heads]
            print("heads: %d, span mean %.2f ms, device busy inside them mean %.2f ms (%.0f %%)"
                  % (len(per), sum(p[0] for p in per) / len(per) / 1e3, sum(p[1] for p in per) / len(per) / 1e3,
                     100 * sum(p[1] for p in per) / max(1e-9, sum(p[0] for p in per))))
            if opt.heads:
                for (a, b, n), (d, bz) in zip(heads, per):
                    print("  %-40s +%8.1f ms  %6.2f ms  busy %5.1f %%" % (n[:40], (a - first) / 1e3, d / 1e3, 100 * bz / d))
            between = [(heads[i][1], heads[i + 1][0]) for i in range(len(heads) - 1)]
            gap = sum(max(0.0, b - a) for a, b in between)
            print("between heads (host): %.1f ms; device busy then %.1f ms"
                  % (gap / 1e3, sum(busy_in(merged, a, b) for a, b in between if b > a) / 1e3))
            last = heads[-1][1]
            if wall:
                print("after the last head: %.1f ms, device busy %.1f ms" % ((w1 - last) / 1e3, busy_in(merged, last, w1) / 1e3))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Per-tensor checksum manifest of dump files: sha256 of each tensor's stored bytes (little-endian,
C order; bf16 as its uint16 bits), so the check holds whatever HDF5 version wrote the file.

  manifest.py write MANIFEST FILE...            one line per tensor: sha256, file:dataset, dtype, shape
  manifest.py check [--dir DIR] MANIFEST [FILE...]
        recompute and compare; FILEs (default: every file in the manifest) are looked up by name
        in DIR (default: the manifest's folder). Exit 1 on any difference or missing tensor.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import schema  # noqa: E402


def rows_for(path):
    name = os.path.basename(path)
    return [(sha, "%s:%s" % (name, ds), dt, shape) for ds, dt, shape, sha in schema.tensor_checksums(path)]


def write(manifest, files):
    lines = ["# sha256 of each tensor's stored bytes; written by experiments/dump/manifest.py"]
    for f in files:
        lines += ["\t".join(r) for r in rows_for(f)]
    with open(manifest, "w") as out:
        out.write("\n".join(lines) + "\n")


def read(manifest):
    entries = {}
    with open(manifest) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                sha, key, dt, shape = line.rstrip("\n").split("\t")
                entries[key] = (sha, dt, shape)
    return entries


def check(manifest, directory, files):
    entries = read(manifest)
    names = files or sorted({k.split(":")[0] for k in entries})
    bad = 0
    for name in names:
        path = os.path.join(directory, os.path.basename(name))
        want = {k: v for k, v in entries.items() if k.split(":")[0] == os.path.basename(name)}
        if not want:
            print("FAIL %s: not in %s" % (name, manifest))
            bad += 1
            continue
        got = {key: (sha, dt, shape) for sha, key, dt, shape in rows_for(path)}
        for key in sorted(set(want) | set(got)):
            if key not in got:
                print("FAIL %s: missing" % key)
            elif key not in want:
                print("FAIL %s: not in the manifest" % key)
            elif got[key] != want[key]:
                print("FAIL %s: got %s %s %s, manifest %s %s %s" % ((key,) + got[key][::-1] + want[key][::-1]))
            else:
                continue
            bad += 1
        if all(got.get(k) == v for k, v in want.items()) and set(got) == set(want):
            print("ok   %s: %d tensors match" % (name, len(want)))
    return bad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("manifest")
    w.add_argument("files", nargs="+")
    c = sub.add_parser("check")
    c.add_argument("manifest")
    c.add_argument("files", nargs="*")
    c.add_argument("--dir")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "write":
            write(args.manifest, args.files)
            return 0
        bad = check(args.manifest, args.dir or os.path.dirname(os.path.abspath(args.manifest)), args.files)
    except (OSError, schema.DumpError, ValueError) as e:
        print("manifest: error: %s" % e, file=sys.stderr)
        return 2
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

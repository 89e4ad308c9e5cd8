#!/usr/bin/env python3
"""Compare two HDF5 files dataset by dataset and attribute by attribute (A/B checks of
`moba analyze` builds: the analysis.h5 of two binaries must agree bit for bit).

  h5_same.py A.h5 B.h5 [--ignore-attrs git_commit,dump,device]

Prints one line: datasets equal / in A, datasets in B, and the first differing names; exit 0
when every dataset and attribute of A equals B's (NaN equal to NaN) and B has no extra
dataset, else 1. The root attributes git_commit, dump and device are ignored by default.
"""
import sys

import h5py
import numpy as np


def datasets(f):
    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return names


def same(x, y):
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape or x.dtype != y.dtype:
        return False
    return bool(np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"))


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        sys.exit(__doc__)
    ignore = {"git_commit", "dump", "device"}
    for a in sys.argv[1:]:
        if a.startswith("--ignore-attrs="):
            ignore = set(a.split("=", 1)[1].split(","))
    fa, fb = h5py.File(args[0], "r"), h5py.File(args[1], "r")
    na, nb = datasets(fa), datasets(fb)
    bad = [n for n in na if n not in fb or not same(fa[n][()], fb[n][()])]
    bad += [n + " (only in B)" for n in nb if n not in fa]
    attr_bad = []

    def attrs(n, o):
        if n not in fb:
            return
        for k, v in o.attrs.items():
            if k in ignore:
                continue
            if k not in fb[n].attrs or not same(v, fb[n].attrs[k]):
                attr_bad.append(n + "@" + k)
        for k in fb[n].attrs:
            if k not in o.attrs and k not in ignore:
                attr_bad.append(n + "@" + k + " (only in B)")

    attrs("/", fa)
    fa.visititems(attrs)
    print("h5_same: %d/%d datasets equal, %d in B; %d differ, %d attributes differ %s"
          % (len(na) - len([b for b in bad if "only in B" not in b]), len(na), len(nb), len(bad), len(attr_bad),
             (bad + attr_bad)[:5]))
    sys.exit(0 if not bad and not attr_bad else 1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Prints an md5 and the size of every .text.* section (one kernel's SASS each) of a cubin.

Two builds of one .cu give the same lines when their device code is the same, without
cuobjdump / nvdisasm (absent from the build machine): compile the file to a cubin for one
architecture without -lineinfo (the line table is not in .text, but moves every byte of the
compressed .nv_fatbin), e.g. the file's nvcc command from `ninja -t commands` with
`-arch=sm_90a -cubin -o X.cubin` in place of its -gencode / -c / -o and -lineinfo dropped, then
diff the two outputs. Anonymous-namespace hashes are removed from the names.

usage: cubin_text.py FILE.cubin
"""
import hashlib
import re
import struct
import sys


def main():
    if len(sys.argv) == 2 and sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        sys.exit(0)
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        sys.exit(2)
    try:
        d = open(sys.argv[1], "rb").read()
    except OSError as e:
        print(f"cubin_text.py: {e}", file=sys.stderr)
        sys.exit(2)
    if d[:4] != b"\x7fELF" or d[4] != 2:
        sys.exit(f"{sys.argv[1]}: not a 64-bit ELF file")
    shoff, = struct.unpack_from("<Q", d, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", d, 0x3A)
    secs = [struct.unpack_from("<IIQQQQ", d, shoff + i * shentsize) for i in range(shnum)]
    strtab = secs[shstrndx][4]

    def name(off):
        end = d.index(b"\0", strtab + off)
        return d[strtab + off:end].decode()

    for nm, _typ, _flags, _addr, off, size in secs:
        s = name(nm)
        if s.startswith(".text."):
            s = re.sub(r"_GLOBAL__N__[0-9a-f]+_\d+_\w+?_cu_[0-9a-f]+", "", s)
            print(hashlib.md5(d[off:off + size]).hexdigest()[:12], size, s)


if __name__ == "__main__":
    main()

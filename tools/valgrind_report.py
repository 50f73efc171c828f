"""Reads a memcheck log and fails when any error has a frame in rnnfast's own code.

CPython itself draws memcheck reports at start-up (ld.so's strncmp, hash seeding);
those are listed as counts but are not rnnfast's. An error counts as rnnfast's when
any frame of its stack is in the compiled extension (the Cython module or csrc/)."""
import collections
import re
import sys

OURS = re.compile(r"_kernels|kernels_impl\.h|kern_(base|avx2|avx512)\.c|dispatch\.c|"
                  r"rf_common\.h|kern_template\.h")
KINDS = re.compile(r"(Conditional jump|Invalid (read|write|free)|Use of uninitialised|"
                   r"Syscall param|Mismatched free|Source and destination overlap)")


def main(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    ours, theirs = [], collections.Counter()
    for block in re.split(r"\n==\d+== \n", text):
        lines = [ln.split("== ", 1)[-1] for ln in block.splitlines() if ln.startswith("==")]
        if not lines or not KINDS.match(lines[0]):
            continue
        if any(OURS.search(f) for f in lines[1:]):
            ours.append("\n".join(lines))
        else:
            theirs[lines[0]] += 1
    summary = re.findall(r"ERROR SUMMARY: .*", text)
    print("valgrind:", summary[-1] if summary else "no summary (did valgrind run?)")
    print(f"valgrind: error contexts outside rnnfast (CPython start-up): "
          f"{sum(theirs.values())}")
    print(f"valgrind: error contexts with an rnnfast frame: {len(ours)}")
    for block in ours[:5]:
        print(block, "\n")
    return 1 if ours or not summary else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

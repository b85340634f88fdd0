"""``python -m bench.profiles FILE...``: where the samples of ``--profile`` runs went.

Reads py-spy's folded stacks (``bench/results/profiles/<scenario>/<process>.txt``) and prints,
for each function, the share of samples it was on the stack for (inclusive), highest first,
then the innermost frames (where the time was spent: a socket read is waiting, a SQL compiler
frame is CPU). ``--match`` keeps the functions whose file path contains one of the strings,
e.g. ``--match notifier/ channels/`` for the product's own code.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# "function (path/to/file.py:123)" -> "function (path/to/file.py)": lines of one function merge.
_LINE = re.compile(r":\d+\)$")


def summarize(paths: list[Path], *, match: list[str], top: int) -> str:
    inclusive: Counter[str] = Counter()
    innermost: Counter[str] = Counter()
    total = 0
    for path in paths:
        # One stack a line, "stack count". py-spy sometimes writes a frame's name as the
        # bytes it read, control characters and newlines included: the piece of such a stack
        # before the newline ends in no count and is left out (the rest counts, its outer
        # frames lost).
        for line in path.read_text(errors="replace").split("\n"):
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            samples = int(count)
            total += samples
            frames = stack.split(";")
            for frame in {_LINE.sub(")", frame) for frame in frames}:
                inclusive[frame] += samples
            innermost[frames[-1]] += samples
    if not total:
        return "no samples"

    def wanted(frame: str) -> bool:
        return not match or any(part in frame for part in match)

    lines = [f"{total} samples in {len(paths)} file(s); on the stack (inclusive):"]
    lines += [
        f"{count / total:6.1%}  {frame}"
        for frame, count in inclusive.most_common()
        if wanted(frame)
    ][:top]
    lines.append("innermost frames:")
    lines += [f"{count / total:6.1%}  {frame}" for frame, count in innermost.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profiles", description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--match", nargs="*", default=[], help="keep frames whose path has one")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarize(args.files, match=args.match, top=args.top))


if __name__ == "__main__":
    main()

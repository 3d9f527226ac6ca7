"""What the stored-artifact checksums cost (issue 20): a demo cell's wall time vs the hashing the
checksums add to it, measured in one run.

The checksum work of a cell is hashing every folder it stores once when it is written
(`write_checksums`) and once each time it is reused (`damage`). This runs one demo cell (the
demo's settings; `--steps` shortens training), then times exactly that work over every
checksummed folder the cell left in its store, and prints it as a share of the cell's time.

    python bench/checksums.py [--steps 600] [--method finetune]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.config import load_grid
from harness.grid import run_grid
from harness.store import CHECKSUMS, Store, damage, write_checksums


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600, help="train.steps of the demo cell (the demo's own: 600)")
    ap.add_argument("--method", default="finetune")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="distillbench-checksums-") as tmp:
        store = Store(Path(tmp) / "store")
        grid = load_grid(ROOT / "runs" / "demo.yaml", [f"grid.method.name=[{args.method}]", "grid.seed=[0]", f"train.steps={args.steps}"])
        start = time.perf_counter()
        run_grid(grid, "checksums", store, show_progress=False)
        cell = time.perf_counter() - start
        folders = [p.parent for p in store.root.rglob(CHECKSUMS)]
        size = sum(f.stat().st_size for d in folders for f in d.rglob("*") if f.is_file())
        start = time.perf_counter()
        for d in folders:
            write_checksums(d)
            assert damage(d) is None
        hashing = time.perf_counter() - start
    print(f"demo cell ({args.method}, {args.steps} steps): {cell:.1f} s; {len(folders)} checksummed folders, "
          f"{size / 1e6:.1f} MB; write + verify: {hashing:.3f} s = {100 * hashing / cell:.2f}% of the cell")


if __name__ == "__main__":
    main()

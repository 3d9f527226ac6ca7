"""runs/paper-qcrd-t5.yaml: the QCRD Table 1/2 grid validates and expands offline, with costs."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def test_paper_grid_dry_run_lists_cells_costs_and_what_is_missing(tmp_path):
    exe = shutil.which("distillbench", path=str(Path(sys.executable).parent)) or shutil.which("distillbench")
    assert exe, "the distillbench console script is not installed"
    env = {k: v for k, v in os.environ.items() if k != "DISTILLBENCH_DATA"}
    # an empty HF cache, and the hub off: nothing may be downloaded
    env |= {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}
    args = [exe, "grid", "runs/paper-qcrd-t5.yaml", "--dry-run"]
    if DATA.is_dir():
        args += ["--data-dir", str(DATA)]
    r = subprocess.run(args, check=False, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    cells = [x for x in lines if x.startswith("model=")]
    assert len(cells) == 32  # 2 students x 4 tasks x 4 methods
    assert "32 cells" in r.stdout and "32 with missing weights" in r.stdout
    assert all("weights MISSING (not in the local HF cache" in x for x in cells)
    assert all("steps=10000 batch=8x1" in x and "GPU-h est." in x for x in cells)
    assert any("247.6M params" in x for x in cells) and any("77.0M params" in x for x in cells)
    assert "estimated training cost" in r.stdout and "an estimate" in r.stdout
    if DATA.is_dir():  # ANLI1 / e-SNLI train are not in the shared DSS export
        anli = next(x for x in cells if "task=anli," in x)
        assert "MISSING train" in anli and "anli1_train.json" in anli
        assert "702/98/200 train/valid/test" in next(x for x in cells if "task=svamp," in x)
        assert "16 with missing data" in r.stdout
    assert not (tmp_path / "hf" / "hub").exists() or not any((tmp_path / "hf" / "hub").iterdir())

"""Write a local folder in a Hugging Face hub dataset repository's layout, for hub-path tests.

`write_hub_dataset(root, {config: {split: rows}})` writes data/<config>/<split>-00000-of-00001.parquet
(or .jsonl with fmt="json") and a README.md whose YAML `configs:` names every config and
split, exactly as hub repos such as openai/gsm8k or facebook/anli declare theirs. Loading the
folder with datasets.load_dataset(root, name=config, split=split) is the code path a hub id
takes after download.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_hub_dataset(
    root: Path, configs: dict[str, dict[str, list[dict[str, Any]]]], fmt: str = "parquet"
) -> Path:
    import datasets

    datasets.disable_progress_bars()
    lines = ["---", "configs:"]
    for config, splits in configs.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        for split, rows in splits.items():
            rel = Path("data") / config / f"{split}-00000-of-00001.{'parquet' if fmt == 'parquet' else 'jsonl'}"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            ds = datasets.Dataset.from_list(rows)
            if fmt == "parquet":
                ds.to_parquet(str(root / rel))
            else:
                ds.to_json(str(root / rel), lines=True)
            lines += [f"  - split: {split}", f"    path: {rel.as_posix()}"]
    lines.append("---")
    (root / "README.md").write_text("\n".join(lines) + "\n")
    return root

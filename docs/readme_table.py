"""The README's quickstart results table, written from the copied quickstart_seeds run (its marks keep
the rest of the README as written)."""

from __future__ import annotations

import json
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
README_MARKS = ("<!-- quickstart results: written by docs/build_results.py from "
                "docs/results/quickstart_seeds/results.json -->", "<!-- end of quickstart results -->")


def readme_quickstart_table(results: dict) -> str:
    """The README's quickstart table: SFT and EI over the seeds (mean, each seed's value in brackets),
    and EI's gain over SFT with its two-level interval."""
    k, seeds = results["k"], results["seeds"]
    lines = [f"| model | greedy maj@1 | maj@{k} | pass@{k} |", "|---|---|---|---|"]
    for name, label in (("sft", "SFT"), ("ei", "SFT -> 3 EI rounds")):
        metrics = results["methods"][name]["metrics"]
        cells = [f"{metrics[m]['mean']:.3f} ({', '.join(f'{v:.3f}' for v in metrics[m]['per_seed'])})"
                 for m in ("maj@1", f"maj@{k}", f"pass@{k}")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    gain = results["methods"]["ei"]["gain_over_sft"]["maj@1"]
    low, high = gain["ci95"]
    return ("\n".join(lines) + f"\n\nEI's greedy maj@1 gain over SFT: **{gain['mean']:+.3f} [{low:+.3f}, "
            f"{high:+.3f}]** (95%, two-level bootstrap over seeds {', '.join(map(str, seeds))} and "
            f"{results['num_questions'][0]} held-out questions each; seeds never used to choose the "
            f"recipe's settings; {results['machine']['cpu']}, {results['machine']['cores']} cores).")


def update_readme(path: Path) -> bool:
    """Rewrite the README's quickstart table between its marks from the copied quickstart_seeds run's
    ``results.json`` at ``path``; False where that file or the marks are absent."""
    text = README.read_text()
    start, end = README_MARKS
    if not path.exists() or start not in text:
        return False
    head, rest = text.split(start, 1)
    table = readme_quickstart_table(json.loads(path.read_text()))
    README.write_text(f"{head}{start}\n{table}\n{end}{rest.split(end, 1)[1]}")
    return True

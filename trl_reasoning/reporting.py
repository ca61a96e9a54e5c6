"""Run artefacts: atomic writers, markdown summaries and PNG plots.

Every file is written to a temporary name in the same folder and renamed into place, so a crash
never leaves a half-written ``metrics.json`` or ``samples.jsonl`` behind.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


class ArtifactWriteError(OSError):
    """A run artefact could not be written (disk full, read-only or missing folder); nothing half-written
    is left behind, so fixing the cause and rerunning resumes."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temporary file + rename), readable like any other file
    (mkstemp's 0600 is widened to the umask's default)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise ArtifactWriteError(err.errno, f"cannot write {path} ({err.strerror or err}); fix that and "
                                                "rerun "
                                     "the same command: it resumes after the last complete step") from None
        raise
    return path


def write_json_atomic(path: str | Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: str | Path, rows: Iterable[Mapping]) -> Path:
    return write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def peak_memory_gib() -> float:
    """Peak resident memory of this process or of its largest finished child, in GiB (Linux: KiB units)."""
    import resource

    peak_kib = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                   resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return round(peak_kib / 2**20, 2)


def machine() -> dict:
    """The CPU (model name and the matrix instruction sets that change CPU training figures), the cores this
    process may use and, where torch sees any, the GPUs, as results differ between machines."""
    info = {"platform": platform.platform(), "processor": platform.processor()}
    torch = sys.modules.get("torch")  # only when the run already imported it: reporting stays torch-free
    if torch is not None and torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        if line.startswith("model name"):
            info["cpu"] = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            info["matrix_extensions"] = sorted(f for f in flags
                                               if f.startswith(("avx512", "amx")) or f == "avx2")
            break
    info["cores"] = os.cpu_count()
    if hasattr(os, "sched_getaffinity"):  # the cores this run may use (taskset): what its wall times had
        info["cores_used"] = len(os.sched_getaffinity(0))
    return info


def cpu_text(info: Mapping) -> str:
    """``machine()``'s CPU and matrix instruction sets as one string, "AMD EPYC (avx2)": how benchmarks and
    the docs pages name a CPU, and what tells two results' CPUs apart."""
    name = info.get("cpu") or info.get("processor") or "CPU not recorded"
    return f"{name} ({', '.join(info.get('matrix_extensions', []))})"


def machine_label(info: Mapping | None) -> str:
    """``machine()``'s record in a few words, e.g. "Intel(R) Xeon(R) Processor (AVX-512, no AMX), 2 of 2
    cores"; "" for a record without one (runs from before the stage records held it)."""
    if not info or "cpu" not in info:
        return ""
    extensions = set(info.get("matrix_extensions", ()))
    widest = ("AMX" if any(e.startswith("amx") for e in extensions) else
              "AVX-512, no AMX" if "avx512f" in extensions else "AVX2, no AVX-512" if "avx2" in extensions
              else "no AVX2")
    cores = f", {info['cores_used']} of {info['cores']} cores" if "cores_used" in info else ""
    gpus = info.get("gpus") or []
    return f"{info['cpu']} ({widest}){cores}" + (f", {len(gpus)} x {gpus[0]}" if gpus else "")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats are shown with three decimals."""

    def cell(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def plot_curves(
    path: str | Path,
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    title: str,
    log_x: bool = False,
    bands: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    integer_x: bool = False,
) -> Path:
    """Save a PNG line plot of ``{label: (xs, ys)}`` (matplotlib's non-interactive backend).

    ``bands[label] = (lows, highs)`` shades an uncertainty interval around that curve; the legend
    sits outside the axes so it never hides a point; ``integer_x`` keeps ticks on whole numbers
    (rounds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7.5, 4), dpi=120)
    for label, (xs, ys) in curves.items():
        (line,) = ax.plot(xs, ys, marker="o", label=label)
        if bands and label in bands:
            ax.fill_between(xs, *bands[label], color=line.get_color(), alpha=0.15, linewidth=0)
    if log_x:
        ax.set_xscale("log", base=2)
    if integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path

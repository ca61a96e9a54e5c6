"""What every sampling backend returns, and the argument checks they share."""

from __future__ import annotations

from dataclasses import dataclass, field


class SamplingError(ValueError):
    """Bad sampling arguments or a backend that cannot run (one line naming the setting)."""


@dataclass
class Completion:
    """One sampled completion: its text (cut at the end of the answer) and generated-token count."""

    text: str
    num_tokens: int


@dataclass
class SamplingResult:
    """``completions[i][j]`` is sample ``j`` of prompt ``i``, in the caller's prompt order."""

    completions: list[list[Completion]]
    seconds: float
    backend: str = "hf"
    num_tokens: int = field(init=False)

    def __post_init__(self):
        self.num_tokens = sum(c.num_tokens for group in self.completions for c in group)

    @property
    def num_samples(self) -> int:
        """Completions drawn in all, over every prompt."""
        return sum(len(group) for group in self.completions)

    @property
    def samples_per_second(self) -> float:
        return self.num_samples / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.num_tokens / self.seconds if self.seconds else 0.0


def check_sampling_args(num_generations: int, temperature: float) -> None:
    """One-line errors for arguments that would waste a run."""
    if num_generations < 1:
        raise SamplingError(f"num_generations: need K >= 1, got {num_generations}")
    if temperature < 0:
        raise SamplingError(f"temperature: must be >= 0, got {temperature}")
    if temperature == 0 and num_generations > 1:
        raise SamplingError(
            f"temperature: 0 means greedy decoding, which gives {num_generations} identical samples; "
            "use temperature > 0 for K > 1 (maj@1 is already computed greedily)"
        )

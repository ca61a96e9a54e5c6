"""Configuration of outcome and process reward-model training."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from ..reward_models.base import HEADS
from ..sampling import SamplerBackendArguments, check_sampling_args
from ..tasks import TASKS, task_names_help


@dataclass
class RewardModelConfig(TrainingArguments):
    r"""Configuration for [`RewardModelTrainer`]. Extends transformers' `TrainingArguments` (learning
    rate, epochs, batch size, `output_dir`, `push_to_hub`, ...).

    Parameters:
        > Model

        kind (`str`, defaults to `"outcome"`): `outcome` (ORM) or `process` (PRM).
        max_length (`int`, defaults to `1024`): Longest prompt + completion in tokens (left-truncated).
        step_delimiter (`str`, defaults to `"\n"`): What separates steps.
        label_positions (`str`, defaults to `"all"`): ORM only: take the loss on `all` completion tokens
            (the paper), on each step's last token (`step_end`) or on the last token only (`final`). A PRM
            always uses `step_end`.
        aggregation (`str`, defaults to `"min"`): PRM only: a solution's score is its `min` or `prod`
            step score.
        head (`str`, defaults to `"value"`): `value`: a scalar head on the backbone (the paper's);
            `implicit`: the causal LM itself, its logit at token t being `implicit_beta` times the summed
            log-likelihood ratio to a frozen copy of the starting model up to t (Yuan et al., 2024).
            Costs a second forward pass and a second copy of the weights; learns far faster on small
            models (README).
        implicit_beta (`float`, defaults to `0.1`): Scale of the implicit head's log-likelihood ratio.
        model_init_kwargs (`dict`, *optional*): Keyword arguments for loading the model when the trainer
            gets a name or folder (as in TRL's configs); `{"trust_remote_code": true}` runs the model
            repository's own code.
    """

    kind: str = field(default="outcome", metadata={"help": "outcome (ORM) or process (PRM)."})
    max_length: int | None = field(default=1024, metadata={"help": "Longest prompt + completion in tokens "
                                                                   "(left-truncated)."})
    step_delimiter: str = field(default="\n", metadata={"help": "What separates the steps of a solution."})
    label_positions: str = field(default="all", metadata={"help": "ORM: loss on 'all' completion tokens, on "
                                                                  "'step_end' tokens, or on the 'final' "
                                                                  "token."})
    aggregation: str = field(default="min", metadata={"help": "PRM: solution score = 'min' or 'prod' of its "
                                                              "step scores."})
    head: str = field(default="value", metadata={"help": "'value' (scalar head, the paper's) or 'implicit' "
                                                         "(log-likelihood ratio to the frozen start)."})
    implicit_beta: float = field(default=0.1, metadata={"help": "Implicit head: scale of the log-likelihood "
                                                                "ratio (> 0)."})
    model_init_kwargs: dict | None = field(default=None, metadata={
        "help": "Keyword arguments for from_pretrained when the trainer loads the model from a name or "
                "folder (as TRL's configs); trust_remote_code: true runs the repository's own code."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the tokenised columns the "
                                                                         "collator needs."})
    def __post_init__(self):
        super().__post_init__()
        checks = {
            "kind": (self.kind, ("outcome", "process")),
            "label_positions": (self.label_positions, ("all", "step_end", "final")),
            "aggregation": (self.aggregation, ("min", "prod")),
            "head": (self.head, HEADS),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
        if not self.step_delimiter:
            raise ValueError("step_delimiter: must be a non-empty string")
        if self.implicit_beta <= 0:
            raise ValueError(f"implicit_beta: need > 0, got {self.implicit_beta}")


@dataclass
class RewardModelStageConfig(RewardModelConfig, SamplerBackendArguments):
    r"""The ``orm`` / ``prm`` recipe sections: [`RewardModelConfig`] plus how the stage samples and labels
    its training data (the trainer itself never reads these).

    Parameters:
        task (`str`, defaults to `"gsm8k"`): Verifier labelling the samples.
        extraction (`str`, defaults to `"strict"`): Answer extraction of the verifier.
        num_generations (`int`, defaults to `4`): Samples per training question.
        temperature (`float`, defaults to `0.7`), max_new_tokens (`int`, defaults to `256`),
        generation_batch_size (`int`, defaults to `64`): Sampling settings.
        sampling_backend (`str`, defaults to `"auto"`), vllm_kv_cache_gib, vllm_gpu_memory_utilization,
        vllm_enforce_eager, vllm_dtype: the sampling backend (see `SamplingSettings`).
        mc_rollouts (`int`, defaults to `4`): PRM only: continuations sampled after each step to label it.
        mc_estimate (`str`, defaults to `"hard"`): PRM only: `hard` (any continuation correct) or `soft`
            (share of correct continuations).
    """

    task: str = field(default="gsm8k", metadata={"help": "Task whose verifier labels the samples: "
                                                         f"{task_names_help()}."})
    extraction: str = field(default="strict", metadata={"help": "Answer extraction: strict or flexible."})
    num_generations: int = field(default=4, metadata={"help": "Samples per training question for the reward "
                                                              "data."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature for the reward data."})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest sampled completion, in tokens."})
    generation_batch_size: int = field(default=64, metadata={"help": "Sequences generated at once."})
    mc_rollouts: int = field(default=4, metadata={"help": "PRM: continuations sampled after each step to "
                                                          "label it."})
    mc_estimate: str = field(default="hard", metadata={"help": "PRM: 'hard' (any continuation correct) or "
                                                               "'soft' (share correct)."})

    def __post_init__(self):
        super().__post_init__()
        checks = {"mc_estimate": (self.mc_estimate, ("hard", "soft")),
                  "extraction": (self.extraction, ("strict", "flexible")), "task": (self.task, TASKS)}
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
        if self.mc_rollouts < 0:
            raise ValueError(f"mc_rollouts: need >= 0, got {self.mc_rollouts}")
        check_sampling_args(self.num_generations, self.temperature)
        self.backend_settings()  # checks sampling_backend and vllm_dtype

"""Configuration of Expert Iteration (Havrilla et al., 2024, section 3.1)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import SFTConfig

from ..sampling import SamplerBackendArguments, check_sampling_args
from ..tasks import TASKS, task_names_help


@dataclass
class ExpertIterationConfig(SFTConfig, SamplerBackendArguments):
    r"""Configuration for [`ExpertIterationTrainer`]. Extends TRL's `SFTConfig`: every SFT/Trainer field
    (learning rate, epochs per round, batch size, `output_dir`, `push_to_hub`, ...) applies to the
    fine-tuning step of each round.

    Parameters:
        > Rounds

        num_rounds (`int`, defaults to `3`): Rounds of sample -> filter -> fine-tune.
        sample_budget (`int` or `None`): Stop before a round that would push the cumulative number of
            sampled solutions above this budget.
        stop_when_no_new_solutions (`bool`, defaults to `True`): Stop when a round adds no new correct
            solution to the kept set.
        reinit_each_round (`bool`, defaults to `False`): Start each round's fine-tune from the initial
            checkpoint instead of continuing from the last policy. Both modes train on the union of every
            solution kept so far (deduplicated across rounds, capped per question). The paper's text resets
            the policy to its starting model before each round's fine-tune; it does not spell out how the
            rounds' data are combined (union or latest round, duplicates across rounds, caps), so neither
            mode here is "the paper's".

        > Sampling

        num_generations (`int`, defaults to `4`): K, solutions sampled per training question each round
            (the paper uses 96).
        temperature (`float`, defaults to `1.0`), top_p (`float`, defaults to `1.0`),
        max_new_tokens (`int`, defaults to `256`), generation_batch_size (`int`, defaults to `64`).
        sampling_piece_size (`int`, defaults to `0`): questions per written piece of a round's sampling
            (a round stopped mid-sampling resumes from its last piece); 0: the whole round at once.
        sampling_backend (`str`, defaults to `"auto"`): `hf`, `vllm`, `vllm_server` (running `vllm serve`
            endpoints, `vllm_server_urls` or `vllm_server_launch`) or `auto` (vLLM when installed and
            able). One vLLM engine serves the whole run: each round's fine-tuned weights are loaded into it.
        vllm_kv_cache_gib (`float`, defaults to `2.0`): vLLM on CPU: GiB for its KV cache.
        vllm_gpu_memory_utilization (`float`, defaults to `0.3`): vLLM on GPU: share of GPU memory it may
            take.
        vllm_enforce_eager (`bool`, defaults to `True`): vLLM: no graph compilation (faster start).
        vllm_dtype (`str`, defaults to `"auto"`): vLLM: dtype served (auto: the policy's, bfloat16 for a
            float32 policy on a CPU with native bf16).

        > Filtering

        task (`str`, defaults to `"gsm8k"`): Verifier used when no `reward_funcs` are given.
        extraction (`str`, defaults to `"strict"`): Answer extraction mode of the verifier.
        reward_threshold (`float`, defaults to `1.0`): A sample is kept when its summed reward reaches it.
        check_equations (`bool`, defaults to `False`): Also require every written equation `a op b = c` to
            be true, which drops lucky guesses (right answer, wrong steps); made for plain-equation
            formats such as the arithmetic task (96.7% of GSM8K reference solutions pass it).
        max_solutions_per_question (`int` or `None`): Cap on kept solutions per question over all rounds.
        deduplicate (`bool`, defaults to `True`): Keep a solution text once per question over all rounds
            (the paper's EI). Off, every sample is kept as drawn (within the cap), so the training rows
            follow the policy's own distribution: what return-conditioned RL models (see
            `ReturnConditionedTrainer`).
        include_reference_solutions (`bool`, defaults to `False`): Add the dataset's reference solutions.

        > Evaluation

        eval_num_generations (`int`, defaults to `8`): K for maj@k/pass@k on `eval_dataset` after each round.
        eval_temperature (`float`, defaults to `0.7`): Sampling temperature of those samples.
    """

    num_rounds: int = field(default=3, metadata={"help": "Rounds of sample -> filter -> fine-tune."})
    sample_budget: int | None = field(
        default=None, metadata={"help": "Stop before a round that would exceed this many sampled solutions "
                                        "in total."}
    )
    stop_when_no_new_solutions: bool = field(
        default=True, metadata={"help": "Stop when a round adds no new correct solution."}
    )
    reinit_each_round: bool = field(
        default=False,
        metadata={"help": "Start each round's fine-tune from the initial checkpoint instead of the last "
                          "policy; "
                  "both modes train on the union of all kept solutions. The paper resets to its start model; "
                  "how it combines the rounds' data is not stated."},
    )
    num_generations: int = field(default=4, metadata={"help": "K: solutions sampled per training question "
                                                              "per round."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the rounds' samples."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold."})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest sampled solution, in tokens."})
    generation_batch_size: int = field(default=64, metadata={"help": "Sequences generated at once when "
                                                                     "sampling."})
    sampling_piece_size: int = field(
        default=0, metadata={"help": "Questions per piece of a round's sampling, each written when done, so "
                                     "a round stopped mid-sampling resumes from its last piece (0: the "
                                     "whole round at once)."}
    )
    task: str = field(default="gsm8k", metadata={"help": "Task whose verifier scores samples when no "
                                                         f"reward_funcs are given: {task_names_help()}."})
    extraction: str = field(default="strict", metadata={"help": "Answer extraction mode: strict or "
                                                                "flexible."})
    reward_threshold: float = field(default=1.0, metadata={"help": "Keep a sample when its summed reward "
                                                                   "reaches this."})
    check_equations: bool = field(
        default=False,
        metadata={"help": "Also require every written equation 'a op b = c' to be true (drops lucky "
                          "guesses)."},
    )
    max_solutions_per_question: int | None = field(
        default=None, metadata={"help": "Cap on kept solutions per question, over all rounds (None: no cap)."}
    )
    deduplicate: bool = field(
        default=True, metadata={"help": "Keep each solution text once per question over all rounds (off: "
                                        "every sample as drawn, within max_solutions_per_question)."}
    )
    include_reference_solutions: bool = field(
        default=False, metadata={"help": "Also train on the dataset's reference solutions."}
    )
    eval_num_generations: int = field(default=8, metadata={"help": "K for maj@k/pass@k on eval_dataset "
                                                                   "after each round."})
    eval_temperature: float = field(default=0.7, metadata={"help": "Sampling temperature of the evaluation "
                                                                   "samples."})

    def __post_init__(self):
        super().__post_init__()
        if self.num_rounds < 1:
            raise ValueError(f"num_rounds: need at least 1, got {self.num_rounds}")
        if self.task not in TASKS:
            raise ValueError(f"task: unknown task {self.task!r}; expected one of {', '.join(TASKS)}")
        if self.extraction not in ("strict", "flexible"):
            raise ValueError(f"extraction: expected 'strict' or 'flexible', got {self.extraction!r}")
        if self.max_solutions_per_question is not None and self.max_solutions_per_question < 1:
            raise ValueError("max_solutions_per_question: need >= 1 or None")
        if self.sample_budget is not None and self.sample_budget < 1:
            raise ValueError("sample_budget: need >= 1 or None")
        check_sampling_args(self.num_generations, self.temperature)
        check_sampling_args(self.eval_num_generations, self.eval_temperature)
        self.backend_settings()  # checks sampling_backend and vllm_dtype

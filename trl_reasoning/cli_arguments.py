"""Arguments of the ``eval`` and ``sample`` commands (dataclasses, parsed by ``HfArgumentParser``);
imported by ``cli`` and by ``cli_help`` without torch, transformers or TRL."""

from __future__ import annotations

from dataclasses import dataclass, field

from .tasks import task_names_help


@dataclass
class SamplingArguments:
    """What ``eval`` and ``sample`` share: the model, the questions and how to sample them."""

    model: str = field(metadata={"help": "Policy: a local folder, a .gguf file, or a Hub id."})
    task: str = field(default="gsm8k", metadata={"help": f"Task: {task_names_help()}."})
    output: str = field(default="runs/eval", metadata={"help": "Output folder."})
    data: str | None = field(default=None, metadata={"help": "Local .jsonl/.json/.parquet file or Hub "
                                                             "dataset id (default: the task's Hub dataset)."})
    split: str = field(default="test", metadata={"help": "Split to evaluate: test or train."})
    limit: int | None = field(default=None, metadata={"help": "Evaluate only the first N questions."})
    num_generations: int = field(default=8, metadata={"help": "K: sampled completions per question (maj@k, "
                                                              "pass@k)."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature for the K samples "
                                                              "(maj@1 is always greedy)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold."})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest completion, in tokens."})
    batch_size: int = field(default=32, metadata={"help": "Sequences generated at once (prompts x samples)."})
    seed: int = field(default=0, metadata={"help": "Sampling seed; with the hf backend results do not "
                                                   "depend on the number of processes."})
    backend: str = field(default="auto", metadata={"help": "Sampling backend: auto (vLLM when installed and "
                                                           "able), hf, vllm or vllm_server."})
    server: list[str] = field(default_factory=list, metadata={"help": "Base URLs of running `vllm serve` "
                                                                      "endpoints of --model to sample "
                                                                      "through (--server URL [URL ...]); "
                                                                      "sets backend vllm_server."})
    prompt_style: str = field(default="zero_shot", metadata={"help": "zero_shot, few_shot (pretrained "
                                                                     "models) or chat (chat template)."})
    num_shots: int = field(default=4, metadata={"help": "Exemplars in a few_shot prompt (drawn from the "
                                                        "train split)."})
    exemplar_data: str | None = field(default=None, metadata={"help": "File or Hub id for few-shot "
                                                                      "exemplars (default: the task's train "
                                                                      "split)."})
    extraction: str = field(default="strict", metadata={"help": "Answer extraction: strict (#### N / 'The "
                                                                "answer is') or flexible (else last "
                                                                "number)."})
    dtype: str = field(default="auto", metadata={"help": "Model dtype: auto (float32 on CPU), float32, "
                                                         "bfloat16, float16."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run code shipped in the model's Hub "
                                                                     "repository (off unless set)."})


@dataclass
class EvalArguments(SamplingArguments):
    """Arguments of ``trl-reasoning eval``."""

    output: str = field(default="runs/eval", metadata={"help": "Folder for samples.jsonl, metrics.json, "
                                                               "summary.md."})
    reward_model: str | None = field(default=None, metadata={"help": "ORM/PRM folder or Hub id: rerank the "
                                                                     "K samples (rerank@k)."})


@dataclass
class SampleArguments(SamplingArguments):
    """Arguments of ``trl-reasoning sample``."""

    output: str = field(default="runs/samples", metadata={"help": "Folder for samples.jsonl (one labelled "
                                                                  "row per completion)."})
    mc_rollouts: int = field(default=0, metadata={"help": "Label every step with this many Monte-Carlo "
                                                          "continuations (PRM data); 0: final label only."})
    mc_estimate: str = field(default="hard", metadata={"help": "Step label from rollouts: hard (any "
                                                               "correct) or soft (share correct)."})
    step_delimiter: str = field(default="\n", metadata={"help": "What separates steps."})

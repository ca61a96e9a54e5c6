"""``Sampler``: the one way the project samples. Built from a model, its tokenizer and one
``SamplingSettings``; ``sample(prompts)`` returns a ``SamplingResult`` whichever backend runs.

The vLLM engine is started at the first vLLM call and reused until ``close()``; ``load_weights``
puts a fine-tuned policy into it (EI/RCRL rounds) instead of starting a new engine. Both backends
tokenise prompts the same way and cut completions with the same rule, so their samples are scored
alike.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence

from .forcing import vllm_refusal, vllm_rules
from .hf_backend import sample_completions
from .results import Completion, SamplingError, SamplingResult, check_sampling_args
from .settings import SamplingSettings, vllm_installed
from .text import GSM8K_ANSWER_LINE, encode_prompts, truncate


class Sampler:
    """K completions per prompt from the backend ``settings.backend`` picks.

    Args:
        model: the policy (a transformers ``PreTrainedModel``, in eval mode).
        tokenizer: its tokenizer, with a pad token.
        settings: K, temperature, lengths, stops, seed, batch size, backend.
        answer_pattern: regex whose match ends a completion (``answer_pattern_for(task)``).
        model_path: a folder or Hub id holding exactly ``model`` (config, weights, tokenizer), from
            which the vLLM engine may start; without it the model is saved to a temporary folder first.
        engine: a running ``vllm.LLM`` that already serves ``model``'s weights (TRL's colocated engine,
            kept in sync by its trainer) to sample through instead of starting one; never shut down here.
    """

    def __init__(self, model, tokenizer, settings: SamplingSettings | None = None,
                 answer_pattern: str | None = GSM8K_ANSWER_LINE, model_path: str | None = None,
                 engine=None):
        self.model, self.tokenizer = model, tokenizer
        self.settings = settings or SamplingSettings()
        self.answer_pattern, self.model_path = answer_pattern, model_path
        self._engine, self._borrowed = None, engine is not None
        if engine is not None:
            from .vllm_backend import VLLMEngine

            self._engine = VLLMEngine.serving(engine)
        self._folder: tempfile.TemporaryDirectory | None = None
        if self.settings.backend == "vllm":
            self._check_vllm(())  # fail before any work, not at the first sample
        if self.settings.backend == "vllm_server":
            self._start_servers()  # a server that is down or serves another model fails here

    # ------------------------------------------------------------------ backend choice

    def backend_for(self, logits_processors: Sequence = ()) -> str:
        """``hf`` or ``vllm``: what a call with these logits processors runs on."""
        if self.settings.backend == "hf":
            return "hf"
        if self.settings.backend == "vllm_server":
            if logits_processors:
                raise SamplingError("backend: vllm_server cannot run logits processors (this sampling forces "
                                    "tokens); use backend: vllm or hf for it")
            return "vllm"
        if self.settings.backend == "vllm":
            self._check_vllm(logits_processors)
            return "vllm"
        return "hf" if self._vllm_refusal(logits_processors) else "vllm"

    def _vllm_refusal(self, logits_processors: Sequence) -> str | None:
        from .vllm_backend import forced_token_refusal, unservable_reason

        if not vllm_installed():
            return "vLLM is not installed"
        if logits_processors and (reason := vllm_refusal(logits_processors) or forced_token_refusal()):
            return reason
        if self._borrowed:  # its owner serves the model (adapters merged by TRL's weight sync)
            return ("the borrowed engine (TRL's) was started without the forced-token processor"
                    if logits_processors else None)
        if getattr(self.model, "peft_config", None):
            return "the model has unmerged PEFT adapters (merge them first: model.merge_and_unload())"
        return unservable_reason(self.model.config)

    def _check_vllm(self, logits_processors: Sequence) -> None:
        from .vllm_backend import require_vllm

        require_vllm()
        reason = self._vllm_refusal(logits_processors)
        if reason:
            raise SamplingError(f"backend: vllm cannot sample this model: {reason}; use backend: hf (or "
                                "auto)")

    # ------------------------------------------------------------------ sampling

    def sample(self, prompts: Sequence[str | list[dict]], num_generations: int | None = None,
               temperature: float | None = None, seed: int | None = None,
               logits_processors: Sequence = (), show_progress: bool | None = None) -> SamplingResult:
        """``num_generations`` completions per prompt (defaults from the settings; temperature 0: greedy)."""
        s = self.settings
        num_generations = s.num_generations if num_generations is None else num_generations
        temperature = s.temperature if temperature is None else temperature
        seed = s.seed if seed is None else seed
        show = s.show_progress if show_progress is None else show_progress
        check_sampling_args(num_generations, temperature)
        if self.backend_for(logits_processors) == "hf":
            return sample_completions(
                self.model, self.tokenizer, prompts, num_generations, temperature, s.top_p, s.max_new_tokens,
                s.batch_size, seed, self.answer_pattern, s.stop_strings, show, logits_processors,
            )
        return self._sample_vllm(prompts, num_generations, temperature, seed, show, logits_processors)

    def _sample_vllm(
        self, prompts, num_generations: int, temperature: float, seed: int, show: bool,
        logits_processors: Sequence = (),
    ) -> SamplingResult:
        from accelerate.utils import gather_object

        from ..loading import process_state

        state = process_state()
        engine = self._start_servers() if self.settings.backend == "vllm_server" else self._start_engine()
        prompt_ids = encode_prompts(self.tokenizer, prompts)
        mine = list(range(state.process_index, len(prompt_ids), state.num_processes))
        start = time.perf_counter()
        raw = engine.generate(
            [prompt_ids[i] for i in mine],
            num_generations,
            temperature,
            self.settings.top_p,
            self.settings.max_new_tokens,
            self.settings.stop_strings,
            seed if self.settings.backend == "vllm_server" else seed * 1000 + state.process_index,
            show and state.is_local_main_process,
            **({"extra_args": rules} if (rules := vllm_rules(logits_processors)) else {}),
        )
        local = [(index, [self._cut(c) for c in group]) for index, group in zip(mine, raw, strict=True)]
        gathered = gather_object(local) if state.num_processes > 1 else local
        grouped: list[list[Completion]] = [[] for _ in prompt_ids]
        for index, group in gathered:
            grouped[index] = group
        backend = "vllm_server" if self.settings.backend == "vllm_server" else "vllm"
        return SamplingResult(completions=grouped, seconds=time.perf_counter() - start, backend=backend)

    def _cut(self, completion: Completion) -> Completion:
        return Completion(truncate(completion.text, self.answer_pattern, self.settings.stop_strings),
                          completion.num_tokens)

    # ------------------------------------------------------------------ engine

    def _start_engine(self):
        from ..loading import runs_remote_code
        from .vllm_backend import VLLMEngine, engine_length, serving_dtype

        if self._engine is None:
            dtype = serving_dtype(self.settings.vllm_dtype, str(self.model.dtype).removeprefix("torch."))
            path = self.model_path or self._save_model()
            self._engine = VLLMEngine(
                path, dtype=dtype, seed=self.settings.seed,
                max_model_len=engine_length(self.model.config), kv_cache_gib=self.settings.vllm_kv_cache_gib,
                gpu_memory_utilization=self.settings.vllm_gpu_memory_utilization,
                enforce_eager=self.settings.vllm_enforce_eager,
                trust_remote_code=runs_remote_code(self.model),  # the model's own code already runs here
            )
            if self.model_path:  # the folder may hold other weights than the model in memory
                self._engine.load_weights(self.model)
        return self._engine

    def _start_servers(self):
        """The ``vllm_server`` backend's pool: the given URLs, or servers started here from the model's
        folder; checked to serve the policy's vocabulary before any sampling."""
        from .server_backend import ServerEngine

        if self._engine is None:
            self._engine = ServerEngine.for_sampler(self)
        return self._engine

    def _save_model(self) -> str:
        self._folder = tempfile.TemporaryDirectory(prefix="trl_reasoning_vllm_")
        self.model.save_pretrained(self._folder.name)
        self.tokenizer.save_pretrained(self._folder.name)
        return self._folder.name

    def load_weights(self, model) -> None:
        """Sample from ``model`` from now on (a fine-tuned policy; merge LoRA adapters first)."""
        self.model = model
        if self._engine is not None and not self._borrowed:
            self._engine.load_weights(model, self.tokenizer)

    def close(self) -> None:
        """Stop the engine (not a borrowed one) and remove its temporary model folder."""
        if self._engine is not None and not self._borrowed:
            self._engine.close()
            self._engine = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


"""``ForcedToken``'s rule inside a vLLM engine: a V1 logits processor (imported only where vLLM is).

vLLM keeps one processor instance per engine and tells it which requests enter, leave or move within
its running batch; a request takes part when its ``SamplingParams.extra_args`` carry ``EXTRA_ARGS_KEY``
(``forcing.vllm_rules``). Requests without it cost one dictionary lookup when they join the batch.
"""

from __future__ import annotations

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from .forcing import EXTRA_ARGS_KEY


class VLLMForcedToken(LogitsProcessor):
    """Forces ``token`` after any token in ``after`` (the request's prompt counts, as in the HF rule)."""

    _after_sets: dict[tuple[int, ...], frozenset[int]] = {}  # one set per distinct rule, not per request

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        # batch index -> (prompt ids, the request's live output ids, forced token, ids it follows)
        self.rows: dict[int, tuple[list[int] | None, list[int], int, frozenset[int]]] = {}

    @classmethod
    def validate_params(cls, params) -> None:
        rule = (params.extra_args or {}).get(EXTRA_ARGS_KEY)
        if rule is not None and not (isinstance(rule, dict) and isinstance(rule.get("token"), int)
                                     and isinstance(rule.get("after"), list | tuple)):
            raise ValueError(f"extra_args[{EXTRA_ARGS_KEY!r}]: expected {{'token': int, 'after': "
                             f"[int, ...]}}, got {rule!r}")

    def is_argmax_invariant(self) -> bool:
        return False  # it changes greedy picks too

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(self.rows, batch_update, self._new_row)

    @classmethod
    def _new_row(cls, params, prompt_ids: list[int] | None, output_ids: list[int]):
        rule = (params.extra_args or {}).get(EXTRA_ARGS_KEY) if params is not None else None
        if rule is None:
            return None
        key = tuple(rule["after"])
        after = cls._after_sets.setdefault(key, frozenset(key))
        return prompt_ids, output_ids, int(rule["token"]), after

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        rows, tokens = [], []
        for index, (prompt_ids, output_ids, token, after) in self.rows.items():
            last = output_ids[-1] if output_ids else (prompt_ids[-1] if prompt_ids else None)
            if last in after:
                rows.append(index)
                tokens.append(token)
        if rows:
            index = torch.tensor(rows, device=logits.device)
            logits[index] = float("-inf")
            logits[index, torch.tensor(tokens, device=logits.device)] = 0.0
        return logits

"""The ``vllm_server`` backend: sample through running ``vllm serve`` endpoints (OpenAI-compatible).

Past one machine, sampling runs on servers of its own (each may be ``--tensor-parallel-size N`` or
``--data-parallel-size M``) while training runs elsewhere. ``VLLMServers`` spreads one call's prompts
over every server (data parallel across servers), keeps at most ``max_concurrency`` requests in flight
per server, and behaves like the in-process engine:

* prompts go as token ids (tokenised by ``text.encode_prompts`` exactly as TRL trains on them), so no
  server-side tokenisation or second BOS differs from training;
* each request carries a seed derived from the run seed and the prompt's tokens: the same prompt gets
  the same samples on any server, in any order (where the server's sampler honours per-request seeds);
* weights: ``reload(path)`` points every server at a new checkpoint through vLLM's development
  endpoint (``VLLM_SERVER_DEV_MODE=1``: ``/collective_rpc`` ``reload_weights`` with ``weights_path``,
  then ``/reset_prefix_cache``) and checks the answer; ``ServerEngine.load_weights`` writes the
  policy with its tied weights (``save_for_reload``), without which a tied head is not reloaded;
* faults: a server that fails a request ``retries`` times is dropped and its unanswered prompts go to
  the others; with none left the call fails with one line naming the URLs. Timeouts are bounded.

Only the standard library talks HTTP here; nothing is imported from vLLM, so the training machine
needs no vLLM install.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from .results import Completion, SamplingError
from .server_http import RequestError, ServerError
from .server_http import call as _call

__all__ = ["RequestError", "ServerEngine", "ServerError", "VLLMServers", "request_seed", "save_for_reload"]


def request_seed(seed: int, prompt_ids: Sequence[int]) -> int:
    """The per-request seed: a hash of the run seed and the prompt's token ids (63-bit)."""
    digest = hashlib.sha1(f"{seed}:{','.join(map(str, prompt_ids))}".encode()).hexdigest()
    return int(digest[:15], 16)


class VLLMServers:
    """A pool of ``vllm serve`` base URLs (``http://host:port``) used as one sampling engine.

    Args:
        urls: the servers' base URLs.
        timeout: seconds one request may take before it counts as failed.
        retries: failed requests after which a server is dropped (for the rest of the run).
        max_concurrency: requests in flight per server at once.
    """

    def __init__(self, urls: Sequence[str], timeout: float = 600.0, retries: int = 2,
                 max_concurrency: int = 32):
        if not urls:
            raise SamplingError("vllm_server_urls: the vllm_server backend needs at least one server URL")
        self.urls = [u.rstrip("/") for u in urls]
        self.timeout, self.retries, self.max_concurrency = timeout, max(retries, 1), max(max_concurrency, 1)
        self.models: dict[str, str] = {}  # url -> served model name
        self.dead: set[str] = set()  # dropped after `retries` failures; never asked again

    @property
    def alive(self) -> list[str]:
        return [u for u in self.urls if u not in self.dead]

    # ------------------------------------------------------------------ checks

    def check_serves(self, tokenizer, probe: str = "Question: 12 + 7 = ? Answer: 19") -> None:
        """Fail before any sampling when a server is down or serves another vocabulary than ``tokenizer``:
        each server's ``/v1/models`` must answer, and its ``/tokenize`` of ``probe`` must equal ours."""
        expected = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
        limit = min(self.timeout, 30.0)
        for url in self.urls:
            listed = _call(url, "/v1/models", timeout=limit).get("data") or [{}]
            self.models[url] = listed[0].get("id", "")
            got = _call(url, "/tokenize", {"model": self.models[url], "prompt": probe,
                                           "add_special_tokens": False}, timeout=limit)
            if got.get("tokens") != expected:
                raise SamplingError(
                    f"vllm_server_urls: {url} serves {self.models[url]!r}, whose tokenizer differs from the "
                    f"policy's ({len(got.get('tokens') or [])} vs {len(expected)} tokens for a probe text); "
                    "point it at the policy's model"
                )

    # ------------------------------------------------------------------ sampling

    def generate(self, prompt_ids: Sequence[Sequence[int]], num_generations: int, temperature: float,
                 top_p: float, max_new_tokens: int, stop_strings: Sequence[str], seed: int,
                 show_progress: bool = False) -> list[list[Completion]]:
        """Raw completions per prompt (text with the server's stop strings removed), in prompt order."""
        if not self.models:
            raise SamplingError("vllm_server: call check_serves(tokenizer) before sampling")
        params = {"n": num_generations, "temperature": temperature, "top_p": top_p if temperature else 1.0,
                  "max_tokens": max_new_tokens, "stop": list(stop_strings), "return_token_ids": True,
                  "add_special_tokens": False}

        def one(url: str, index: int) -> list[Completion]:
            body = {**params, "model": self.models[url], "prompt": list(prompt_ids[index]),
                    "seed": request_seed(seed, prompt_ids[index])}
            choices = _call(url, "/v1/completions", body, self.timeout).get("choices")
            if not choices or any(c.get("token_ids") is None for c in choices):
                raise ServerError(f"{url}/v1/completions answered without choices and their token_ids "
                                  "(return_token_ids needs vLLM >= 0.10.2)")
            ordered = sorted(choices, key=lambda c: c["index"])
            return [Completion(c["text"], len(c["token_ids"])) for c in ordered]

        progress = _progress(len(prompt_ids) * num_generations, show_progress)
        try:
            return _Dispatch(self, one, len(prompt_ids), progress, num_generations).run()
        finally:
            progress.close()

    def drop(self, url: str) -> None:
        self.dead.add(url)

    # ------------------------------------------------------------------ weights

    def reload(self, weights_path: str) -> None:
        """Point every live server at the checkpoint in ``weights_path`` (a folder the servers can read):
        ``reload_weights`` through ``/collective_rpc``, then a prefix-cache reset, so no cached prefix
        of the old weights is reused. A server that cannot is dropped; with none left this fails."""
        errors = []
        for url in self.alive:
            try:
                _call(url, "/collective_rpc", {"method": "reload_weights",
                                               "kwargs": {"weights_path": str(weights_path)}}, self.timeout)
                _call(url, "/reset_prefix_cache", {}, self.timeout)
            except SamplingError as err:
                errors.append(f"{url}: {err}")
                self.drop(url)
        if not self.alive:
            raise SamplingError(
                f"vllm_server: no server could load the weights in {weights_path} ({'; '.join(errors)}); "
                "start servers with VLLM_SERVER_DEV_MODE=1 and give them a folder they can read "
                "(vllm_server_weights_dir), or let the run start them (vllm_server_launch)"
            )

    def close(self) -> None:
        """Nothing to stop: servers given by URL belong to whoever started them."""


class _Dispatch:
    """One ``generate`` call's requests over the live servers: at most ``max_concurrency`` in flight per
    server; a server error sends the prompt back to the queue and counts against that server; a request
    error (HTTP 4xx) fails the call at once."""

    def __init__(self, pool: VLLMServers, one, count: int, progress, per_prompt: int):
        self.pool, self.one, self.progress, self.per_prompt = pool, one, progress, per_prompt
        self.results: list = [None] * count
        self.pending = list(range(count))[::-1]  # popped from the end: prompt order
        self.failures = dict.fromkeys(pool.urls, 0)
        self.running: dict = {}
        self.last_error = ""

    def run(self) -> list[list[Completion]]:
        executor = ThreadPoolExecutor(max_workers=self.pool.max_concurrency * len(self.pool.urls))
        try:
            self._fill(executor)
            while self.running:
                done, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
                for future in done:
                    self._settle(future)
                self._fill(executor)
            return self.results
        finally:  # on failure, do not wait for requests still in flight
            executor.shutdown(wait=not self.running, cancel_futures=True)

    def _fill(self, executor) -> None:
        if self.pending and not self.pool.alive:
            raise SamplingError(f"vllm_server: every server failed ({', '.join(self.pool.urls)}); "
                                f"last: {self.last_error}")
        for url in self.pool.alive:
            load = sum(1 for u, _ in self.running.values() if u == url)
            while self.pending and load < self.pool.max_concurrency:
                index = self.pending.pop()
                self.running[executor.submit(self.one, url, index)] = (url, index)
                load += 1

    def _settle(self, future) -> None:
        url, index = self.running.pop(future)
        try:
            self.results[index] = future.result()
            self.progress.update(self.per_prompt)
        except ServerError as err:
            self.pending.append(index)  # answered by another server, or by this one's retry
            self.failures[url] += 1
            self.last_error = str(err)
            if self.failures[url] >= self.pool.retries:
                self.pool.drop(url)


class ServerEngine:
    """What the ``Sampler`` holds for the ``vllm_server`` backend: the pool, the servers it started (if
    any) and the folder new weights are written to for the servers to load."""

    def __init__(self, pool: VLLMServers, launched=None, weights_dir: str | None = None):
        import tempfile

        self.pool, self.launched = pool, launched
        self._tmp = None if weights_dir else tempfile.TemporaryDirectory(prefix="trl_reasoning_weights_")
        self.weights_dir = Path(weights_dir or self._tmp.name)
        self.version = 0

    @classmethod
    def for_sampler(cls, sampler) -> ServerEngine:
        """Start (``vllm_server_launch``) or reach (``vllm_server_urls``) the servers for ``sampler``'s
        policy; the main process starts them, every process samples through them."""
        from ..loading import process_state

        s, state = sampler.settings, process_state()
        launched, urls = None, list(s.vllm_server_urls)
        if s.vllm_server_launch:
            launched, urls = _launch_on_main(sampler, state)
        pool = VLLMServers(urls, s.vllm_server_timeout, s.vllm_server_retries, s.vllm_server_max_concurrency)
        engine = cls(pool, launched, getattr(s, "vllm_server_weights_dir", None))
        try:
            pool.check_serves(sampler.tokenizer)
            # launched from a saved copy of the policy: it holds it already; a given folder may hold other
            # weights than the model in memory (as the in-process engine assumes), and servers given by
            # URL may hold any (an earlier round's, another run's): push the policy
            if not s.vllm_server_launch or sampler.model_path is not None:
                engine.load_weights(sampler.model, sampler.tokenizer)
        except BaseException:
            engine.close()
            raise
        return engine

    def generate(self, *args, **kwargs):
        return self.pool.generate(*args, **kwargs)

    def load_weights(self, model, tokenizer=None) -> None:
        """Write ``model`` to a new folder under ``weights_dir`` and point every server at it (main
        process; the others wait for its outcome, and fail with it); the previous folder is removed."""
        import shutil

        from ..loading import process_state

        if getattr(model, "peft_config", None):
            raise SamplingError("vllm_server: the model has unmerged PEFT adapters; the servers load whole "
                                "weights (merge them first: model.merge_and_unload())")
        state = process_state()
        self.version += 1
        folder = self.weights_dir / f"weights_{self.version}"

        def write_and_reload() -> None:
            save_for_reload(model, tokenizer, folder)
            self.pool.reload(str(folder))
            shutil.rmtree(self.weights_dir / f"weights_{self.version - 1}", ignore_errors=True)

        from ..distributed import gathered

        with gathered(model):  # ZeRO-3: every process gathers the shards, the main one writes them
            _on_main_shared(write_and_reload, state)

    def close(self) -> None:
        if self.launched is not None:
            self.launched.close()
            self.launched = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


TIED_WEIGHTS_FILE = "tied_weights.safetensors"


def save_for_reload(model, tokenizer, folder: Path) -> None:
    """``model`` written to ``folder`` (emptied first) so that a server's ``reload_weights`` replaces
    every weight.

    ``save_pretrained`` leaves out an LM head tied to the input embeddings (SmolLM2's), and vLLM's
    in-place reload from such a folder keeps the head it had ("Failed to load weights" for
    ``ParallelLMHead``, vLLM 0.31): the servers would sample the new layers under the first
    checkpoint's head. So a tied head is written too, in a file of its own, added to the shard index
    when there is one (vLLM reads only the shards the index lists). Only the head: other weights
    ``save_pretrained`` writes under other names (checkpoint-format conversions) are left as written."""
    import json
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    shutil.rmtree(folder, ignore_errors=True)  # an earlier engine's weights_N: no stale shard or index
    model.save_pretrained(str(folder))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    head = _tied_head_name(model)
    if head is None:
        return
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else None
    if index is not None:
        saved = set(index["weight_map"])
    else:
        with safe_open(str(folder / "model.safetensors"), "pt") as handle:
            saved = set(handle.keys())
    if head in saved:
        return
    # .cpu(), not a copy: the one tensor of the file shares its storage with nothing else in it
    save_file({head: model.get_input_embeddings().weight.detach().cpu()}, str(folder / TIED_WEIGHTS_FILE),
              metadata={"format": "pt"})
    if index is not None:
        index["weight_map"][head] = TIED_WEIGHTS_FILE
        index_path.write_text(json.dumps(index, indent=2))


def _tied_head_name(model) -> str | None:
    """The state-dict name of ``model``'s output embedding when its config ties it to the input one."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not getattr(config, "tie_word_embeddings", False) or head is None:
        return None
    names = [name for name, module in model.named_modules() if module is head]
    return f"{names[0]}.weight" if names else None


def _on_main_shared(fn, state):
    """``fn()`` on the main process; its result, or its error as one line, reaches every process (a
    failure on the main process must not leave the others waiting at a barrier)."""
    outcome = [None, None]
    if state.is_main_process:
        try:
            outcome[0] = fn()
        except SamplingError as err:
            outcome[1] = str(err)
        except Exception as err:  # noqa: BLE001 - sent to the other processes as one line
            outcome[1] = f"vllm_server: {type(err).__name__}: {err}"
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(outcome, from_process=0)
    if outcome[1] is not None:
        raise SamplingError(outcome[1])
    return outcome[0]


def _launch_on_main(sampler, state):
    """(launched servers on the main process or None, their URLs): started on this machine only."""
    import os

    from ..loading import runs_remote_code
    from .server_launch import LaunchedServers, ServerLaunch
    from .vllm_backend import engine_length, serving_dtype

    s = sampler.settings
    local = int(os.environ.get("LOCAL_WORLD_SIZE", state.num_processes))
    if local != state.num_processes:
        raise SamplingError("vllm_server_launch: servers started by the run listen on 127.0.0.1 of the main "
                            "machine, which the other machines cannot reach; start servers yourself and "
                            "give their URLs (vllm_server_urls)")
    box: dict = {}

    def launch() -> list[str]:
        dtype = serving_dtype(s.vllm_dtype, str(sampler.model.dtype).removeprefix("torch."))
        box["launched"] = LaunchedServers(
            sampler.model_path or sampler._save_model(), ServerLaunch.from_dict(s.vllm_server_launch),
            dtype, engine_length(sampler.model.config), s.seed, s.vllm_kv_cache_gib,
            s.vllm_enforce_eager, s.vllm_gpu_memory_utilization,
            trust_remote_code=runs_remote_code(sampler.model))  # the model's own code already runs here
        return box["launched"].urls

    urls = _on_main_shared(launch, state)
    return box.get("launched"), urls


def _progress(total: int, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="sample", desc="sampling (servers)", disable=not show)

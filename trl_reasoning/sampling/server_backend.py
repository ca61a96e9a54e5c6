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
  then ``/reset_prefix_cache``) and checks the answer;
* faults: a server that fails a request ``retries`` times is dropped and its unanswered prompts go to
  the others; with none left the call fails with one line naming the URLs. Timeouts are bounded.

Only the standard library talks HTTP here; nothing is imported from vLLM, so the training machine
needs no vLLM install.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from .results import Completion, SamplingError


def request_seed(seed: int, prompt_ids: Sequence[int]) -> int:
    """The per-request seed: a hash of the run seed and the prompt's token ids (63-bit)."""
    digest = hashlib.sha1(f"{seed}:{','.join(map(str, prompt_ids))}".encode()).hexdigest()
    return int(digest[:15], 16)


class ServerError(SamplingError):
    """A server refused, timed out or answered with an error."""


def _call(url: str, path: str, body: dict | None = None, timeout: float = 60.0) -> dict:
    """GET (no body) or POST JSON to ``url + path``; the decoded answer (``{}`` when empty)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url.rstrip("/") + path, data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            text = answer.read().decode()
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")[:300]
        raise ServerError(f"{url}{path} answered HTTP {err.code}: {' '.join(detail.split())}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ServerError(f"{url}{path} did not answer ({reason})") from None
    return json.loads(text) if text.strip() else {}


class VLLMServers:
    """A pool of ``vllm serve`` base URLs (``http://host:port``) used as one sampling engine.

    Args:
        urls: the servers' base URLs.
        timeout: seconds one request may take before it counts as failed.
        retries: failed attempts after which a server is dropped for the rest of the call.
        max_concurrency: requests in flight per server at once.
    """

    def __init__(self, urls: Sequence[str], timeout: float = 600.0, retries: int = 2,
                 max_concurrency: int = 32):
        if not urls:
            raise SamplingError("sampler.urls: the vllm_server backend needs at least one server URL")
        self.urls = [u.rstrip("/") for u in urls]
        self.timeout, self.retries, self.max_concurrency = timeout, max(retries, 1), max(max_concurrency, 1)
        self.models: dict[str, str] = {}  # url -> served model name
        self.roots: dict[str, str] = {}  # url -> the path or Hub id it was started from

    # ------------------------------------------------------------------ checks

    def check_serves(self, tokenizer, probe: str = "Question: 12 + 7 = ? Answer: 19") -> None:
        """Fail before any sampling when a server is down or serves another vocabulary than ``tokenizer``:
        each server's ``/v1/models`` must answer, and its ``/tokenize`` of ``probe`` must equal ours."""
        expected = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
        for url in self.urls:
            listed = _call(url, "/v1/models", timeout=min(self.timeout, 30.0)).get("data") or [{}]
            self.models[url] = listed[0].get("id", "")
            self.roots[url] = listed[0].get("root") or self.models[url]
            got = _call(url, "/tokenize", {"model": self.models[url], "prompt": probe,
                                           "add_special_tokens": False}, timeout=min(self.timeout, 30.0))
            if got.get("tokens") != expected:
                raise SamplingError(
                    f"sampler.urls: {url} serves {self.models[url]!r}, whose tokenizer differs from the "
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
        results: list[list[Completion] | None] = [None] * len(prompt_ids)
        pending = list(range(len(prompt_ids)))[::-1]  # popped from the end: prompt order
        failures = {url: 0 for url in self.urls}
        alive, lock = list(self.urls), threading.Lock()
        progress = _progress(len(prompt_ids) * num_generations, show_progress)

        def one(url: str, index: int) -> list[Completion]:
            body = {**params, "model": self.models[url], "prompt": list(prompt_ids[index]),
                    "seed": request_seed(seed, prompt_ids[index])}
            choices = sorted(_call(url, "/v1/completions", body, self.timeout)["choices"],
                             key=lambda c: c["index"])
            return [Completion(c["text"], len(c.get("token_ids") or [])) for c in choices]

        with ThreadPoolExecutor(max_workers=self.max_concurrency * len(self.urls)) as pool:
            running: dict = {}

            def fill() -> None:
                for url in list(alive):
                    load = sum(1 for u, _ in running.values() if u == url)
                    while pending and load < self.max_concurrency:
                        index = pending.pop()
                        running[pool.submit(one, url, index)] = (url, index)
                        load += 1

            fill()
            while running:
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    url, index = running.pop(future)
                    try:
                        results[index] = future.result()
                        progress.update(num_generations)
                    except ServerError as err:
                        pending.append(index)  # answered by another server, or by this one's retry
                        with lock:
                            failures[url] += 1
                            if failures[url] >= self.retries and url in alive:
                                alive.remove(url)
                        if not alive:
                            progress.close()
                            raise SamplingError(
                                f"vllm_server: every server failed ({', '.join(self.urls)}); last: {err}"
                            ) from None
                fill()
        progress.close()
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------------ weights

    def reload(self, weights_path: str) -> None:
        """Point every server at the checkpoint in ``weights_path`` (a folder the servers can read):
        ``reload_weights`` through ``/collective_rpc``, then a prefix-cache reset, so no cached prefix
        of the old weights is reused."""
        for url in self.urls:
            try:
                _call(url, "/collective_rpc", {"method": "reload_weights",
                                               "kwargs": {"weights_path": str(weights_path)}}, self.timeout)
                _call(url, "/reset_prefix_cache", {}, self.timeout)
            except ServerError as err:
                raise SamplingError(
                    f"vllm_server: {url} could not reload weights from {weights_path} ({err}); start it "
                    "with VLLM_SERVER_DEV_MODE=1, or let the project start its servers (sampler.launch)"
                ) from None

    def close(self) -> None:
        """Nothing to stop: servers given by URL belong to whoever started them."""


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
        from .server_launch import LaunchedServers, ServerLaunch
        from .vllm_backend import engine_length, serving_dtype

        s, state = sampler.settings, process_state()
        launched, urls = None, list(s.vllm_server_urls)
        if s.vllm_server_launch:
            urls = [None]
            if state.is_main_process:
                dtype = serving_dtype(s.vllm_dtype, str(sampler.model.dtype).removeprefix("torch."))
                launched = LaunchedServers(
                    sampler.model_path or sampler._save_model(), ServerLaunch.from_dict(s.vllm_server_launch),
                    dtype, engine_length(sampler.model.config), s.seed, s.vllm_kv_cache_gib,
                    s.vllm_enforce_eager, s.vllm_gpu_memory_utilization)
                urls = launched.urls
            urls = _broadcast(urls, state)
        pool = VLLMServers(urls, s.vllm_server_timeout, s.vllm_server_retries, s.vllm_server_max_concurrency)
        engine = cls(pool, launched, getattr(s, "vllm_server_weights_dir", None))
        try:
            pool.check_serves(sampler.tokenizer)
            if engine.needs_weights(sampler.model_path, launched_here=bool(s.vllm_server_launch)):
                engine.load_weights(sampler.model, sampler.tokenizer)
        except BaseException:
            engine.close()
            raise
        return engine

    def needs_weights(self, model_path: str | None, launched_here: bool) -> bool:
        """Whether the policy in memory must be pushed before sampling: servers started from a saved copy
        of it already hold it; a folder may hold other weights than the model in memory (as the
        in-process engine assumes); given servers hold it only when they serve ``model_path`` itself."""
        if launched_here:
            return model_path is not None
        return model_path is None or any(root != model_path for root in self.pool.roots.values())

    def generate(self, *args, **kwargs):
        return self.pool.generate(*args, **kwargs)

    def load_weights(self, model, tokenizer=None) -> None:
        """Write ``model`` to a new folder under ``weights_dir`` and point every server at it (main
        process; the others wait); the previous folder is removed."""
        import shutil

        from ..loading import process_state

        state = process_state()
        self.version += 1
        folder = self.weights_dir / f"weights_{self.version}"
        if state.is_main_process:
            model.save_pretrained(str(folder))
            if tokenizer is not None:
                tokenizer.save_pretrained(str(folder))
            self.pool.reload(str(folder))
            shutil.rmtree(self.weights_dir / f"weights_{self.version - 1}", ignore_errors=True)
        state.wait_for_everyone()

    def close(self) -> None:
        if self.launched is not None:
            self.launched.close()
            self.launched = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _broadcast(urls: list, state) -> list[str]:
    if state.num_processes == 1:
        return urls
    from accelerate.utils import broadcast_object_list

    box = [urls]
    broadcast_object_list(box, from_process=0)
    return box[0]


def _progress(total: int, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="sample", desc="sampling (servers)", disable=not show)


def wait_until_healthy(url: str, timeout: float, process=None) -> None:
    """Block until ``url``'s ``/health`` answers (bounded by ``timeout`` seconds); fail early when the
    server ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SamplingError(f"vllm_server: the server for {url} exited with code {process.returncode} "
                                "before it was ready (see its log)")
        try:
            _call(url, "/health", timeout=5.0)
            return
        except ServerError:
            time.sleep(1.0)
    raise SamplingError(f"vllm_server: {url} was not healthy within {timeout:.0f} s")

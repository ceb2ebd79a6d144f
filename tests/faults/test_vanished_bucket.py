"""A bucket that vanishes mid-run, for real: the S3 server (moto) is reached
through a TCP proxy, and closing the proxy refuses and cuts every connection
while the server keeps the bucket. The study stops with one line naming the
local mirror, exit 69, run.json `interrupted`; once the proxy is back,
--resume finishes the study with every trial and every epoch once."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import RUN_PY, user_study, wait_for

pytest.importorskip("moto")
from tests.cluster.test_object_store import _cli, _client, _free_port, _machine, _start_moto, _stop  # noqa: E402

PACED = """
    import time

    from trainables.api import load_checkpoint, report_epoch


    def train(config):
        start = (load_checkpoint() or {"epoch": 0})["epoch"] + 1
        for epoch in range(start, config["max_epochs"] + 1):
            time.sleep(0.3)
            report_epoch({"loss": config["x"] + 1.0 / epoch}, epoch=epoch, state={"epoch": epoch})
"""


class _Proxy:
    """127.0.0.1:port -> the S3 server; ``close`` is the bucket vanishing, ``open`` its return."""

    def __init__(self, target: int) -> None:
        self.port, self._target = _free_port(), target
        self._server: socket.socket | None = None
        self._open: list[socket.socket] = []

    def open(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
                upstream = socket.create_connection(("127.0.0.1", self._target))
            except OSError:
                return
            self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        assert self._server is not None
        self._server.shutdown(socket.SHUT_RDWR)   # wakes the accept() above
        self._server.close()
        for s in self._open:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass
        self._open.clear()


@pytest.fixture()
def proxied_s3() -> Iterator[tuple[dict[str, str], _Proxy]]:
    port = _free_port()
    moto = _start_moto(port)
    proxy = _Proxy(port)
    proxy.open()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        _client(env).create_bucket(Bucket="studies")
        yield env, proxy
    finally:
        _stop(moto)


def test_a_bucket_that_vanishes_mid_run_stops_the_study_in_one_line_and_resumes(proxied_s3, tmp_path: Path) -> None:
    s3_env, proxy = proxied_s3
    env, cwd = _machine(tmp_path, "machine", s3_env)
    spec = user_study(cwd, "paced", PACED, "metric: loss\nmode: min\nconfig: {x: 0.5}\nresources: {cpus_per_trial: 1}\n"
                      "budget: {max_epochs: 4, grace_period: 4, num_samples: 8, max_failures: 0}\n")
    args = [str(spec), "--storage", "s3://studies/vanish", "--run", "r", "--num-cpus", "2"]
    log = tmp_path / "driver.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, str(RUN_PY), *args], env={**env, "PYTHONUNBUFFERED": "1"}, cwd=cwd,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: proc.poll() is not None or "1/8 trials ended" in log.read_text(), 240, "a finished trial")
        assert proc.poll() is None, log.read_text()[-3000:]
        proxy.close()
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    said = log.read_text()
    mirror = Path(env["HOME"]) / ".cache" / "raystudies" / "remote" / "s3" / "studies" / "vanish" / "paced" / "r"
    assert proc.returncode == 69, said[-3000:]
    ours = [line for line in said.splitlines() if line.startswith("error:")]
    assert len(ours) == 1 and "cannot use the bucket" in ours[0] and f"local mirror {mirror}" in ours[0], said[-3000:]
    assert "--resume --run r --storage s3://studies/vanish" in ours[0]
    assert len(said.splitlines()) < 300, f"{len(said.splitlines())} lines: the study went on failing trials"
    assert json.loads((mirror / "run.json").read_text())["status"] == "interrupted"

    proxy.open()   # the bucket is back, with what it held
    resumed = _cli([*args, "--resume"], env, cwd)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    table = pd.read_csv(mirror / "tables" / "trials.csv")
    assert len(table) == 8 and (table["status"] == "complete").all() and (table["epochs"] == 4).all(), table

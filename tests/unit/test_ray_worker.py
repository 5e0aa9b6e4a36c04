"""Worker-node bookkeeping of the local stack, without starting anything: names, which head they
may join, how `esb up --ray-workers` reaches the settings."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cluster.cli import stack as stack_cli
from cluster.errors import StackError
from cluster.settings import Settings
from cluster.stack import local_stack, ray_worker
from cluster.stack.processes import ProcessRecord


def record(index: int) -> ProcessRecord:
    return ProcessRecord(
        pid=1, start_ticks=-1, address="127.0.0.1:6380", log_path="x", extra={"index": index}
    )


def test_worker_names_are_told_from_the_services() -> None:
    assert ray_worker.service_name(3) == "ray-worker-3"
    assert ray_worker.is_worker_name("ray-worker-12")
    assert not any(ray_worker.is_worker_name(n) for n in ("ray", "kafka", "ray-worker-", "ray-x"))


def test_workers_come_in_index_order() -> None:
    state = {"ray": record(0), "ray-worker-10": record(10), "ray-worker-2": record(2)}
    assert [name for name, _ in ray_worker.workers(state)] == ["ray-worker-2", "ray-worker-10"]


def test_workers_need_a_local_head(tmp_path: Path) -> None:
    external = Settings(esb_state_dir=tmp_path, ray_address="10.0.0.5:6379", ray_workers=2)
    with pytest.raises(StackError, match="unset RAY_ADDRESS"):
        local_stack.up(external, progress=lambda _line: None)
    assert not (tmp_path / local_stack.STATE_FILE).exists()  # failed before starting anything
    ray_worker.check_head(Settings(ray_address="10.0.0.5:6379"))  # no workers asked: fine


def test_a_negative_count_is_refused() -> None:
    with pytest.raises(StackError, match="0 or more"):
        ray_worker.check_head(Settings(ray_workers=-1))


def test_ray_workers_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().ray_workers == 0
    monkeypatch.setenv("RAY_WORKERS", "2")
    assert Settings().ray_workers == 2


def test_the_up_flag_parses() -> None:
    parser = argparse.ArgumentParser()
    stack_cli.register(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["up", "--ray-workers", "3"]).ray_workers == 3
    assert parser.parse_args(["up"]).ray_workers is None


def test_up_again_starts_only_the_missing_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    launched: list[int] = []

    def launch(_settings: Settings, _head: str, index: int, num_cpus: int = 1) -> ProcessRecord:
        launched.append(index)
        return record(index)

    monkeypatch.setattr(ray_worker, "launch", launch)
    monkeypatch.setattr(ray_worker, "is_ready", lambda _record: True)
    state = {"ray": record(0), "ray-worker-1": record(1)}
    lines: list[str] = []
    settings = Settings(ray_address="127.0.0.1:6380", ray_workers=1)
    ray_worker.ensure(settings, state, lines.append, lambda: None)
    assert launched == [] and "[esb] 1 Ray worker node(s) already running" in lines
    ray_worker.ensure(
        settings.model_copy(update={"ray_workers": 3}), state, lines.append, lambda: None
    )
    assert launched == [2, 3] and sorted(state) == [
        "ray",
        "ray-worker-1",
        "ray-worker-2",
        "ray-worker-3",
    ]

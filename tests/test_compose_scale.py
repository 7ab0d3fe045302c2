"""docker-compose.scale.yml, checked statically (the container stage runs it for real)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _scale() -> dict:  # type: ignore[type-arg]  # a YAML document
    return yaml.safe_load((REPO / "docker-compose.scale.yml").read_text())


def test_redis_is_added_with_a_password_and_not_published() -> None:
    redis = _scale()["services"]["redis"]
    assert "ports" not in redis
    assert "${REDIS_PASSWORD:?" in " ".join(redis["command"]) and "--requirepass" in redis["command"]
    assert "redis-data:/data" in redis["volumes"] and "healthcheck" in redis


def test_state_moves_to_redis_everywhere_and_the_gateway_sees_both_replicas() -> None:
    services = _scale()["services"]
    for name in ("tserver", "tserver-2", "worker"):
        env = services[name]["environment"]
        assert env["STATE_BACKEND"] == "redis", name
        assert env["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?"), name
    assert services["worker"]["command"] == ["python", "-m", "worker"]
    assert services["tserver-2"]["command"] == ["python", "-m", "tserver"]
    assert "ports" not in services["worker"] and "ports" not in services["tserver-2"]
    assert "volumes" not in services["worker"], "a worker host shares no folder"
    assert services["app"]["environment"]["TSERVER_ADDRESSES"] == "tserver:9000,tserver-2:9000"

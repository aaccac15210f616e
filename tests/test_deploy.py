"""The Dockerfile and docker-compose.yml: docker cannot run here, so check what they refer to exists."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import yaml

import core
from bot.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def arguments(keyword: str) -> list[str]:
    return [rest for kind, rest in instructions() if kind == keyword]


def environment() -> dict[str, str]:
    pairs = " ".join(arguments("ENV"))
    return dict(re.findall(r"(\w+)=(\S+)", pairs))


def nameorigin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True, text=True, timeout=60)


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_copied_files_exist_and_torch_matches_the_pin() -> None:
    for rest in arguments("COPY"):
        *sources, _ = rest.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    [torch_pin] = re.findall(r"torch==([\d.]+)", " ".join(arguments("RUN")))
    assert f"torch=={torch_pin}" in (ROOT / "constraints.txt").read_text().splitlines()


def test_the_image_runs_serve_as_a_non_root_user_with_its_data_in_the_volume() -> None:
    assert arguments("CMD") == ['["nameorigin", "serve"]']
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["nameorigin"] == "core.console:run"
    assert nameorigin("serve", "--help").returncode == 0
    [user] = arguments("USER")
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user)  # numeric and not root
    assert arguments("VOLUME") == ['["/app/data"]']
    env = environment()
    for name in ("DATABASE_URL", "MODEL_DIR", "NAMES_DATA_DIR"):
        assert "/app/data" in env[name], name
    known = {field.upper() for field in Settings.model_fields}
    assert {name for name in env if not name.startswith(("PYTHON", "PIP_"))} <= known


def test_the_healthcheck_asks_the_port_the_bot_listens_on() -> None:
    [healthcheck] = arguments("HEALTHCHECK")
    [url] = re.findall(r"http://127\.0\.0\.1:(\d+)(/health)", healthcheck)
    port, path = url
    assert arguments("EXPOSE") == [port]
    env = environment()
    assert env["HEALTH_LISTEN"].endswith(f":{port}") and env["WEBHOOK_LISTEN"].endswith(f":{port}")
    assert path == "/health"  # served by bot.server.http_app; exercised in tests/bot/test_webhook.py


def test_the_package_carries_its_models_and_migrations(tmp_path: Path) -> None:
    source = tmp_path / "source"  # what the Dockerfile copies, built outside the checkout
    for rest in arguments("COPY"):
        *names, _ = rest.split()
        for name in names:
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(ROOT / name, source / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    [wheel] = tmp_path.glob("*.whl")
    assert wheel.name.startswith(f"nameorigin-{core.__version__}-")  # one version, the library's
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"core/shipped/gru.safetensors", "core/shipped/rnn.safetensors", "migrations/env.py"} <= names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert {f"migrations/versions/{p.name}" for p in (ROOT / "migrations/versions").glob("0*.py")} <= names


def test_dockerignore_keeps_secrets_and_data_out_of_the_image() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", "data", ".venv", ".git"} <= set(ignored)


def test_compose_runs_the_bot_by_default_with_postgres_and_finetune_as_profiles() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert "profiles" not in services["bot"]  # `docker compose up` starts the bot alone
    assert services["postgres"]["profiles"] == ["postgres"] and services["finetune"]["profiles"] == ["finetune"]
    assert services["bot"]["build"] == "." and (ROOT / "Dockerfile").exists()
    for name in ("bot", "finetune"):
        assert services[name]["volumes"] == ["data:/app/data"]
        assert "/app/data/" in services[name]["environment"]["DATABASE_URL"]  # the default: SQLite in the volume
    assert services["finetune"]["command"] == ["nameorigin", "finetune"]
    assert nameorigin("finetune", "--help").returncode == 0
    for name in ("bot", "finetune"):  # each waits for a healthy server when the postgres profile is on
        assert services[name]["depends_on"]["postgres"] == {"condition": "service_healthy", "required": False}
    assert services["bot"]["ports"] == ["${BOT_HTTP_BIND:-127.0.0.1}:${BOT_HTTP_PORT:-8080}:8080"]  # loopback
    assert set(compose["volumes"]) == {"data", "pgdata"}


def test_every_service_rotates_its_log() -> None:
    # Unrotated, Docker keeps every log line (the bot writes one per update) until the disk is full.
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        options = service.get("logging", {}).get("options", {})
        assert options.get("max-size") and options.get("max-file"), f"{name} keeps its log unbounded"


def test_the_postgres_env_file_turns_the_profile_on_and_points_the_bot_at_it() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    settings = dict(
        line.split("=", 1) for line in (ROOT / "compose.postgres.env").read_text().splitlines() if "=" in line
    )
    assert settings["COMPOSE_PROFILES"] == "postgres"
    postgres = compose["services"]["postgres"]["environment"]
    url = settings["DATABASE_URL"].replace("${POSTGRES_PASSWORD}", settings["POSTGRES_PASSWORD"])
    assert url == (
        f"postgresql+asyncpg://{postgres['POSTGRES_USER']}:{settings['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{postgres['POSTGRES_DB']}"
    )
    assert postgres["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD:-nameorigin}"  # the same variable


def test_every_host_setting_of_the_bot_service_is_offered_in_both_env_files() -> None:
    # With --env-file compose.postgres.env, Compose reads that file instead of .env for the ${...} in
    # docker-compose.yml: a setting offered in .env alone is silently ignored there (BOT_HTTP_BIND was).
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    used = set(re.findall(r"\$\{(\w+)", " ".join(compose["services"]["bot"]["ports"])))
    assert used == {"BOT_HTTP_BIND", "BOT_HTTP_PORT"}
    for env_file in (".env.example", "compose.postgres.env"):
        offered = set(re.findall(r"^# (\w+)=", (ROOT / env_file).read_text(), re.MULTILINE))
        assert used <= offered, f"{env_file} does not offer {sorted(used - offered)}"

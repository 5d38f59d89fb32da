"""The deployment recipes in examples/compose and examples/kubernetes.

They are validated by the tools their users run (Debian's ``docker-compose config``, which needs
no Docker engine, the compose-spec JSON schema shipped by ``check-jsonschema``, and
``kubernetes-validate``), and every ``ollama-ready`` command in them is parsed by the real parser
and run against FakeOllama. A missing validator skips locally with the install command; under CI
(``CI`` set) it fails instead, so a green CI never means "not validated".
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ollama_ready.cli import EXIT_CODES, build_parser, main
from ollama_ready.testing import FakeOllama

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_DIR = ROOT / "examples" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
KUBERNETES_DIR = ROOT / "examples" / "kubernetes"
KUBERNETES_FILES = sorted(KUBERNETES_DIR.glob("*.yaml"))
FAKE_OLLAMA_BINARY = Path(__file__).parent / "fixtures" / "fake_ollama.py"
BIN = Path(sys.executable).parent
SCRIPT = BIN / "ollama-ready"
MODEL = "gpt-oss:20b"

INSTALL = {
    "docker-compose": "apt-get install -y docker-compose",
    "check-jsonschema": "pip install check-jsonschema (in the test extra)",
    "kubernetes-validate": "pip install kubernetes-validate (in the test extra)",
}


def tool(name: str) -> str:
    """Return the path of a validator; skip without it locally, fail without it in CI."""
    found = shutil.which(name, path=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))
    if found is not None:
        return found
    message = f"{name} is not installed: {INSTALL[name]}"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must validate the deployment recipes")
    pytest.skip(message)


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def compose() -> dict[str, Any]:
    (document,) = load_all(COMPOSE_FILE)
    assert isinstance(document, dict)
    return document


def kubernetes() -> dict[tuple[str, str], dict[str, Any]]:
    """Every Kubernetes object of the examples by (kind, name)."""
    objects = {}
    for path in KUBERNETES_FILES:
        for document in load_all(path):
            objects[(document["kind"], document["metadata"]["name"])] = document
    return objects


def commands(node: object) -> Iterator[list[str]]:
    """Yield every list in a parsed YAML tree that is an ``ollama-ready`` command line."""
    if isinstance(node, dict):
        for value in node.values():
            yield from commands(value)
    elif isinstance(node, list):
        if node and node[0] == "ollama-ready":
            yield [str(item) for item in node]
        for value in node:
            yield from commands(value)


def all_commands() -> list[list[str]]:
    found = list(commands(compose()))
    for path in KUBERNETES_FILES:
        for document in load_all(path):
            found += commands(document)
    return found


def with_host(argv: list[str], url: str) -> list[str]:
    """Return ``argv`` (without the program name) pointed at ``url`` instead of its host."""
    args = [arg for arg in argv[1:] if not arg.startswith("--host=")]
    if "--host" in args:
        at = args.index("--host")
        del args[at : at + 2]
    return [*args, "--host", url]


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, **kwargs
    )


def mutant(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    """Write ``source`` with ``old`` replaced under ``tmp_path``, at the same relative place."""
    text = source.read_text()
    assert old in text
    path = tmp_path / source.relative_to(ROOT)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace(old, new))
    return path


# --------------------------------------------------------------------------- validation


def test_compose_file_passes_docker_compose_config(tmp_path: Path) -> None:
    docker_compose = tool("docker-compose")
    result = run([docker_compose, "-f", str(COMPOSE_FILE), "config", "--quiet"])
    assert result.returncode == 0, result.stderr

    # The same check rejects a broken file: a misspelt dependency condition.
    broken = mutant(tmp_path, COMPOSE_FILE, "service_completed_successfully", "service_completed")
    failed = run([docker_compose, "-f", str(broken), "config", "--quiet"])
    assert failed.returncode != 0
    assert "service_completed" in failed.stderr


def test_compose_file_matches_the_compose_spec_schema(tmp_path: Path) -> None:
    checker = tool("check-jsonschema")
    schema = ["--builtin-schema", "vendor.compose-spec"]
    result = run([checker, *schema, str(COMPOSE_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr

    broken = mutant(tmp_path, COMPOSE_FILE, "condition: service_started", "condition: up")
    failed = run([checker, *schema, str(broken)])
    assert failed.returncode != 0
    assert "'up' is not one of" in failed.stdout


def test_kubernetes_manifests_pass_kubernetes_validate(tmp_path: Path) -> None:
    validator = tool("kubernetes-validate")
    assert [p.name for p in KUBERNETES_FILES] == ["fleet.yaml", "ollama.yaml"]
    result = run([validator, "--strict", "--quiet", *map(str, KUBERNETES_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr

    # Strict validation rejects a field that does not exist.
    broken = mutant(tmp_path, KUBERNETES_DIR / "ollama.yaml", "initContainers:", "initContainer:")
    failed = run([validator, "--strict", "--quiet", str(broken)])
    assert failed.returncode != 0
    assert "initContainer" in failed.stdout + failed.stderr


# --------------------------------------------------------------------------- what the recipes say


def test_compose_recipe() -> None:
    services = compose()["services"]
    assert set(services) == {"ollama", "ollama-init", "generator"}
    assert services["ollama"]["healthcheck"]["test"] == ["CMD", "ollama", "list"]
    for service in services.values():
        assert "curl" not in service.get("healthcheck", {}).get("test", [])

    init = services["ollama-init"]
    assert init["command"] == ["ollama-ready", "ensure", MODEL, "--progress", "lines"]
    assert init["restart"] == "no"
    assert init["environment"]["OLLAMA_HOST"] == "ollama:11434"
    depends = services["generator"]["depends_on"]
    assert depends == {"ollama-init": {"condition": "service_completed_successfully"}}

    readme = (COMPOSE_DIR / "README.md").read_text()
    assert "docker compose up --wait" in readme
    assert "service_completed_successfully" in readme


def test_compose_images_are_built_from_what_the_context_keeps() -> None:
    dockerfile = COMPOSE_DIR / "Dockerfile"
    stages = re.findall(r"^FROM \S+ AS (\S+)$", dockerfile.read_text(), re.MULTILINE)
    for service in ("ollama-init", "generator"):
        build = compose()["services"][service]["build"]
        context = (COMPOSE_DIR / build["context"]).resolve()
        assert context == ROOT
        assert (context / build["dockerfile"]).resolve() == dockerfile
        assert build["target"] in stages
    _assert_context_keeps_copied_paths(dockerfile)


def _assert_context_keeps_copied_paths(dockerfile: Path) -> None:
    """Every COPY source exists and is re-included by the Dockerfile's own .dockerignore."""
    ignore = dockerfile.with_name("Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    sources = [
        source
        for line in dockerfile.read_text().splitlines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source.rstrip("/") in kept, source


def test_kubernetes_dockerfile_context() -> None:
    _assert_context_keeps_copied_paths(KUBERNETES_DIR / "Dockerfile")


def test_kubernetes_deployment_pulls_in_an_init_container_and_probes_with_check() -> None:
    deployment = kubernetes()[("Deployment", "ollama")]
    pod = deployment["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["command"][:3] == ["ollama-ready", "ensure", MODEL]
    assert "serve" in init["command"]  # --wait serve: the init container brings its own server
    (server,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    assert {m["name"]: m["mountPath"] for m in init["volumeMounts"]} == mounts
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = server[probe]["exec"]["command"]
        assert command[:2] == ["ollama-ready", "check"], probe
        timeout = float(_option(command, "--timeout"))
        assert server[probe]["timeoutSeconds"] > timeout, probe


def test_kubernetes_fleet_job_covers_every_member() -> None:
    objects = kubernetes()
    fleet = objects[("StatefulSet", "ollama-fleet")]
    service = objects[("Service", "ollama-fleet")]
    job = objects[("Job", "ollama-fleet-prepull")]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert fleet["spec"]["serviceName"] == "ollama-fleet"

    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == fleet["spec"]["replicas"]
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    (rule,) = spec["podFailurePolicy"]["rules"]
    permanent = set(rule["onExitCodes"]["values"])
    assert permanent <= set(EXIT_CODES)
    assert permanent.isdisjoint({0, 3, 5})  # not ready in time, pull failed: worth a retry

    (container,) = spec["template"]["spec"]["containers"]
    host = _option(container["command"], "--host")
    assert host == "ollama-fleet-$(MEMBER).ollama-fleet:11434"
    (member,) = (e for e in container["env"] if e["name"] == "MEMBER")
    assert "job-completion-index" in member["valueFrom"]["fieldRef"]["fieldPath"]


def _option(argv: list[str], name: str) -> str:
    for at, arg in enumerate(argv):
        if arg == name:
            return argv[at + 1]
        if arg.startswith(f"{name}="):
            return arg.partition("=")[2]
    raise AssertionError(f"{name} not in {argv}")


def test_every_recipe_command_is_accepted_by_the_parser() -> None:
    found = all_commands()
    assert len(found) >= 9  # init, healthcheck, 3 + 3 probes, initContainer, Job
    parser = build_parser()
    for argv in found:
        try:
            parser.parse_args([arg.replace("$(MEMBER)", "0") for arg in argv[1:]])
        except SystemExit as exc:
            pytest.fail(f"{argv} is not a valid command line (exit {exc.code})")


# --------------------------------------------------------------------------- running them


def test_compose_init_command_ensures_the_model(tmp_path: Path) -> None:
    init = compose()["services"]["ollama-init"]
    with FakeOllama(tick=0.01) as server:
        environ = {**os.environ, **init["environment"], "OLLAMA_HOST": server.url}
        first = run([str(SCRIPT), *init["command"][1:]], env=environ)
        again = run([str(SCRIPT), *init["command"][1:]], env=environ)
        assert server.has_model(MODEL)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"ready: {MODEL} on {server.url}")
    assert f"{MODEL}: pulling manifest" in first.stderr
    assert "\x1b" not in first.stderr
    assert again.returncode == 0, again.stderr
    assert "already present" in again.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the server in /proc")
def test_kubernetes_init_command_starts_its_own_server(tmp_path: Path) -> None:
    init = kubernetes()[("Deployment", "ollama")]["spec"]["template"]["spec"]["initContainers"][0]
    binary = tmp_path / "bin" / "ollama"
    binary.parent.mkdir()
    binary.write_text(f"#!{sys.executable}\n{FAKE_OLLAMA_BINARY.read_text()}")
    binary.chmod(0o755)
    port = _free_port()
    environ = {e["name"]: e["value"] for e in init["env"]}
    assert environ["OLLAMA_HOST"] == "127.0.0.1:11434"
    environ = {
        **os.environ,
        **environ,
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        "PATH": f"{binary.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    try:
        result = run([str(SCRIPT), *init["command"][1:]], env=environ)
    finally:
        _stop_fake_servers(port)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ready: {MODEL} on http://127.0.0.1:{port}")
    assert f"{MODEL}: success" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop_fake_servers(port: int) -> None:
    """Stop the fake ``ollama serve`` that the command started (it outlives the command)."""
    import signal

    wanted = ["ollama_ready.testing", "--port", str(port)]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if all(part in argv for part in wanted):
            os.kill(int(entry.name), signal.SIGTERM)


def test_probe_commands_answer_as_kubelet_expects(capsys: pytest.CaptureFixture[str]) -> None:
    server_spec = kubernetes()[("Deployment", "ollama")]["spec"]["template"]["spec"]
    probes = {p: server_spec["containers"][0][p]["exec"]["command"] for p in _PROBES}
    with FakeOllama(tick=0.01) as server:
        before = {p: main(with_host(argv, server.url)) for p, argv in probes.items()}
        server.add_model(MODEL)
        after = {p: main(with_host(argv, server.url)) for p, argv in probes.items()}
    capsys.readouterr()
    assert before == {"startupProbe": 0, "readinessProbe": 4, "livenessProbe": 0}
    assert after == dict.fromkeys(_PROBES, 0)


_PROBES = ("startupProbe", "readinessProbe", "livenessProbe")

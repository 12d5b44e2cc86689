"""deploy/: the container image, the compose stack and the Kubernetes manifests agree with the
code and with each other: every `manxue` command line and flag exists, the configs load through
the real settings loader, environment variables are ones the code reads, ports, probes, paths
and the drain timing match. Offline: nothing here needs Docker, nginx or a cluster."""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import time
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from manxue.accounting.prices import PriceBook
from manxue.cli import app
from manxue.settings import Settings, load_settings, settings_from_dict

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SRC = ROOT / "src" / "manxue"
DOCS = ROOT / "docs" / "deploy.md"
CONFIG_TOML = DEPLOY / "manxue.toml"
GATEWAYS = ("gateway1", "gateway2")
# Environment variables the gateway containers may set that manxue itself does not read:
# the process's own (the interpreter's and the shell's) and libpq's password, which psycopg
# reads when database_url carries none.
PROCESS_ENV = {"PATH", "HOME", "PYTHONUNBUFFERED"}
LIBPQ_ENV = {"PGPASSWORD"}
# Kubernetes kinds that live in no namespace.
CLUSTER_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}


# ---------- reading the files ----------

@cache
def dockerfile() -> list[tuple[int, str, str]]:
    """(stage, INSTRUCTION, arguments) of deploy/Dockerfile; continuation lines joined,
    ARG defaults substituted into FROM."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    args: dict[str, str] = {}
    out: list[tuple[int, str, str]] = []
    stage = -1
    for line in joined.splitlines():
        if not line.strip():
            continue
        word, _, rest = line.strip().partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "ARG" and stage < 0 and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
        if word == "FROM":
            stage += 1
            rest = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest)
        out.append((stage, word, rest))
    return out


def runtime_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage: the image that runs."""
    last = max(stage for stage, _, _ in dockerfile())
    return [(word, rest) for stage, word, rest in dockerfile() if stage == last]


def instruction(word: str) -> list[str]:
    return [rest for w, rest in runtime_stage() if w == word]


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list), f"not exec form (a JSON array): {rest}"
    return [str(v) for v in value]


def image_entrypoint() -> list[str]:
    (entry,) = instruction("ENTRYPOINT")
    return exec_form(entry)


def image_cmd() -> list[str]:
    (cmd,) = instruction("CMD")
    return exec_form(cmd)


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for rest in instruction("ENV"):
        for item in shlex.split(rest):
            name, _, value = item.partition("=")
            env[name] = value
    return env


@cache
def compose() -> dict[str, Any]:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def services() -> dict[str, Any]:
    svc = compose()["services"]
    assert isinstance(svc, dict)
    return svc


def manxue_services() -> dict[str, Any]:
    """The compose services that run the image of deploy/Dockerfile."""
    return {name: s for name, s in services().items()
            if s.get("build", {}).get("dockerfile") == "deploy/Dockerfile"}


@cache
def k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                assert isinstance(doc, dict), f"{path.name}: a document that is not a mapping"
                docs.append(doc)
    return docs


def k8s(kind: str) -> list[dict[str, Any]]:
    return [d for d in k8s_docs() if d["kind"] == kind]


def one(kind: str) -> dict[str, Any]:
    (doc,) = k8s(kind)
    return doc


def pod_specs() -> list[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every workload that runs manxue."""
    return [(f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"])
            for d in k8s("Deployment") + k8s("Job")]


def gateway_container() -> dict[str, Any]:
    (container,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def configmap_toml() -> tuple[str, str]:
    """(key, TOML text) of the ConfigMap that holds the gateway's config."""
    (key, text), = one("ConfigMap")["data"].items()
    return key, text


def k8s_settings() -> Settings:
    key, text = configmap_toml()
    return settings_from_dict(tomllib.loads(text), source=f"ConfigMap {key}")


def compose_settings() -> Settings:
    return load_settings(CONFIG_TOML)


@cache
def nginx_conf() -> str:
    text = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def url_in(argv: list[str]) -> tuple[int, str]:
    """(port, path) of the loopback URL a health-check command fetches."""
    m = re.search(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/[\w/-]*)", " ".join(argv))
    assert m, f"no loopback URL in {argv}"
    return int(m.group(1)), m.group(2)


def seconds(value: str | int) -> float:
    """A compose duration (`20s`, `1m30s`) in seconds."""
    if isinstance(value, int):
        return float(value)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"not a duration: {value}"
    return sum(float(n) * units[u] for n, u in parts)


def cpu_cores(value: str | int) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


# ---------- the command line ----------

# typer 0.2x carries its own copy of click, older typers use click itself: commands are
# recognised by what they have, not by class.

@cache
def root_command() -> Any:
    return typer.main.get_command(app)


def subcommands(cmd: Any) -> dict[str, Any] | None:
    """A group's subcommands by name; None for a command."""
    commands = getattr(cmd, "commands", None)
    return commands if isinstance(commands, dict) else None


def option_names(cmd: Any) -> set[str]:
    names = {"--help"}
    for p in cmd.params:
        if p.param_type_name == "option":
            names.update(p.opts + p.secondary_opts)
    return names


def resolve(argv: list[str]) -> tuple[Any, list[str], list[str]]:
    """(command, its arguments, the subcommand path) for `manxue ARGV`; fails on an unknown
    subcommand or an unknown option anywhere on the line."""
    cmd = root_command()
    rest = list(argv)
    path: list[str] = []
    shown = " ".join(["manxue", *argv])
    while (subs := subcommands(cmd)) is not None and rest:
        token = rest[0]
        here = " ".join(["manxue", *path])
        if token.startswith("-"):
            assert token.split("=")[0] in option_names(cmd), f"`{shown}`: {here} has no option {token}"
            if token in ("--help", "--version"):
                return cmd, rest, path
            rest.pop(0)
            continue
        assert token in subs, f"`{shown}`: {here} has no subcommand {token!r}"
        path.append(token)
        cmd = subs[token]
        rest.pop(0)
    assert subcommands(cmd) is None, f"`{shown}` names no command"
    for token in rest:
        if token.startswith("--"):
            assert token.split("=")[0] in option_names(cmd), \
                f"`{shown}`: `manxue {' '.join(path)}` has no option {token}"
    return cmd, rest, path


def check_argv(argv: list[str]) -> None:
    """`manxue ARGV` exists and its arguments parse exactly as the real CLI parses them."""
    cmd, rest, path = resolve(argv)
    if subcommands(cmd) is not None:  # `manxue --version`, `manxue --help`
        return
    try:
        cmd.make_context(" ".join(["manxue", *path]), list(rest))
    except Exception as exc:
        if not hasattr(exc, "format_message"):  # not a usage error of the command line
            raise
        pytest.fail(f"`manxue {' '.join(argv)}` does not parse: {exc.format_message()}")


def manxue_argvs() -> list[tuple[str, list[str]]]:
    """(where, the arguments after `manxue`) of every command line that runs manxue."""
    found: list[tuple[str, list[str]]] = []
    entry = image_entrypoint()
    assert entry == ["manxue"], f"the image's ENTRYPOINT is {entry}, not manxue"
    found.append(("Dockerfile ENTRYPOINT + CMD", image_cmd()))
    for stage, word, rest in dockerfile():
        if word == "RUN":
            for m in re.finditer(r"(?:^|&&|;)\s*manxue\s+([^&;]*)", rest):
                found.append((f"Dockerfile stage {stage} RUN", shlex.split(m.group(1))))
    for name, s in manxue_services().items():
        command = s.get("command", image_cmd())
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        found.append((f"compose service {name}", argv))
    for where, spec in pod_specs():
        for c in spec["containers"] + spec.get("initContainers", []):
            command = c.get("command", image_entrypoint())
            assert command == ["manxue"], f"{where}: container {c['name']} runs {command}"
            found.append((f"{where} container {c['name']}", list(c.get("args", image_cmd()))))
    return found


# `manxue ...` written in text: inside backticks, after `exec SERVICE` or `exec POD --`, or
# as a line of a fenced code block. Only the subcommands and --flags are checked (the rest
# are placeholders such as NAME or DIR).
INLINE_COMMAND = re.compile(r"(?:`|\bexec\s+(?:-\w+\s+\S+\s+)*\S+\s+(?:--\s+)?)manxue\s+([^`\n]*)")
FENCED_BLOCK = re.compile(r"^```[\w-]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
BLOCK_COMMAND = re.compile(r"^\s*(?:\$\s+)?manxue\s+(.*)$", re.MULTILINE)


def text_commands(text: str) -> list[list[str]]:
    found = [m.group(1) for m in INLINE_COMMAND.finditer(text)]
    for block in FENCED_BLOCK.finditer(text):
        found += [m.group(1) for m in BLOCK_COMMAND.finditer(block.group(1))]
    out = []
    for line in found:
        words = []
        for token in line.split():
            if token in ("&&", "|", ";", "\\") or token.startswith(("#", "$", "<", ">")):
                break
            words.append(token.strip("'\""))
        out.append(words)
    return out


def deploy_section() -> str:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("## Containers and Kubernetes")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


# ---------- the environment ----------

@cache
def env_names_read_by_code() -> set[str]:
    """Environment variables the package reads: os.environ / os.getenv, a typer option's
    envvar, or a `..._ENV = "NAME"` constant."""
    patterns = [
        r"os\.(?:environ\.get|environ\.setdefault|getenv)\(\s*\"([A-Z][A-Z0-9_]+)\"",
        r"os\.environ\[\"([A-Z][A-Z0-9_]+)\"\]",
        r"envvar=\"([A-Z][A-Z0-9_]+)\"",
        r"^[A-Z_]*ENV\w*\s*(?::\s*\w+\s*)?=\s*\"([A-Z][A-Z0-9_]+)\"",
    ]
    names: set[str] = set()
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for pattern in patterns:
            names.update(re.findall(pattern, text, re.MULTILINE))
    return names


def allowed_env(settings: Settings) -> set[str]:
    api_key_envs = {d.api_key_env for d in settings.deployments if d.api_key_env}
    return env_names_read_by_code() | api_key_envs | PROCESS_ENV | LIBPQ_ENV


# ================= tests =================

def test_every_yaml_file_parses() -> None:
    files = sorted(DEPLOY.rglob("*.y*ml"))
    assert DEPLOY / "compose.yaml" in files
    assert len([f for f in files if f.parent == K8S]) >= 6
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        assert docs, f"{path.relative_to(ROOT)} is empty"


def test_every_kubernetes_document_is_a_named_object() -> None:
    docs = k8s_docs()
    kinds = {d.get("kind") for d in docs}
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "Service",
            "HorizontalPodAutoscaler", "Job"} <= kinds
    (namespace,) = [d["metadata"]["name"] for d in k8s("Namespace")]
    for d in docs:
        assert isinstance(d.get("apiVersion"), str) and d["apiVersion"], d
        assert isinstance(d.get("kind"), str) and d["kind"], d
        meta = d.get("metadata")
        assert isinstance(meta, dict) and meta.get("name"), f"{d['kind']}: no metadata.name"
        if d["kind"] not in CLUSTER_KINDS:
            assert meta.get("namespace") == namespace, f"{d['kind']}/{meta['name']}: namespace"


def test_every_manxue_command_line_exists_in_the_cli() -> None:
    argvs = manxue_argvs()
    assert {where.split()[0] for where, _ in argvs} >= {"Dockerfile", "compose", "Deployment/manxue",
                                                        "Job/manxue-migrate"}
    for where, argv in argvs:
        assert argv, f"{where}: manxue with no arguments"
        try:
            check_argv(argv)
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from None


def test_manxue_commands_in_comments_and_docs_exist() -> None:
    texts = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
             for p in sorted(DEPLOY.rglob("*")) if p.is_file()}
    texts["docs/deploy.md (Containers and Kubernetes)"] = deploy_section()
    checked = 0
    for where, text in texts.items():
        for words in text_commands(text):
            try:
                resolve(words)
            except AssertionError as exc:
                raise AssertionError(f"{where}: {exc}") from None
            checked += 1
    assert checked >= 5


def test_the_cli_checker_refuses_what_does_not_exist() -> None:
    for argv in (["db", "upgrade"], ["serve", "--no-such-flag"], ["keys"], ["serve", "--port", "x"]):
        with pytest.raises((AssertionError, pytest.fail.Exception)):
            check_argv(argv)


def test_the_configs_load_through_the_settings_loader() -> None:
    key, _ = configmap_toml()
    assert key == "manxue.toml"
    for settings in (compose_settings(), k8s_settings()):
        s = settings.server
        assert s.host == "0.0.0.0", "the gateway must listen beyond the container's loopback"
        assert settings.billing.enabled
        assert settings.database_url and settings.database_url.startswith("postgresql://")
        assert settings.redis_url and settings.redis_url.startswith("redis://")
        assert ":" not in (settings.database_url.split("//", 1)[1].split("@")[0]), \
            "a password in database_url: it belongs in the Secret (PGPASSWORD)"
        assert s.trusted_proxies, "the proxy in front must be trusted for X-Forwarded-For"
        assert s.drain_seconds > 0
        assert settings.deployments
        book = PriceBook.from_settings(settings)
        for d in settings.deployments:
            if d.cost_price_list:
                now = time.time()
                assert book.lookup_at(d.cost_price_list, d.upstream_model or d.model, now) \
                    or book.lookup_at(d.cost_price_list, d.model, now), \
                    f"{d.name}: {d.cost_price_list} prices neither its upstream model nor its model"


def test_the_config_path_is_where_the_config_is_mounted() -> None:
    cmd = image_cmd()
    config_path = cmd[cmd.index("--config") + 1]
    mount_dir, filename = config_path.rsplit("/", 1)
    for name, s in manxue_services().items():
        mounts = [v.split(":") for v in s["volumes"]]
        assert [f"./{CONFIG_TOML.name}", config_path, "ro"] in mounts, f"compose {name}"
    key, _ = configmap_toml()
    assert key == filename
    cm_name = one("ConfigMap")["metadata"]["name"]
    for where, spec in pod_specs():
        volumes = {v["name"]: v for v in spec["volumes"]}
        (c,) = spec["containers"]
        args = c["args"]
        assert args[args.index("--config") + 1] == config_path, where
        (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == mount_dir]
        assert volumes[mount["name"]]["configMap"]["name"] == cm_name, where
        assert mount.get("readOnly") is True, where


def test_ports_agree_everywhere() -> None:
    ports: dict[str, int] = {
        "deploy/manxue.toml [server] port": compose_settings().server.port,
        "ConfigMap [server] port": k8s_settings().server.port,
    }
    (expose,) = instruction("EXPOSE")
    ports["Dockerfile EXPOSE"] = int(expose.split("/")[0])
    (health,) = instruction("HEALTHCHECK")
    health_port, health_path = url_in(exec_form(health.split(" CMD ", 1)[1]))
    ports["Dockerfile HEALTHCHECK"] = health_port
    assert health_path == "/health"
    for name, s in manxue_services().items():
        if "healthcheck" in s:
            ports[f"compose {name} healthcheck"] = url_in(s["healthcheck"]["test"])[0]
    upstream = re.search(r"upstream\s+\w+\s*\{(.*?)\}", nginx_conf(), re.DOTALL)
    assert upstream, "nginx.conf has no upstream block"
    servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", upstream.group(1), re.MULTILINE)
    assert sorted(host for host, _ in servers) == sorted(GATEWAYS)
    for host, port in servers:
        ports[f"nginx upstream {host}"] = int(port)
    container = gateway_container()
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    (ports["Deployment containerPort"],) = named.values()

    def number(port: int | str) -> int:
        return named[port] if isinstance(port, str) else port

    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if probe in container:
            ports[f"Deployment {probe}"] = number(container[probe]["httpGet"]["port"])
    (svc_port,) = one("Service")["spec"]["ports"]
    ports["Service targetPort"] = number(svc_port["targetPort"])
    assert len(set(ports.values())) == 1, f"ports disagree: {ports}"


def test_environment_variables_are_ones_the_code_reads() -> None:
    assert {"MANXUE_ADMIN_KEY", "MANXUE_CONFIG", "MANXUE_DATA_DIR"} <= env_names_read_by_code()
    used: dict[str, set[str]] = {"Dockerfile ENV": set(image_env())}
    allowed = allowed_env(compose_settings())
    for name, s in manxue_services().items():
        used[f"compose {name}"] = set(s.get("environment", {}))
    secrets = {d["metadata"]["name"]: set(d.get("stringData", {}) | d.get("data", {}))
               for d in k8s("Secret")}
    for where, spec in pod_specs():
        for c in spec["containers"]:
            names = {e["name"] for e in c.get("env", [])}
            for source in c.get("envFrom", []):
                names |= secrets[source["secretRef"]["name"]]
            used[f"{where} container {c['name']}"] = names
    k8s_allowed = allowed_env(k8s_settings())
    for where, names in used.items():
        unknown = names - (k8s_allowed if where.startswith(("Deployment", "Job")) else allowed)
        assert not unknown, f"{where} sets {sorted(unknown)}, which nothing reads"
    # What the gateways need is given to them.
    gateway_env = used["Deployment/manxue container gateway"]
    needed = {"MANXUE_ADMIN_KEY", "PGPASSWORD"} | {
        d.api_key_env for d in k8s_settings().deployments if d.api_key_env}
    assert needed <= gateway_env, f"the Deployment lacks {sorted(needed - gateway_env)}"
    for name in GATEWAYS:
        needed = {"MANXUE_ADMIN_KEY", "PGPASSWORD"} | {
            d.api_key_env for d in compose_settings().deployments if d.api_key_env}
        assert needed <= used[f"compose {name}"], f"compose {name}"


def test_probes_and_draining() -> None:
    container = gateway_container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    if "startupProbe" in container:
        assert container["startupProbe"]["httpGet"]["path"] == "/health"
    spec = one("Deployment")["spec"]["template"]["spec"]
    drain = k8s_settings().server.drain_seconds
    assert spec["terminationGracePeriodSeconds"] > drain + 5
    ready = container["readinessProbe"]
    assert drain >= ready.get("periodSeconds", 10) * ready.get("failureThreshold", 3), \
        "drain_seconds must outlast the readiness probe's period × failureThreshold"
    compose_drain = compose_settings().server.drain_seconds
    for name in GATEWAYS:
        s = services()[name]
        assert seconds(s["stop_grace_period"]) > compose_drain + 5, name
        assert url_in(s["healthcheck"]["test"])[1] in ("/ready", "/health"), name


def test_the_image_runs_as_a_user_without_privileges() -> None:
    stages = [rest for _, word, rest in dockerfile() if word == "FROM"]
    assert len(stages) >= 2, "a builder stage and a runtime stage"
    assert stages[-1].split()[0] == "python:3.11-slim"
    (user,) = instruction("USER")
    uid = user.split(":")[0]
    assert uid not in ("root", "0"), "the image runs as root"
    assert uid.isdigit(), "a numeric USER, so that runAsNonRoot can check it"
    assert instruction("HEALTHCHECK")
    (volume,) = instruction("VOLUME")
    data_dir = compose_settings().data_dir
    assert data_dir and exec_form(volume) == [data_dir] == [k8s_settings().data_dir]
    assert image_env().get("MANXUE_DATA_DIR") == data_dir
    for where, spec in pod_specs():
        ctx = spec["securityContext"]
        assert ctx["runAsNonRoot"] is True and str(ctx["runAsUser"]) == uid, where
        for c in spec["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert any(m["mountPath"] == data_dir for m in c["volumeMounts"]), \
                f"{where}: no writable volume at {data_dir}"


def test_the_builder_compiles_llama_cpp_as_the_package_requires() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (wanted,) = [d for d in project["dependencies"] if d.startswith("llama-cpp-python")]
    runs = " ".join(rest for stage, word, rest in dockerfile() if word == "RUN" and stage == 0)
    assert f'"{wanted}"' in runs, f"the builder stage does not install {wanted}"
    assert "pip install ." in runs
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert "index-url" not in text
    urls = re.findall(r"https?://[^\s'\"]+", text)
    assert all(re.match(r"https?://(127\.0\.0\.1|localhost)[:/]", u) for u in urls), urls


def test_compose_stack_structure() -> None:
    svc = services()
    assert set(GATEWAYS) | {"postgres", "redis", "nginx"} <= set(svc)
    images = {manxue_services()[name]["image"] for name in GATEWAYS}
    assert len(images) == 1, "both gateways run the same image"
    data_dir = compose_settings().data_dir
    data_volumes = []
    for name in GATEWAYS:
        mounts = [v.split(":") for v in svc[name]["volumes"]]
        (vol,) = [m[0] for m in mounts if m[1] == data_dir]
        assert vol in compose()["volumes"], f"{name}: {vol} is not a named volume"
        data_volumes.append(vol)
    assert len(set(data_volumes)) == len(GATEWAYS), "each gateway has its own data volume"
    for name, s in svc.items():
        for dep, cond in s.get("depends_on", {}).items():
            assert dep in svc, f"{name} depends on an unknown service {dep}"
            assert cond["condition"] in ("service_healthy", "service_completed_successfully"), name
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in svc[dep] or dep in manxue_services(), dep
    for name in ("postgres", "redis", "nginx", *GATEWAYS):
        assert "healthcheck" in svc[name], f"{name} has no health check"
    assert set(svc["nginx"]["depends_on"]) >= set(GATEWAYS)
    for name in GATEWAYS:
        assert {"postgres", "redis"} & set(svc[name]["depends_on"]) or \
            "migrate" in svc[name]["depends_on"], name
    # Where the services are reached matches the config.
    settings = compose_settings()
    assert settings.database_url and settings.redis_url
    assert re.search(r"@postgres:5432/", settings.database_url)
    assert settings.redis_url.startswith("redis://redis:6379/")
    # nginx's fixed address is the one the gateways trust, inside the network's subnet.
    ((network, attached),) = svc["nginx"]["networks"].items()
    nginx_ip = attached["ipv4_address"]
    assert settings.server.trusted_proxies == [nginx_ip]
    (subnet,) = [c["subnet"] for c in compose()["networks"][network]["ipam"]["config"]]
    assert ipaddress.ip_address(nginx_ip) in ipaddress.ip_network(subnet)
    for name in GATEWAYS:
        assert network in svc[name]["networks"], name


def test_nginx_terminates_tls_for_the_gateways() -> None:
    conf = nginx_conf()
    assert re.search(r"^\s*listen\s+443\s+ssl", conf, re.MULTILINE)
    mounts = dict(v.split(":")[:2] for v in services()["nginx"]["volumes"])
    assert mounts.get("./nginx.conf") == "/etc/nginx/nginx.conf"
    cert_dir = mounts.get("./certs")
    assert cert_dir
    for directive in ("ssl_certificate", "ssl_certificate_key"):
        m = re.search(rf"^\s*{directive}\s+(\S+);", conf, re.MULTILINE)
        assert m and m.group(1).startswith(cert_dir + "/"), directive
    assert re.search(r"proxy_pass\s+http://manxue;", conf)
    assert re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$proxy_add_x_forwarded_for;", conf)
    assert re.search(r"proxy_buffering\s+off;", conf), "streams must not be buffered"
    settings = compose_settings()
    m = re.search(r"client_max_body_size\s+(\d+)([kKmM]?);", conf)
    assert m
    size = int(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]
    assert size == settings.server.max_body_bytes
    m = re.search(r"proxy_read_timeout\s+(\d+)s;", conf)
    assert m and int(m.group(1)) >= max(d.timeouts.total for d in settings.deployments)
    assert "openssl req -x509" in (DEPLOY / "compose.yaml").read_text(encoding="utf-8")


def test_kubernetes_objects_refer_to_each_other() -> None:
    deployment = one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())

    assert selects(deployment["spec"]["selector"]["matchLabels"])
    assert selects(one("Service")["spec"]["selector"])
    for pdb in k8s("PodDisruptionBudget"):
        assert selects(pdb["spec"]["selector"]["matchLabels"])
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    hpa = one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    # CPU utilization is measured against the request; one worker per requested core.
    resources = gateway_container()["resources"]
    assert "memory" in resources["limits"]
    assert cpu_cores(resources["requests"]["cpu"]) == k8s_settings().server.workers
    secret_names = {d["metadata"]["name"] for d in k8s("Secret")}
    for where, spec in pod_specs():
        for c in spec["containers"]:
            for source in c.get("envFrom", []):
                assert source["secretRef"]["name"] in secret_names, where
    job = one("Job")
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")
    (job_c,) = job["spec"]["template"]["spec"]["containers"]
    assert job_c["image"] == gateway_container()["image"], "the migration runs the gateway's image"
    secret = one("Secret")
    values = secret.get("stringData", {})
    assert values and all(str(v) for v in values.values())


def test_the_docs_describe_the_files() -> None:
    section = deploy_section()
    assert "## Not packaged yet" not in DOCS.read_text(encoding="utf-8")
    for needed in ("docker build -f deploy/Dockerfile -t manxue .",
                   "docker compose -f deploy/compose.yaml up", "kubectl apply -f deploy/k8s/",
                   "tests/test_deploy_files.py"):
        assert needed in section, needed
    for path in [*DEPLOY.iterdir(), *K8S.iterdir()]:
        if path.is_file() and not path.name.endswith(".dockerignore"):
            rel = path.relative_to(ROOT).as_posix()
            assert rel in section or path.name in section, f"docs/deploy.md does not name {rel}"

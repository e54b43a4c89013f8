"""`mlserve rollout ...` on the command line: option values checked before any infrastructure, help texts that are right."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlserve import exitcodes

COMMANDS = ["canary", "blue-green", "plan", "status", "abort", "promote", "undo", "rbac"]
SRC = Path(__file__).resolve().parents[2] / "src" / "mlserve"

BAD = {
    "canary": [
        (["--router", "bogus"], "--router must be gateway, nginx or istio, not 'bogus'"),
        (["--steps", "50,10"], "steps must increase strictly"),
        (["--steps", "5,x"], "bad --steps"),
        (["--pause", "soon"], "bad --pause 'soon'"),
        (["--timeout", "-3s"], "bad --timeout '-3s': it cannot be negative"),
        (["--ready-timeout", "x"], "bad --ready-timeout"),
        (["--lease-duration", "x"], "bad --lease-duration"),
        (["--poll", "x"], "bad --poll"),
        (["--revert-timeout", "x"], "bad --revert-timeout"),
        (["--gate-interval", "x"], "bad --gate-interval"),
        (["--on-interrupt", "ignore"], "--on-interrupt must be abort or pause, not 'ignore'"),
        (["--on-drift", "shrug"], "--on-drift must be fail or pause, not 'shrug'"),
        (["--gate", "ftp://x"], "--gate 'ftp://x' must be an http:// or https:// URL"),
        (["--notify", "hooks"], "--notify 'hooks' must be an http:// or https:// URL"),
        (["--canary-header", "X-Canary"], "--canary-header needs NAME=VALUE"),
        (["--canary-cookie", "beta"], "--canary-cookie needs --router nginx"),
        (["--router", "istio", "--canary-header", "a=b"], "not supported with --router istio"),
        (["--baseline", "--router", "nginx"], "--baseline needs --router gateway or istio"),
        (["--baseline", "--steps", "10,75,100"], "steps above 50 (other than a last 100) cannot be compared: 75"),
        (["--image", "{bogus}"], "bad --image template '{bogus}'"),
        (["--image", "", "--version-env", ""], "--image and --version-env are both empty"),
        (["--prometheus-url", "prometheus:9090"], "--prometheus-url must start with http:// or https://"),
        (["--analysis", "a.yaml", "--no-analysis"], "give --analysis or --no-analysis, not both"),
        (["--canary-replicas", "0"], "Invalid value for '--canary-replicas'"),
    ],
    "blue-green": [
        (["--keep", "later"], "bad --keep"),
        (["--smoke-url", "localhost/health"], "--smoke-url 'localhost/health' must be an http:// or https:// URL"),
        (["--selector-key", "not a key"], "--selector-key 'not a key' is not a valid label key"),
        (["--on-interrupt", "x"], "--on-interrupt must be abort or pause"),
    ],
    "plan": [
        (["--strategy", "rolling"], "--strategy must be canary or blue-green, not 'rolling'"),
        (["--router", "traefik"], "--router must be gateway, nginx or istio, not 'traefik'"),
        (["--steps", "0,50"], "every step must be a percentage from 1 to 100"),
    ],
    "status": [(["--timeout", "soon"], "bad --timeout 'soon'")],
    "abort": [(["--revert-timeout", "soon"], "bad --revert-timeout 'soon'")],
    "undo": [(["--revert-timeout", "soon"], "bad --revert-timeout 'soon'")],
}


@pytest.mark.parametrize("command,extra,message", [(c, e, m) for c, cases in BAD.items() for e, m in cases],
                         ids=[f"{c}:{' '.join(e)}" for c, cases in BAD.items() for e, _ in cases])
def test_a_bad_option_value_is_a_usage_error_before_any_infrastructure(cli, tmp_path, command, extra, message):
    """A kubeconfig that does not exist and a registry that does not exist: neither may be touched."""
    registry = tmp_path / "registry"
    needs_to = command in ("canary", "blue-green", "plan")
    args = ["rollout", command, "iris", *(["--to", "2"] if needs_to else []), "--kubeconfig", str(tmp_path / "missing"), *extra]
    if command not in ("status", "promote"):
        args += ["--registry", str(registry)]
    result = cli(*args)
    assert result.exit_code == exitcodes.USAGE, (result.exit_code, result.stderr)
    assert message in result.stderr
    assert "Kubernetes configuration" not in result.stderr
    assert not registry.exists()
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", COMMANDS)
def test_every_rollout_command_has_an_example_and_quotes_shell_characters(cli, command):
    text = cli("rollout", command, "--help").stdout
    assert "Example:" in text
    examples = [line.strip() for line in text.splitlines() if line.strip().startswith("mlserve ")]
    assert examples, text
    for line in examples:
        for word in re.findall(r"(?:'[^']*'|\"[^\"]*\"|\S)+", line):
            if any(ch in word for ch in "<>&*") and word[0] not in "'\"" and word != "|":
                raise AssertionError(f"unquoted shell character in example: {line}")


def test_help_texts_are_not_copied_between_commands(cli):
    abort = cli("rollout", "abort", "--help").stdout
    no_registry = abort[abort.index("--no-registry"):].split("\n  --", 1)[0]
    assert "--to" not in no_registry and "registry" in no_registry
    status = cli("rollout", "status", "--help").stdout
    assert "Read-only" in status and "Apply" not in status and "apply" not in status.lower().replace("applied", "")
    canary = cli("rollout", "canary", "--help").stdout
    assert "traffic to VERSION" not in canary and "VERSION argument" not in canary
    assert "the version given by --to" in canary


def _env_vars_read() -> set[str]:
    """Every environment variable the rollout commands read: os.environ reads in their code, and their settings."""
    names: set[str] = set()
    for path in [*(SRC / "rollout").glob("*.py"), SRC / "cli" / "rollout.py", SRC / "cli" / "_output.py"]:
        names |= set(re.findall(r"os\.environ\.get\(\"([A-Z_]+)\"", path.read_text()))
    from mlserve import config

    names |= {config.env_var(k) for k in ("rollout.namespace", "rollout.kubeconfig", "rollout.prometheus_url", "registry",
                                          "lock_timeout", "no_progress")}
    names.add("KUBECONFIG")  # read by the kubernetes client's kubeconfig loader
    return names


@pytest.mark.parametrize("command", ["canary", "blue-green"])
def test_every_environment_variable_read_is_shown_in_help(cli, command):
    text = cli("rollout", command, "--help").stdout
    missing = sorted(name for name in _env_vars_read() if name not in text)
    assert missing == []
    assert {"GITHUB_RUN_ID", "MLSERVE_NO_PROGRESS", "MLSERVE_PROMETHEUS_URL"} <= _env_vars_read()


def test_options_are_declared_once_and_shared(cli):
    """--pause, --workload, --namespace ... mean the same in canary, blue-green and plan: one declaration."""
    from mlserve.cli import rollout

    from mlserve.cli.app import load_command

    group = load_command("rollout")

    def option_help(command: str, flag: str) -> str:
        return next(p.help for p in group.commands[command].params if flag in getattr(p, "opts", []))

    for flag in ("--pause", "--workload", "--namespace", "--image", "--steps"):
        helps = {option_help(c, flag) for c in (["canary", "plan"] if flag == "--steps" else ["canary", "blue-green", "plan"])}
        assert len(helps) == 1, (flag, helps)
    source = (SRC / "cli" / "rollout.py").read_text()
    assert "dict(locals())" not in source and source.count('_opt("pause",') == 1
    assert callable(rollout.with_options)


LOCAL_BAD = [
    ("canary", ["--manifests", "deploy"], "--manifests cannot be used with --target local"),
    ("canary", ["--kubeconfig", "k"], "--kubeconfig cannot be used with --target local"),
    ("canary", ["--workload", "churn-api", "--context", "c"], "--context, --workload cannot be used with --target local"),
    ("canary", ["--no-registry"], "--no-registry cannot be used with --target local"),
    ("canary", ["--baseline"], "--baseline cannot be used with --target local"),
    ("canary", ["--router", "nginx"], "--router cannot be used with --target local"),
    ("canary", ["--dry-run"], "--dry-run cannot be used with --target local"),
    ("canary", ["--canary-header", "X-Canary=1"], "--canary-header/--canary-cookie cannot be used with --target local"),
    ("canary", ["--server", "127.0.0.1:8000"], "--server must start with http:// or https://"),
    ("canary", ["--admin-url", "localhost:8002"], "--admin-url must start with http:// or https://"),
    ("canary", ["--pause", "1s"], "--pause 1s is too short for the analysis"),
    ("blue-green", ["--version-label", "v"], "--version-label cannot be used with --target local"),
    ("plan", ["--deployment", "d"], "--deployment cannot be used with --target local"),
    ("status", ["--server", "ftp://x"], "--server must start with http:// or https://"),
    ("abort", ["--no-registry"], "--no-registry cannot be used with --target local"),
    ("undo", ["--manifests", "m"], "--manifests cannot be used with --target local"),
    ("promote", ["--context", "c"], "--context cannot be used with --target local"),
]


@pytest.mark.parametrize("command,extra,message", LOCAL_BAD, ids=[f"{c}:{' '.join(e)}" for c, e, _ in LOCAL_BAD])
def test_options_of_the_other_target_are_usage_errors_before_any_server_or_registry(cli, tmp_path, monkeypatch,
                                                                                     command, extra, message):
    monkeypatch.setenv("MLSERVE_ADMIN_TOKEN", "a-token-of-sixteen-chars")
    registry = tmp_path / "registry"
    needs_to = command in ("canary", "blue-green", "plan")
    result = cli("rollout", command, "iris", *(["--to", "2"] if needs_to else []), "--target", "local",
                 "--registry", str(registry), *extra)
    assert result.exit_code == exitcodes.USAGE, (result.exit_code, result.stderr)
    assert message in result.stderr
    assert not registry.exists()
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("extra,message", [
    (["--target", "docker"], "--target must be kubernetes or local, not 'docker'"),
    (["--admin-url", "http://127.0.0.1:8002"], "--admin-url needs --target local"),
])
def test_a_bad_target_is_a_usage_error(cli, tmp_path, extra, message):
    result = cli("rollout", "canary", "iris", "--to", "2", "--registry", str(tmp_path / "registry"), *extra)
    assert result.exit_code == exitcodes.USAGE, (result.exit_code, result.stderr)
    assert message in result.stderr and not (tmp_path / "registry").exists()


def test_the_local_target_needs_the_admin_token_before_it_touches_anything(cli, tmp_path):
    result = cli("rollout", "abort", "iris", "--target", "local", "--registry", str(tmp_path / "registry"))
    assert result.exit_code == exitcodes.USAGE and "needs its token" in result.stderr
    assert "MLSERVE_ADMIN_TOKEN" in result.stderr and not (tmp_path / "registry").exists()


@pytest.mark.parametrize("command", ["canary", "blue-green", "plan", "status", "abort", "promote", "undo"])
def test_every_command_takes_the_local_target_and_shows_its_token_variable(cli, command):
    text = cli("rollout", command, "--help").stdout
    for flag in ("--target", "--server", "--admin-url", "--admin-token", "MLSERVE_ADMIN_TOKEN", "--registry"):
        assert flag in text, (command, flag)
    assert "--target local" in text

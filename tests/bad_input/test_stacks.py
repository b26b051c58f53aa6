"""Bad stack files and stack names: mutations of stacks/Pulumi.demo.yaml (Hypothesis) through
``load_stack``, and a curated corpus through the commands that read a stack. Each ends in
``drctl: FILE: ...`` (exit 1) or a usage error naming the argument (exit 2), within seconds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import given

from drctl.errors import DrctlError
from drctl.stack.config import load_stack
from tests.bad_input.mutations import (
    CORPUS,
    ROOT,
    assert_clean_failure,
    drctl,
    drctl_many,
    mutated_document,
    mutated_text,
)

DEMO_TEXT = (ROOT / "stacks" / "Pulumi.demo.yaml").read_text()
DEMO = yaml.safe_load(DEMO_TEXT)
TIME_BOUND_S = 10


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project whose stack ``fuzz`` is rewritten by every example (the demo's
    passphrase opens it: its secrets are the demo's)."""
    p = tmp_path_factory.mktemp("project")
    for name in ("Pulumi.yaml", "recovery_plans", "stacks"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, p / name)
    shutil.copy(p / "stacks" / "demo.passphrase", p / "stacks" / "fuzz.passphrase")
    return p


def load_or_refuse(project: Path, text: str) -> None:
    (project / "stacks" / "Pulumi.fuzz.yaml").write_text(text)
    try:
        cfg = load_stack("fuzz", project)
    except DrctlError as e:
        assert e.message and "Traceback" not in e.message
        return
    for site in cfg.plan.sites:
        if site.name in cfg.psks:
            assert cfg.psk(site.name)


@pytest.fixture(autouse=True)
def passphrase_from_the_stacks_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)


@CORPUS
@given(mutated_document(DEMO))
def test_mutated_stack_documents_load_or_are_refused(project: Path, doc) -> None:
    try:
        text = yaml.safe_dump(doc)
    except yaml.YAMLError:  # a value only Python has (a frozenset): no stack file holds it
        return
    load_or_refuse(project, text)


@CORPUS
@given(mutated_text(DEMO_TEXT))
def test_mutated_stack_texts_load_or_are_refused(project: Path, text: str) -> None:
    load_or_refuse(project, text)


# ---- the curated corpus, through the CLI ----------------------------------------------------------

PLAN = "  flexible-recovery:plan: recovery_plans/demo.yaml\n"


def laughs() -> str:
    lines = ["b0: &b0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 10)}]" for i in range(1, 8)]
    return "\n".join(lines) + "\nconfig: {flexible-recovery:activation: {servers: *b7}}\n"


STACK_CASES: dict[str, tuple[str | bytes, str]] = {
    "alias-bomb": (laughs(), "values once aliases are expanded"),
    "deep": (
        "config:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 400)),
        "nested more than 64 levels",
    ),
    "list-key": ("config:\n  ? [a]\n  : 1\n", "a key must be plain text"),
    "duplicate-key": ("config:\n" + PLAN + PLAN, "duplicate key 'flexible-recovery:plan'"),
    "flavor-map-scalar": ("config:\n" + PLAN + "  flexible-recovery:flavor_map: 5\n", "expected a list"),
    "salt-not-text": (
        "encryptionsalt: [1]\nconfig:\n" + PLAN + "  flexible-recovery:vpn_psks: {paris: {secure: v1:x:y}}\n",
        "encryptionsalt is not a Pulumi passphrase state",
    ),
    "deep-json": (
        "config:\n" + PLAN + "  flexible-recovery:activation: '" + "[" * 5000 + "]" * 5000 + "'\n",
        "nested too deeply",
    ),
    "plan-outside": (
        "config:\n  flexible-recovery:plan: ../../../etc/passwd\n",
        "inside the project directory",
    ),
    "plan-absolute": ("config:\n  flexible-recovery:plan: /etc/shadow\n", "inside the project directory"),
    "plan-is-a-directory": ("config:\n  flexible-recovery:plan: recovery_plans\n", "it is a directory"),
    "no-config": ("- a\n- b\n", "expected a mapping with a `config:` section"),
    "not-utf8": (b"config:\n  flexible-recovery:plan: \xff\n", "not UTF-8 text"),
}


@pytest.fixture(scope="module")
def stack_cases(project: Path) -> dict[str, str]:
    expected = {}
    for name, (content, expect) in STACK_CASES.items():
        f = project / "stacks" / f"Pulumi.{name}.yaml"
        f.write_bytes(content if isinstance(content, bytes) else content.encode())
        shutil.copy(project / "stacks" / "demo.passphrase", project / "stacks" / f"{name}.passphrase")
        expected[name] = expect
    (project / "stacks" / "Pulumi.a-directory.yaml").mkdir()
    expected["a-directory"] = "it is a directory"
    with open(project / "stacks" / "Pulumi.huge.yaml", "wb") as fh:
        fh.truncate(50 * 1024 * 1024)
    expected["huge"] = "a stack file is at most 10.0 MiB"
    return expected


def test_every_curated_bad_stack_file_is_one_clear_error(project: Path, stack_cases: dict[str, str]) -> None:
    env = {"DRCTL_PROJECT_DIR": str(project), "DRCTL_VPN_PSK": "corpus-psk-0123456789abcdef"}
    names = list(stack_cases)
    argvs = [("nca", "render", n, "--site", "paris", "--out", str(project / "out" / n)) for n in names]
    for name, (r, took) in zip(names, drctl_many(argvs, env=env), strict=True):
        assert_clean_failure(r)
        assert r.returncode == 1, f"{name}: {r.stderr}"
        assert stack_cases[name] in r.stderr, f"{name}: {r.stderr!r} does not say {stack_cases[name]!r}"
        assert took < TIME_BOUND_S, f"{name}: {took:.1f}s"
    assert not (project / "out").exists(), "nothing written for a bad stack"


def test_preview_and_policy_report_a_bad_stack_file_the_same_way(project: Path, stack_cases) -> None:
    for command in ("preview", "policy"):
        r, _ = drctl(command, "alias-bomb", "--project-dir", str(project))
        assert_clean_failure(r)
        assert r.returncode == 1 and "values once aliases are expanded" in r.stderr


def test_a_project_without_its_pulumi_yaml_is_named(tmp_path: Path) -> None:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.x.yaml").write_text("config:\n" + PLAN)
    (tmp_path / "Pulumi.yaml").mkdir()  # a directory where the project file goes
    r, _ = drctl("preview", "x", "--project-dir", str(tmp_path))
    assert_clean_failure(r)
    assert (
        r.returncode == 1
        and "Pulumi.yaml: (file): cannot read the Pulumi project file: it is a directory" in r.stderr
    )


BAD_NAMES = ["../demo", "demo/../../x", ".demo", "", "a b", "x" * 101, "dé mo", "demo\n", "/etc/passwd"]
STACK_COMMANDS = [
    ("preview", "{}"),
    ("policy", "{}"),
    ("nca", "render", "{}", "--site", "paris", "--out", "/tmp/never-written"),
    ("nca", "test", "{}", "--site", "paris"),
    ("stack", "set-secret", "{}", "vpn_psks.paris"),
    ("activate", "{}", "--mode", "test", "--requested-by", "x"),
    ("drill", "{}", "--requested-by", "x"),
    ("deactivate", "{}"),
    ("runs", "{}"),
    ("status", "demo", "{}"),
]


def test_a_stack_name_that_could_leave_stacks_is_a_usage_error_for_every_command() -> None:
    # Every command with a bad name, and every bad name with one command: each a usage error.
    argvs = [
        tuple(a.replace("{}", BAD_NAMES[i % len(BAD_NAMES)]) for a in command)
        for i, command in enumerate(STACK_COMMANDS)
    ] + [("runs", name) for name in BAD_NAMES]
    for r, _ in drctl_many(argvs):
        assert_clean_failure(r)
        assert r.returncode == 2, r.stderr
        assert "stack name" in r.stderr and "is not valid" in r.stderr, r.stderr
    assert not Path("/tmp/never-written").exists()

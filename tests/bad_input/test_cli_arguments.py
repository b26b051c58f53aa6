"""Bad command lines: valid invocations of the commands that read input (plans, stacks, a
repository, stored runs) mutated by Hypothesis -- a value dropped, repeated, swapped or replaced
by an awkward one (a directory where a file goes, a file where a directory goes, a negative count,
a huge string) -- each run as a user runs drctl. Every one exits with a documented code within
seconds, its first line on stderr ``drctl: ...`` or ``FILE: ...``, never a traceback.

Commands that start daemons, guests or namespaces (local up, drill, activate, nca test, demo) are
left out on purpose: their argument checks come before anything starts and are covered by the
stack-name corpus; a mutation must never make this test start one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drctl.repo.backup import backup_disk
from drctl.repo.crypto import KdfParams
from drctl.repo.repository import init_repository
from drctl.runs.store import RunStore
from drctl.storage.local import LocalDirStorage
from tests.agent.agents import make_agent
from tests.bad_input.mutations import CORPUS, ROOT, assert_clean_failure, drctl, drctl_many
from tests.repo.fakes import MiB, make_image
from tests.runs.fixtures import demo_summary

PASSWORD = "corpus-password-1"
TIME_BOUND_S = 10


@dataclass(frozen=True)
class Place:
    """The paths of the corpus's files, as argv strings."""

    root: Path

    @property
    def repo(self) -> str:
        return str(self.root / "repo")

    @property
    def state(self) -> str:
        return str(self.root / "state")

    @property
    def project(self) -> str:
        return str(self.root / "project")

    @property
    def outputs(self) -> str:
        return str(self.root / "outputs")

    @property
    def plan_yaml(self) -> str:
        return str(self.root / "plan.yaml")


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Place:
    """A repository with one point, a state directory with one signed run, a project, a plan,
    an image, and the awkward things argv may point at."""
    root = tmp_path_factory.mktemp("cli")
    storage = LocalDirStorage(root / "repo")
    storage.create()
    repo = init_repository(storage, PASSWORD.encode(), chunk_size=MiB, kdf=KdfParams(n=2**10, r=8, p=1))
    make_image(root / "disk.img", 2 * MiB + 7)
    backup_disk(repo, root / "disk.img", server="web", disk="vda")
    RunStore(root / "state").record(demo_summary())
    (root / "project").mkdir()
    for name in ("Pulumi.yaml", "recovery_plans", "stacks"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / "project" / name)
    shutil.copy(ROOT / "recovery_plans" / "demo.yaml", root / "plan.yaml")
    (root / "outputs").mkdir()
    make_agent(root / "agent", str(root / "repo"), {"vda": str(root / "disk.img")}, server="web")
    return Place(root)


RUN_ID = demo_summary().run_id


def valid_invocations(p: Place) -> list[list[str]]:
    """Each succeeds as written (a test below checks it)."""
    return [
        ["validate", p.plan_yaml],
        ["validate", "--json", p.plan_yaml],
        ["nca", "render", "demo", "--site", "paris", "--out", f"{p.outputs}/nca"],
        ["runs", "demo", "--state-dir", p.state],
        ["report", "show", RUN_ID, "--state-dir", p.state],
        ["report", "export", RUN_ID, "--html", f"{p.outputs}/r.html", "--state-dir", p.state],
        ["report", "verify", RUN_ID, "--state-dir", p.state],
        ["snapshots", p.repo],
        ["restore", p.repo, "--server", "web", "--out", f"{p.outputs}/web.img"],
        ["key", "list", p.repo],
        ["check", p.repo, "--parallel", "2"],
        ["forget", p.repo, "--keep-daily", "7", "--dry-run"],
        ["unlock", p.repo],
        ["agent", "status", "--config", f"{p.root}/agent/web.agent.yaml"],
        ["agent", "units", "--config", f"{p.root}/agent/web.agent.yaml", "--drctl", "/usr/bin/true"],
    ]


def awkward_values(p: Place) -> list[str]:
    return [
        "",
        "-",
        "--",
        "-x",
        "--bogus",
        "..",
        "/",
        "/dev/null",
        "/dev/zero",
        "/etc",
        "/nonexistent/x",
        p.plan_yaml,  # a file where a directory goes
        p.state,  # a directory where a file goes
        p.repo,
        "x" * 5000,
        "dé\u202emo",
        "file://remote/x",
        "0",
        "-1",
        "99999999999999999999",
        "1e999",
        "nan",
        "2026-13-45T99:00:00Z",
        "latest",
        "demo",
        "--json",
        "--force",
        "--parallel",
        "--keep-daily",
        "-5",
    ]


@st.composite
def mutated_argv(draw: st.DrawFn, p: Place) -> list[str]:
    argv = list(draw(st.sampled_from(valid_invocations(p))))
    sub = argv[0] == "agent" or (
        argv[0] in ("nca", "key", "report") and argv[1] in ("render", "list", "verify")
    )
    fixed = 2 if sub else 1
    for _ in range(draw(st.integers(1, 3))):
        if len(argv) <= fixed:
            break
        i = draw(st.integers(fixed, len(argv) - 1))
        op = draw(st.sampled_from(["replace", "replace", "drop", "repeat", "swap", "insert"]))
        if op == "replace":
            argv[i] = draw(st.sampled_from(awkward_values(p)))
        elif op == "drop":
            del argv[i]
        elif op == "repeat":
            argv.insert(i, argv[i])
        elif op == "swap":
            j = draw(st.integers(fixed, len(argv) - 1))
            argv[i], argv[j] = argv[j], argv[i]
        else:
            argv.insert(i, draw(st.sampled_from(awkward_values(p))))
    return argv


ENV = {
    "DRCTL_PASSWORD": PASSWORD,
    "DRCTL_VPN_PSK": "corpus-psk-0123456789abcdef",
    # Nothing here may leave the machine: an S3 location would meet a closed local port at once.
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_ACCESS_KEY_ID": "none",
    "AWS_SECRET_ACCESS_KEY": "none",
    "AWS_MAX_ATTEMPTS": "1",
}


def env_for(p: Place) -> dict[str, str]:
    return {**ENV, "DRCTL_PROJECT_DIR": p.project, "DRCTL_STATE_DIR": p.state}


def test_the_valid_invocations_succeed(place: Place) -> None:
    for (r, _), argv in zip(
        drctl_many([tuple(a) for a in valid_invocations(place)], env=env_for(place)),
        valid_invocations(place),
        strict=True,
    ):
        assert r.returncode == 0, f"{argv}: {r.stderr}"
    shutil.rmtree(place.root / "outputs")
    (place.root / "outputs").mkdir()


@settings(CORPUS, max_examples=60, deadline=None)  # a process each: the time bound is below
@given(st.data())
def test_mutated_command_lines_fail_cleanly_within_seconds(place: Place, data) -> None:
    argv = data.draw(mutated_argv(place))
    r, took = drctl(*argv, env=env_for(place), cwd=place.root / "outputs", timeout=60)
    assert_clean_failure(r, files=(*argv, "''"))  # validate names the plan as given
    assert took < TIME_BOUND_S, f"{argv}: {took:.1f}s"


CURATED = [
    # (argv, expected exit codes)
    (["validate"], {2}),
    (["validate", "{state}"], {1}),
    (["restore", "{repo}", "--server", "web", "--out", "{state}"], {1}),
    (["restore", "{repo}", "--server", "web", "--out", "/nonexistent/dir/x.img"], {15}),
    (["restore", "{repo}", "--server", "web", "--out", "{outputs}/p.img", "--parallel", "0"], {2}),
    (["restore", "{repo}", "--server", "web", "--out", "{outputs}/p.img", "--point", "2026-13-45"], {1}),
    (["forget", "{repo}", "--keep-daily", "-1", "--dry-run"], {2}),
    (["snapshots", "{plan_yaml}"], {10}),
    (["snapshots", "file://remote/x"], {1}),
    (["report", "show", RUN_ID, "--state-dir", "{plan_yaml}"], {1}),
    (["report", "verify", RUN_ID, "--state-dir", "{state}", "--public-key", "{state}"], {1, 13, 15}),
    (["report", "export", RUN_ID, "--state-dir", "{state}", "--html", "{state}"], {15}),
    (["nca", "render", "demo", "--site", "paris", "--out", "{plan_yaml}"], {15}),
    (["nca", "render", "demo", "--site", "nowhere", "--out", "{outputs}/x"], {1}),
    (["backup", "{repo}", "--server", "web", "--disk", "vda", "{state}"], {15}),
    (["backup", "{repo}", "--server", "web", "--disk", "vda", "{plan_yaml}", "--chunk-size", "0"], {2}),
    (["key", "remove", "{repo}", "zz"], {1}),
    (["agent", "status", "--config", "{plan_yaml}"], {1}),
    (["agent", "run", "--config", "{state}", "--type", "full"], {1}),
    (["nonsense"], {2}),
    (["--verbose"], {2}),
]


def test_curated_bad_command_lines(place: Place) -> None:
    argvs = [
        tuple(
            a.format(**{k: getattr(place, k) for k in ("repo", "state", "outputs", "plan_yaml")})
            for a in argv
        )
        for argv, _ in CURATED
    ]
    for (r, took), (argv, expected) in zip(drctl_many(argvs, env=env_for(place)), CURATED, strict=True):
        assert_clean_failure(r, files=(place.plan_yaml, place.state))
        assert r.returncode in expected, f"{argv}: {r.returncode} {r.stderr}"
        assert took < TIME_BOUND_S, f"{argv}: {took:.1f}s"
    assert json.loads(drctl("snapshots", place.repo, "--json", env=env_for(place))[0].stdout.splitlines()[0])


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["restore", "REPO", "--server", "web", "--out", "o.img", "--parallel", "99999999999"],
            "more than 256",
        ),
        (["backup", "REPO", "--server", "web", "--disk", "vda", "IMG", "--parallel", "0"], "1 or more"),
    ],
)
def test_absurd_parallelism_is_a_usage_error(tmp_path, argv, message):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "drctl.cli",
            *[str(tmp_path / a) if a in ("REPO", "IMG") else a for a in argv],
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert r.returncode == 2 and r.stderr.startswith("drctl: ") and message in r.stderr

"""``drctl cost``: an activation's cost from the stack's price table, the backup space from the
bytes a real repository's objects take; a bad table is an error naming its field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from drctl.cli import main
from drctl.stack.config import load_stack
from drctl.stack.cost import GB, PricesInvalid, estimate, parse_prices

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo():
    return load_stack("demo", ROOT)


def test_the_demo_activation_priced_line_by_line(demo) -> None:
    prices = parse_prices(demo.settings.prices, where="demo")
    assert prices.label.startswith("ILLUSTRATIVE")
    est = estimate(demo.plan, demo.settings, prices, days=7, stored_bytes=3 * GB, where="demo")
    lines = {x.item: x for x in est.lines}
    # five servers of 256-512 MB: each gets m1.tiny (512 MB), the smallest flavor that fits
    assert [k for k in lines if k.startswith("instance")] == [
        f"instance {n} (m1.tiny)" for n in ("dns01", "db01", "app01", "files01", "web01")
    ]
    assert lines["volumes"].quantity == 7  # GB: 1 + 2 + 1 + 2 + 1
    assert lines["site VPNs"].quantity == 1  # paris has workstations
    per_day = 5 * 0.01 * 24 + 7 * (0.05 + 0.03) / 30 + 0.005 * 24 + 0.02 * 24
    assert est.activation_per_day == pytest.approx(per_day)
    assert est.activation_total == pytest.approx(7 * per_day)
    assert est.backup_month == pytest.approx(3 * 0.01)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"volume_gb_month": "cheap"}, "prices.volume_gb_month: expected a price (a number), got 'cheap'"),
        ({"vpn_hour": -1}, "prices.vpn_hour: a price must be a finite number of 0 or more"),
        (
            {"instance_hour": {"m1.small": 0.03}},
            "prices.instance_hour has no price for flavor m1.tiny (server dns01)",
        ),
        ({"image_gb_month": None}, "prices.image_gb_month: expected a price"),
    ],
)
def test_a_bad_price_table_names_the_field(demo, change, message) -> None:
    with pytest.raises(PricesInvalid, match=message.replace("(", r"\(").replace(")", r"\)")):
        prices = parse_prices({**demo.settings.prices, **change}, where="demo")
        estimate(demo.plan, demo.settings, prices, days=1, stored_bytes=None, where="demo")


def test_a_stack_without_prices_says_what_to_add(demo) -> None:
    with pytest.raises(
        PricesInvalid, match="has no price table; copy the prices block of stacks/Pulumi.demo.yaml"
    ):
        parse_prices({}, where="stacks/Pulumi.x.yaml")


def test_the_backup_space_is_what_the_repository_stores(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("DRCTL_PASSWORD", "a long enough test password")
    repo = tmp_path / "repo"
    assert main(["repo", "init", str(repo)]) == 0
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(range(256)) * 4096 * 3)
    assert main(["backup", str(repo), "--server", "dns01", "--disk", "system", str(image)]) == 0
    capsys.readouterr()
    stored = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())
    assert main(["cost", "demo", "--days", "2", "--repository", str(repo), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["backup_stored_bytes"] == stored
    assert result["days"] == 2 and result["activation_total"] == pytest.approx(
        2 * result["activation_per_day"], abs=0.01
    )


def test_a_missing_repository_is_exit_10_naming_it(tmp_path, capsys) -> None:
    assert main(["cost", "demo", "--repository", str(tmp_path / "none")]) == 10
    assert f"{tmp_path / 'none'}" in capsys.readouterr().err


def test_an_s3_vault_stack_previews_protected_object_lock_buckets(tmp_path, capsys) -> None:
    proj = tmp_path / "project"
    (proj / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", proj)
    shutil.copytree(ROOT / "recovery_plans", proj / "recovery_plans")
    for name in ("__main__.py", "demo.passphrase"):
        shutil.copy(ROOT / "stacks" / name, proj / "stacks")
    text = (ROOT / "stacks" / "Pulumi.demo.yaml").read_text().replace("vault: swift", "vault: s3")
    (proj / "stacks" / "Pulumi.demo.yaml").write_text(text)
    assert main(["preview", "demo", "--json", "--project-dir", str(proj)]) == 0
    resources = json.loads(capsys.readouterr().out.splitlines()[-1])["resources"]
    vault = [r for r in resources if r["parent"] == "vault"]
    assert [(r["type"], r["inputs"]["bucket"]) for r in vault] == [
        ("pulumi-python:dynamic:Resource", "demo-backups"),
        ("pulumi-python:dynamic:Resource", "demo-reports"),
    ]
    assert not any(r["type"] == "openstack:objectstorage/container:Container" for r in resources)
    assert main(["policy", "demo", "--project-dir", str(proj)]) == 0


def test_an_unknown_vault_kind_is_refused(tmp_path, capsys) -> None:
    proj = tmp_path / "project"
    shutil.copytree(ROOT / "recovery_plans", proj / "recovery_plans")
    (proj / "stacks").mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", proj)
    shutil.copy(ROOT / "stacks" / "demo.passphrase", proj / "stacks")
    text = (ROOT / "stacks" / "Pulumi.demo.yaml").read_text().replace("vault: swift", "vault: obs")
    (proj / "stacks" / "Pulumi.demo.yaml").write_text(text)
    assert main(["cost", "demo", "--no-repository", "--project-dir", str(proj)]) == 1
    assert "flexible-recovery:vault: 'obs' is not a vault kind; use swift" in capsys.readouterr().err

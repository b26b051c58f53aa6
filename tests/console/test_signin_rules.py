"""The sign-in rules as pure logic with a fake clock: lockout window and duration, the per-address
rate, bounded memory; TOTP steps (skew of one step, a replayed step refused)."""

from __future__ import annotations

import pyotp

from drctl.console.signin import SignInGuard, accept_code, matching_step
from drctl.console.users import UserStore
from tests.console.support import PASSWORD


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lockout_after_five_failures_within_the_window_and_for_its_duration():
    clock = Clock()
    guard = SignInGuard(clock=clock)
    for _ in range(4):
        assert not guard.failed("ann")
        clock.now += 100
    clock.now += 600  # the first two failures are now older than 15 minutes: not counted any more
    assert not guard.failed("ann")  # three within the window
    assert not guard.failed("ann")  # four
    assert guard.locked_for("ann") == 0
    assert guard.failed("ann")  # five within 15 minutes
    assert guard.locked_for("ann") == 900
    clock.now += 899
    assert guard.locked_for("ann") == 1
    clock.now += 1
    assert guard.locked_for("ann") == 0
    assert guard.locked_for("bob") == 0  # another user is not affected


def test_per_address_rate_and_bounded_memory():
    clock = Clock()
    guard = SignInGuard(per_address_per_minute=3, clock=clock)
    assert [guard.address_allowed("10.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert guard.address_allowed("10.0.0.2")
    clock.now += 60
    assert guard.address_allowed("10.0.0.1")
    guard.MAX_TRACKED = 100
    for i in range(500):
        guard.failed(f"made-up-{i}")
        guard.address_allowed(f"192.0.2.{i}")
    clock.now += 3600
    guard.address_allowed("10.0.0.9")
    assert len(guard._attempts) <= 2 and len(guard._failures) == 0


def test_codes_match_one_step_either_side_and_a_step_is_accepted_once(tmp_path):
    users = UserStore(tmp_path)
    secret = pyotp.random_base32()
    users.add("ann", "operator", None, PASSWORD, totp_secret=secret)
    totp = pyotp.TOTP(secret)
    t = 1_800_000_000.0
    step = totp.timecode(t)
    assert matching_step(secret, totp.generate_otp(step - 1), t) == step - 1
    assert matching_step(secret, totp.generate_otp(step + 2), t) is None
    assert matching_step(secret, "12345", t) is None and matching_step(secret, "abcdef", t) is None
    assert accept_code(users, "ann", totp.generate_otp(step), t).ok
    assert accept_code(users, "ann", totp.generate_otp(step), t).reason == "replayed"
    assert (
        accept_code(users, "ann", totp.generate_otp(step - 1), t).reason == "replayed"
    )  # older: refused too
    assert accept_code(users, "ann", totp.generate_otp(step + 1), t + 30).ok

"""The cloud target's errors, and the translation of openstacksdk / keystoneauth and Pulumi
Automation API exceptions into them, where those enter (:mod:`drctl.activation.targets.cloud`).

==========================  ====  =========================================================
error                       exit  when
==========================  ====  =========================================================
CloudUnreachable            14    the cloud's API cannot be reached or answers 5xx
CloudAccessDenied           14    no usable credentials, or the cloud refuses them (401/403)
CloudError                  14    anything else the cloud (or its catalog) refuses
StackBusy                   11    another update of the Pulumi stack is in progress
StackMissing                1     the Pulumi stack does not exist in the project
ToolMissing                 16    the Pulumi CLI is missing or too old
CloudOperationFailed        20    an upload, a server start or ``pulumi up`` ran and failed
==========================  ====  =========================================================

Messages name the operation and the object (image, server, stack) and the next step; the
Pulumi CLI's own error lines are kept (Pulumi masks secret values in its output).
"""

from __future__ import annotations

import re

from drctl.errors import EXIT_LOCKED, EXIT_RUN_FAILED, EXIT_STORAGE, DrctlError, InvalidInput, ToolMissing

CREDENTIALS_HINT = "set OS_CLOUD (with clouds.yaml) or the OS_* variables (OS_AUTH_URL, OS_USERNAME...)"


class CloudError(DrctlError):
    """The cloud refused or failed an operation."""

    exit_code = EXIT_STORAGE


class CloudUnreachable(CloudError):
    """The cloud's API cannot be reached."""


class CloudAccessDenied(CloudError):
    """The cloud refused the credentials, or there are none."""


class CloudOperationFailed(CloudError):
    """An operation on the cloud ran and failed (upload, server start, stack update)."""

    exit_code = EXIT_RUN_FAILED


class StackBusy(CloudError):
    """Another update of the stack is in progress."""

    exit_code = EXIT_LOCKED


class StackMissing(InvalidInput):
    """The Pulumi stack does not exist."""


def openstack_error(e: Exception, doing: str) -> DrctlError:
    """An openstacksdk or keystoneauth exception met while ``doing`` (e.g. "uploading image X
    from F") -> the matching error."""
    import keystoneauth1.exceptions as ka
    import openstack.exceptions as oe

    if isinstance(e, (ka.ConnectionError, ka.DiscoveryFailure)):
        return CloudUnreachable(
            f"{doing}: cannot reach the OpenStack API ({_first_line(e)}); is the cloud up? Check the "
            "auth_url of clouds.yaml or OS_AUTH_URL"
        )
    if isinstance(e, (oe.ConfigException, ka.AuthPluginException)):
        return CloudAccessDenied(
            f"{doing}: no usable OpenStack credentials ({_first_line(e)}): {CREDENTIALS_HINT}"
        )
    if isinstance(e, oe.ResourceTimeout):
        return CloudOperationFailed(f"{doing}: timed out ({_first_line(e)})")
    if isinstance(e, oe.ResourceFailure):
        return CloudOperationFailed(f"{doing}: failed ({_first_line(e)})")
    status = _status(e)
    if status in (401, 403):
        return CloudAccessDenied(
            f"{doing}: the cloud refused the credentials ({status}: {_first_line(e)}); check them: "
            f"{CREDENTIALS_HINT}"
        )
    if status is not None and status >= 500:
        return CloudUnreachable(f"{doing}: the cloud's API failed ({status}: {_first_line(e)}); retry later")
    if isinstance(e, ka.EndpointNotFound):
        return CloudError(f"{doing}: the cloud's catalog has no such service ({_first_line(e)})")
    if isinstance(e, (oe.SDKException, ka.ClientException)):
        return CloudOperationFailed(f"{doing}: the cloud refused it ({_first_line(e)})")
    raise TypeError(f"not an OpenStack error: {e!r}")


def _status(e: Exception) -> int | None:
    for attr in ("status_code", "http_status"):
        value = getattr(e, attr, None)
        if isinstance(value, int):
            return value
    return None


def _first_line(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


# What the Pulumi CLI (and the OpenStack provider under it) print when the cloud is not there or
# refuses the credentials.
_UNREACHABLE = re.compile(
    r"connection refused|no such host|i/o timeout|dial tcp|unable to establish connection|"
    r"network is unreachable|no route to host",
    re.IGNORECASE,
)
_DENIED = re.compile(
    r"authentication failed|requires authentication|\b401\b|unauthorized|forbidden|\b403\b", re.IGNORECASE
)


def pulumi_error(e: Exception, stack: str, step: str) -> DrctlError:
    """A Pulumi Automation API exception from ``step`` (e.g. "up", "config set") of ``stack``."""
    from pulumi.automation import errors as pe

    if isinstance(e, pe.InvalidVersionError):
        return ToolMissing(f"the Pulumi CLI is too old for the cloud target ({e}); update it")
    if isinstance(e, FileNotFoundError):
        return ToolMissing(
            f"the Pulumi CLI vanished while running `pulumi {step}` ({e}); install it again "
            "(https://www.pulumi.com/docs/install/)"
        )
    if not isinstance(e, pe.CommandError):
        raise TypeError(f"not a Pulumi error: {e!r}")
    stdout, stderr = _streams(e)
    detail = _error_lines(stdout, stderr)
    if isinstance(e, pe.ConcurrentUpdateError):
        return StackBusy(
            f"stack {stack}: another update is in progress ({detail}); wait for it, or if none is "
            f"running, `pulumi cancel --stack {stack}`"
        )
    if isinstance(e, pe.StackNotFoundError):
        return StackMissing(f"no Pulumi stack {stack} ({detail}); create it with `pulumi stack init {stack}`")
    text = stdout + "\n" + stderr
    if _UNREACHABLE.search(text):
        return CloudUnreachable(
            f"`pulumi {step}` of stack {stack} could not reach the cloud ({detail}); is it up? Check the "
            "auth_url of clouds.yaml or OS_AUTH_URL"
        )
    if _DENIED.search(text):
        return CloudAccessDenied(
            f"`pulumi {step}` of stack {stack}: the cloud refused the credentials ({detail}); {CREDENTIALS_HINT}"
        )
    return CloudOperationFailed(
        f"`pulumi {step}` of stack {stack} failed ({detail}); see `pulumi stack history --stack {stack}` "
        f"and fix the cause, then run `pulumi {step} --stack {stack}` or the activation again"
    )


def _streams(e: Exception) -> tuple[str, str]:
    """stdout and stderr of a CommandError (it keeps only ``str(CommandResult)``)."""
    text = str(e)
    match = re.search(r"\n stdout: (.*)\n stderr: (.*)\Z", text, re.DOTALL)
    return (match.group(1), match.group(2)) if match else ("", text)


def _error_lines(stdout: str, stderr: str, limit: int = 600) -> str:
    """The CLI's ``error:`` lines, else the last lines of stderr, on one line."""
    lines = [ln.strip() for ln in (stdout + "\n" + stderr).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    picked = errors or [ln for ln in stderr.splitlines() if ln.strip()][-3:] or ["no output"]
    text = " | ".join(dict.fromkeys(picked))
    return text if len(text) <= limit else text[: limit - 3] + "..."

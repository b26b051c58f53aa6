"""The one exception tree of drctl, and its exit codes.

Every failure a user can cause or meet is a subclass of :class:`DrctlError`. Its message names the
object at fault (plan file and field, bucket/key, chunk id, server, stack) and the next step; its
``exit_code`` is what the CLI returns. The CLI prints ``drctl: <message>`` on stderr and never a
traceback for these (with ``--json`` also an ``error`` event, see :mod:`drctl.events`).
Third-party errors are translated where they enter (``raise X(...) from e``).

The exit codes and their meaning are :data:`EXIT_CODES` below (restic's where restic has one):
``drctl --help`` ends with that table and the README repeats it. The whole tree, each class with
its exit code and module (a test keeps this list complete and exact)::

    DrctlError (1) errors: the root; a bare one is an invalid input
        InvalidInput (1) errors: the input is invalid
            AgentConfigInvalid (1) agent.config: the agent configuration file is invalid
            AgentKeyMismatch (1) activation.protection: the agent key given is not the one the stack records
            BgpRenderError (1) nca.bgp: the site router's BGP configuration cannot be rendered
            ClientExists (1) client.scaffold: the client already has a plan or a stack file
            CloudNotConfigured (1) plan.importer: the cloud named by --cloud is not in clouds.yaml
            ConsoleUserInvalid (1) console.users: a console user cannot be created or read as asked
            DependencyCycle (1) plan.graph: servers depend on each other in a cycle
            DisasterChangesAtRisk (1) activation.deactivation: would delete data written since a disaster
            FailbackRefused (1) activation.failback: no active disaster run to fail back (or not these servers)
            InputFileError (1) input_files: a plan, stack or project file cannot be used (too big, not text...)
            InvalidStackName (1) paths: a stack name outside Pulumi's pattern
            NcaRenderError (1) nca.render: the NCA bundle cannot be rendered from this plan
            NoActiveRun (1) activation.targets.sandbox: the stack has no active run to reach
            NotAuthorised (1) activation.guards: the requester may not activate
            NotConfirmed (1) activation.guards: a disaster activation was not confirmed
            NotInDisaster (1) activation.protection: the active run is not a disaster activation
            OutsideWindow (1) activation.guards: outside the activation window, no override
            PassphraseMissing (1) client.scaffold: no Pulumi passphrase in the environment for a new stack
            PlanInvalid (1) plan.load: a recovery plan fails the schema or a rule (every problem)
            PricesInvalid (1) stack.cost: the stack's price table is missing, incomplete or not numbers
            RepoExists (1) repo.errors: a repository already exists here
            RepoKeyMismatch (1) repo.errors: a copy's destination has other key material than its source
            RepoNeedsUpgrade (1) repo.errors: a backup into an older-format repository (`drctl repo upgrade`)
            RunNotFound (1) runs.store: no stored run has this id
            SecretValueInvalid (1) stack.secrets: a ``secure:`` value is malformed or was altered
            SiteTargetsInvalid (1) activation.failback_sites: the site targets file misses or misnames a target
            StackConfigInvalid (1) stack.settings: the stack file is invalid
            StackMissing (1) activation.targets.cloud_errors: the Pulumi stack does not exist
            StackNotFound (1) stack.config: no stack file for this stack
            SummaryInvalid (1) runs.model: a run summary document is malformed
        SchemaMissing (1) plan.load: the plan schema is not installed with drctl
        VaultBucketUnsafe (1) storage.vault_bucket: an existing bucket has no Object Lock or versioning
        VaultDeleteRefused (1) storage.vault_bucket: a vault bucket still holds backups; not deleted
        WrongPassphrase (1) stack.secrets: the passphrase does not open the stack's secrets
        WalSegmentMissing (1) wal.archive: the archive has no such WAL file (the end of a replay)
        RepoMissing (10) repo.errors: no repository here
        ActivationLocked (11) activation.guards: another activation of this stack is running
        JobRunning (11) agent.job: the server's previous agent job still runs (this one is skipped)
        RepoLocked (11) repo.errors: the repository is locked by another process
            LockLost (11) repo.errors: this command's repository lock was lost (no manifest written)
        WrongPassword (12) repo.errors: no key slot opens with this password
        IntegrityError (13) repo.errors: repository data failed authentication or verification
            ChunkCorrupt (13) repo.errors: a chunk object fails its checks
            ChunkMissing (13) repo.errors: a referenced chunk object is missing
            ChunkVanished (13) repo.errors: a chunk a backup counted on is gone before its manifest
            ForeignManifest (13) repo.errors: a manifest copied in from another repository
            ImageMismatch (13) repo.errors: the restored image's digest differs from its manifest's
            KeyFileCorrupt (13) repo.errors: a key slot or the config fails its MAC
            ManifestCorrupt (13) repo.errors: a restore point's manifest fails its checks
        ReportTampered (13) runs.signing: a report does not match its signature
        WalSegmentConflict (13) wal.archive: a WAL file is already archived with other content
        WalSegmentCorrupt (13) wal.archive: an archived WAL file fails authentication
            WalGap (13) wal.archive: a WAL segment is missing while later ones are archived
        CloudError (14) activation.targets.cloud_errors: the cloud refused or failed an operation
            StackBusy (11) activation.targets.cloud_errors: another update of the stack is in progress
            CloudAccessDenied (14) activation.targets.cloud_errors: the cloud refused the credentials
            CloudUnreachable (14) activation.targets.cloud_errors: the cloud's API cannot be reached
            CloudOperationFailed (20) activation.targets.cloud_errors: a cloud operation ran and failed
        LocalStoreError (14) devstore: the embedded object store cannot start or be reached
        StorageError (14) storage.base: the object store failed
            BucketMissing (10) storage.base: the bucket or directory does not exist
            KeyContended (14) storage.base: writers kept racing to create one object
            ObjectMissing (14) storage.base: an object asked for does not exist
            ReportUploadFailed (14) runs.store: a stored report could not be uploaded
            RetentionRejected (14) storage.s3: the store refused an Object Lock retention
            StorageAccessDenied (14) storage.base: the store refused credentials or operation
            StorageUnavailable (14) storage.base: the store cannot be reached (retried)
            VaultUnreadable (14) status.vault: a client's vault cannot be read by ``drctl status``
        ImageBuildFailed (15) demo.images.rootfs: building a demo disk image failed
        LocalIOError (15) errors: a local file could not be read or written
            ConsoleAddressUnusable (15) commands.console_cmds: the console cannot listen on that address
            DiskFull (15) repo.errors: the local disk is full
            OutputError (15) repo.errors: the restore output cannot be written
            SigningKeyUnsafe (15) runs.signing: the report-signing key is readable by others
            SiteWriteFailed (15) activation.failback_sites: a restored disk could not be written on site
            SourceChanged (15) repo.errors: the backup source changed while being read
                SnapshotOverflow (15) agent.consistency: a disk's snapshot overflowed while read (no point)
            SourceUnreadable (15) repo.errors: the backup source cannot be read
            UnsafeOutput (15) private_files: another user could read or redirect this output
        QemuControlError (15) agent.qmp: QEMU's monitor or guest agent is unreachable or refused a command
            QemuSnapshotFailed (15) agent.qemu: the qemu consistency step failed (freeze, snapshot, commit)
        ToolMissing (16) errors: an external tool this command needs is not installed
            LabUnavailable (16) nca.labrun: the NCA lab cannot run on this machine
        PreflightBlocked (21) stack.preflight: the cloud project cannot hold the plan (quota, flavor, network, VPN)
        BaseBackupFailed (20) wal.base: pg_basebackup failed (nothing stored)
        CommandFailed (20) processes: an external command failed
            CommandTimedOut (20) processes: an external command ran out of time (killed)
        DemoWalFailed (20) demo.wal_archive: the demo database's WAL could not be archived
        DiskFilesError (20) wal.disk_files: a file in a restored disk could not be read or written
        GuestNotRunning (20) activation.protection: a recovered server is not running (no live backup)
        HookFailed (20) agent.hooks: an agent pre- or post-hook failed or ran out of time
        LabError (20) nca.labrun: a step of the NCA lab failed
        NamespaceError (20) netns: a network namespace could not be set up or used
        SandboxError (20) activation.targets.sandbox: the local sandbox failed
            GuestFailed (20) activation.targets.sandbox: a guest's QEMU or SSH never came up
        SnapshotFailed (20) agent.consistency: a disk's snapshot could not be taken or removed
        SiteCheckFailed (20) activation.failback: a server restored on site failed its checks
        VerificationError (20) activation.verify.checks: the verification itself could not run
        WalArchivingFailed (20) agent.log_job: WAL archiving failed or fell behind since the last log job
        WalStagingFailed (20) wal.stage: the archived WAL cannot be staged into a restored disk
        WaitTimedOut (20) processes: something waited for did not happen in time
        Cancelled (130) errors: cancelled by Ctrl-C on the run that started it
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_REPO_MISSING = 10
EXIT_LOCKED = 11
EXIT_WRONG_PASSWORD = 12
EXIT_INTEGRITY = 13
EXIT_STORAGE = 14
EXIT_LOCAL_IO = 15
EXIT_MISSING_TOOL = 16
EXIT_RUN_FAILED = 20
EXIT_PREFLIGHT = 21
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_INVALID: "invalid input: a plan, stack config or policy violation (the message says which)",
    EXIT_USAGE: "usage error (bad arguments)",
    EXIT_REPO_MISSING: "repository (or its bucket) does not exist",
    EXIT_LOCKED: "locked: another process uses the repository, or another run the stack",
    EXIT_WRONG_PASSWORD: "wrong password (no key slot opens with it)",
    EXIT_INTEGRITY: "integrity failure: tampered, truncated, swapped or missing data; tampered report",
    EXIT_STORAGE: "storage unreachable or refusing access (network, credentials); status: a vault or a run summary unreadable",
    EXIT_LOCAL_IO: "local I/O failure (disk full, source changed during backup, output unusable)",
    EXIT_MISSING_TOOL: "a tool or service the command needs is missing",
    EXIT_RUN_FAILED: "an activation, drill or test ran and a server (or step) failed; status: an RPO "
    "breached or a test overdue",
    EXIT_PREFLIGHT: "preflight: the cloud project cannot hold the plan (quota, flavor, external network, VPN)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C or SIGTERM); the same clean-up runs, nothing half-written",
}
"""Every exit code of drctl and what it means: the one table (``drctl --help``, README)."""


def exit_code_table() -> str:
    """The exit-code table as ``drctl --help`` ends with it (and the README shows it)."""
    rows = "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES.items())
    return f"exit codes (the same for every command):\n{rows}"


class DrctlError(Exception):
    """Root of every error drctl reports to the user."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.__class__.__name__).strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidInput(DrctlError):
    """The input is invalid."""

    exit_code = EXIT_INVALID


class ToolMissing(DrctlError):
    """An external tool this command needs is not installed."""

    exit_code = EXIT_MISSING_TOOL


class Cancelled(DrctlError):
    """The operation was cancelled (Ctrl-C on the run that started it)."""

    exit_code = EXIT_INTERRUPTED


class LocalIOError(DrctlError):
    """A local file could not be read or written."""

    exit_code = EXIT_LOCAL_IO

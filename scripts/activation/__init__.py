"""Activations and drills: guards, the engine that restores and starts servers in dependency order,
the targets (local QEMU sandbox, cloud), verification and the drill's site reconnection check."""

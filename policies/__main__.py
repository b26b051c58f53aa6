"""The policy pack `pulumi preview --policy-pack policies` starts: it only builds the PolicyPack.

The CLI runs this file as a script in the pack's own virtualenv, where drctl may not be installed,
so the rules module is imported by its plain name from this directory.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dr_rules
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    name="flexible-recovery",
    policies=dr_rules.all_policies(),
    enforcement_level=EnforcementLevel.MANDATORY,
    description="Flexible Recovery guard rails: private backups, no admin port open to the "
    "world, strong site VPNs, servers only in failover.",
)

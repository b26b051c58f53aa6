"""The on-site NCA appliance: its bundle rendered from the plan, BGP for MPLS sites, and the lab
that proves the bundle in network namespaces."""

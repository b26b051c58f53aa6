"""strongSwan's view of a tunnel: ``swanctl --list-sas --pretty`` parsed, and the names it
gives the algorithms a proposal declares (so the lab can assert "exactly as declared")."""

from __future__ import annotations

# How strongSwan names the negotiated algorithms (swanctl --list-sas) for each proposal keyword.
SA_ENCRYPTION = {"aes128": ("AES_CBC", "128"), "aes192": ("AES_CBC", "192"), "aes256": ("AES_CBC", "256")}
SA_INTEGRITY = {
    "sha1": "HMAC_SHA1_96",
    "sha256": "HMAC_SHA2_256_128",
    "sha384": "HMAC_SHA2_384_192",
    "sha512": "HMAC_SHA2_512_256",
}
SA_PRF = {
    "sha1": "PRF_HMAC_SHA1",
    "sha256": "PRF_HMAC_SHA2_256",
    "sha384": "PRF_HMAC_SHA2_384",
    "sha512": "PRF_HMAC_SHA2_512",
}
SA_DH = {
    "modp1024": "MODP_1024",
    "modp1536": "MODP_1536",
    "modp2048": "MODP_2048",
    "modp3072": "MODP_3072",
    "modp4096": "MODP_4096",
    "modp6144": "MODP_6144",
    "modp8192": "MODP_8192",
    "ecp256": "ECP_256",
    "ecp384": "ECP_384",
    "ecp521": "ECP_521",
}


def parse_pretty(text: str) -> dict:
    """Parse ``swanctl --pretty`` output (vici sections/lists/key = value) into dicts."""
    root: dict = {}
    stack: list = [root]
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        top = stack[-1]
        if line.endswith("["):
            key = line[:-1].strip().rstrip("=").strip()
            new_list: list = []
            if isinstance(top, dict):
                top[key] = new_list
            stack.append(new_list)
        elif line.endswith("{"):
            new: dict = {}
            key = line[:-1].strip()
            if isinstance(top, dict):
                top[key if key not in top else f"{key}#{len(top)}"] = new  # repeated events
            stack.append(new)
        elif line in ("}", "]"):
            stack.pop()
        elif isinstance(top, list):
            top.append(line)
        elif " = " in line:
            k, v = line.split(" = ", 1)
            top[k.strip()] = v.strip()
    return root


def expected_sa(proposal: str) -> dict[str, str]:
    """``aes256-sha256-modp2048`` -> the algorithm names swanctl reports."""
    enc, integ, dh = proposal.split("-")
    alg, size = SA_ENCRYPTION[enc]
    return {
        "encr-alg": alg,
        "encr-keysize": size,
        "integ-alg": SA_INTEGRITY[integ],
        "prf-alg": SA_PRF[integ],
        "dh-group": SA_DH[dh],
    }


def established_ike(sas: dict) -> dict:
    """The first ESTABLISHED IKE_SA of a ``--list-sas --pretty`` dump (one event per IKE_SA)."""
    for event in sas.values():
        for conn in event.values() if isinstance(event, dict) else ():
            if isinstance(conn, dict) and conn.get("state") == "ESTABLISHED":
                return conn
    return {}


def installed_child(ike: dict) -> dict:
    for child in (ike.get("child-sas") or {}).values():
        if isinstance(child, dict) and child.get("state") == "INSTALLED":
            return child
    return {}


def ts_text(child: dict, key: str) -> str:
    value = child.get(key)
    return ",".join(value) if isinstance(value, list) else str(value or "")


def ike_alg(ike: dict) -> str:
    return f"{child_alg(ike)}/{ike.get('prf-alg')}/{ike.get('dh-group')}"


def child_alg(child: dict) -> str:
    return f"{child.get('encr-alg')}-{child.get('encr-keysize')}/{child.get('integ-alg')}"

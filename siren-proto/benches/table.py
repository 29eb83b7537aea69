#!/usr/bin/env python3
"""Print the siren-proto benchmark table: each operation beside the sum of the raw primitives it
performs, all taken from the same `cargo bench -p siren-proto --bench proto` run (criterion's
median estimates), so the overhead is a ratio rather than a time on a noisy machine."""

import json
import os
import sys
from pathlib import Path

target = Path(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/siren-target"))
root = target / "criterion"


def median_ns(*parts):
    path = root.joinpath(*parts, "new", "estimates.json")
    try:
        return json.loads(path.read_text())["median"]["point_estimate"]
    except FileNotFoundError:
        sys.exit(f"missing {path}: run `cargo bench -p siren-proto --bench proto` first")


def prim(name, size=None):
    return median_ns("primitive", name, *( [str(size)] if size else [] ))


keygen, dh = prim("x25519_keygen"), prim("x25519_dh")
rows = []
for role in ("initiator", "responder"):
    base = keygen + 4 * dh
    rows.append((f"handshake {role}", median_ns("handshake", role), base,
                 "1 X25519 keygen + 4 X25519 (no signatures in the handshake)"))
for size in (256, 4096):
    seal_base = keygen + dh + prim("ed25519_sign", size) + prim("secretbox_seal", size)
    rows.append((f"envelope seal {size} B", median_ns("envelope", "seal", str(size)), seal_base,
                 "X25519 keygen + X25519 + Ed25519 sign + secretbox"))
    open_base = dh + prim("ed25519_verify", size) + prim("secretbox_open", size)
    rows.append((f"envelope open {size} B", median_ns("envelope", "open", str(size)), open_base,
                 "X25519 + Ed25519 verify_strict + secretbox open"))
for size in (256, 4096):
    rows.append((f"frame encode ({size} B envelope)", median_ns("frame", "encode", str(size)),
                 median_ns("frame", "baseline_seal", str(size)), "secretbox of the frame's plaintext"))
    rows.append((f"frame decode ({size} B envelope)", median_ns("frame", "decode", str(size)),
                 median_ns("frame", "baseline_open", str(size)), "secretbox open of the same"))

print("| operation | Siren | raw primitives | ratio | primitives counted |")
print("|---|---:|---:|---:|---|")
for name, got, base, what in rows:
    print(f"| {name} | {got/1000:.1f} µs | {base/1000:.1f} µs | {got/base:.2f}× | {what} |")
print()
print("primitives (median): " + ", ".join(
    f"{n} {v/1000:.1f} µs" for n, v in [("X25519 keygen", keygen), ("X25519", dh),
    ("sign 256", prim("ed25519_sign", 256)), ("verify 256", prim("ed25519_verify", 256)),
    ("secretbox 256", prim("secretbox_seal", 256))]))

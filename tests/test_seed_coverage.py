"""Issue 3's "done when": the union of the plugins' seed_refs covers every single-technique
experiment ID of the seed log (../shared/seed). Combinations (6, W6, A10-A14, B1, B4, D1-D3,
D8, D9, E8, E9, H5, W0a-W0c, W0e), reruns (D10, E10, F10, H6) and the invalid NF15/NF16 are
not single techniques."""

from __future__ import annotations

from golfplan.registry import Registry


def ids(spec: str) -> list[str]:
    out = []
    for part in spec.split():
        if "-" in part and part[0].isalpha():
            a, b = part.split("-")
            prefix = a.rstrip("0123456789")
            out += [f"{prefix}{i}" for i in range(int(a[len(prefix):]), int(b[len(prefix):] if b[0].isalpha() else b) + 1)]
        else:
            out.append(part)
    return out


SINGLE_TECHNIQUE_IDS = ids(
    "baseline N5 5 N2 F8 NF1 C12 NF2 NF3 NF4 W3 W2 W10 G3 H4 "  # LR / WD schedules
    "1 2 3 4 N3 NF8 C13 C14 E1 "  # loss terms
    "N1 NF7 N4 NF10 NF6 NF9 NF5 N6 "  # weight edits
    "W1 W7 W4 W8 W5 W9 "  # gradient edits
    "A7 A8 A9 A1-A6 E6 A17 A18 C1-C3 F7 U8 G1 NF14 C4-C6 E1-E3 F1-F4 E13 C7 C8 W0d B5 E7 F9 "
    "D4-D7 H1 NF11 NF12 B2 B3 H2 H3 A15 A16 U7 NF13 C9-C11 E4 E5 F5 F6 U10 "  # architecture
    "U1-U6"  # dynamic structure
)


def test_id_ranges_expand():
    assert ids("A1-A3 C9-C11 7") == ["A1", "A2", "A3", "C9", "C10", "C11", "7"]


def test_seed_refs_cover_every_single_technique_experiment():
    reg = Registry()
    covered = {ref for name in reg.names() for ref in reg.get(name).seed_refs}
    missing = [i for i in SINGLE_TECHNIQUE_IDS if i not in covered]
    assert not missing, f"no plugin reproduces seed experiments {missing}"

"""The packer's caches change how fast a file is packed, never its bytes: a warm pack of a new set of
plugins (from the process's caches, or from the disk cache alone as a new process packs) is the file
a pack with empty caches writes."""

from __future__ import annotations

from pathlib import Path

from golfplan.core.export import packer

REPO = Path(__file__).resolve().parents[2]


def configured(tmp_path: Path, plugins: dict | None, leave_out: str = ""):
    """(config, techniques) as a run packs them: the frontier stack (studies/frontier.yaml) when
    ``plugins`` is None, without ``leave_out``; configured on 8xh100, data paths under tmp_path."""
    from golfplan.core.config import load_spec
    from golfplan.core.hooks import compose
    from golfplan.registry import Registry

    (tmp_path / "fineweb_val_bytes_000000.bin").write_bytes(b"")  # case_ops checks the sidecar is there
    spec = load_spec("8xh100", REPO / "studies" / "frontier.yaml" if plugins is None else None,
                     overrides={"data_path": str(tmp_path), "tokenizer_path": str(tmp_path / "tok.model")})
    chosen = {k: v for k, v in spec.plugins.items() if k != leave_out} if plugins is None else plugins
    comp = compose(Registry().instantiate(chosen), spec.config, spec.explicit)
    return comp.config, comp.techniques


def packed_with_empty_caches(cache: Path, monkeypatch, config, techniques) -> bytes:
    monkeypatch.setenv("GOLFPLAN_CACHE", str(cache))
    packer.clear_cache()
    return packer.pack(config, techniques).code


def test_warm_packs_of_new_sets_are_byte_identical_to_cold_ones(tmp_path, monkeypatch):
    sets = {"frontier": configured(tmp_path, None),
            "frontier without ema": configured(tmp_path, None, leave_out="ema"),  # every module seen before
            "baseline": configured(tmp_path, {}),
            "tidal+parallel+gqa": configured(tmp_path, {"tidal": {}, "parallel": {}, "gqa": {}})}  # new modules
    try:
        warm = {"frontier": packed_with_empty_caches(tmp_path / "warm", monkeypatch, *sets["frontier"])}
        warm["frontier without ema"] = packer.pack(*sets["frontier without ema"]).code  # the process's caches
        packer.clear_cache()
        warm["baseline"] = packer.pack(*sets["baseline"]).code  # the disk cache alone
        warm["tidal+parallel+gqa"] = packer.pack(*sets["tidal+parallel+gqa"]).code
        assert len({len(code) for code in warm.values()}) == len(sets)  # four different programs
        for i, (name, (config, techniques)) in enumerate(sets.items()):
            if name != "frontier":
                cold = packed_with_empty_caches(tmp_path / f"cold{i}", monkeypatch, config, techniques)
                assert cold == warm[name], name
    finally:
        packer.clear_cache()  # nothing cached under this test's folders stays in the process

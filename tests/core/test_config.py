"""Config loading: defaults are the baseline, unknown keys name the closest, types are enforced."""

from __future__ import annotations

import pytest

from golfplan.core.config import Config, load_spec, shrink
from golfplan.core.errors import ConfigError


def test_defaults_are_the_challenge_baseline():
    c = Config()
    assert (c.num_layers, c.model_dim, c.num_heads, c.num_kv_heads, c.mlp_mult, c.vocab_size) == (9, 512, 8, 4, 2, 1024)
    assert (c.train_batch_tokens, c.train_seq_len, c.iterations, c.warmdown_iters, c.warmup_steps) == (524288, 1024, 20000, 1200, 20)
    assert (c.tied_embed_init_std, c.logit_softcap, c.rope_base, c.qk_gain_init) == (0.005, 30.0, 10000.0, 1.5)
    assert (c.matrix_lr, c.scalar_lr, c.embed_lr, c.head_lr, c.tied_embed_lr) == (0.04, 0.04, 0.6, 0.008, 0.05)
    assert (c.muon_momentum, c.muon_momentum_warmup_start, c.muon_momentum_warmup_steps, c.muon_backend_steps) == (0.95, 0.85, 500, 5)
    assert (c.beta1, c.beta2, c.adam_eps, c.max_wallclock_seconds) == (0.9, 0.95, 1e-8, 600.0)
    assert c.tie_embeddings and c.num_encoder_layers == 4


def test_unknown_key_names_the_closest(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'num_layer'; did you mean 'num_layers'"):
        load_spec("cpu", sets=["num_layer=3"])
    f = tmp_path / "c.yaml"
    f.write_text("profile: cpu\nlogit_sofcap: 20\n")
    with pytest.raises(ConfigError, match="did you mean 'logit_softcap'"):
        load_spec(config_file=f)


def test_types_are_checked_not_silently_defaulted(tmp_path):
    with pytest.raises(ConfigError, match="num_layers' expects int"):
        load_spec("cpu", sets=["num_layers=many"])
    with pytest.raises(ConfigError, match="compile' must be one of"):
        load_spec("cpu", sets=["compile=sometimes"])
    assert load_spec("cpu", sets=["logit_softcap=15"]).config.logit_softcap == 15.0


def test_exponent_floats_are_numbers_in_files_and_sets(tmp_path):
    # PyYAML reads YAML 1.1, where `1e-4` (no dot) is a string; users write learning rates that way
    f = tmp_path / "c.yaml"
    f.write_text("profile: cpu\nmatrix_lr: 2e-2\nplugins: {tidal: {warmup_frac: 5E-2}}\n")
    spec = load_spec(config_file=f, sets=["scalar_lr=3e-2"])
    assert spec.config.matrix_lr == 0.02 and spec.config.scalar_lr == 0.03
    assert spec.plugins == {"tidal": {"warmup_frac": 0.05}}
    with pytest.raises(ConfigError, match="matrix_lr' expects float, got '2e'"):
        load_spec("cpu", sets=["matrix_lr=2e"])


def test_layers_resolve_in_order(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("profile: cpu\nplugins: {tidal: {warmup_frac: 0.3}}\nnum_layers: 3\nrope_base: 5000\n")
    spec = load_spec(config_file=f, sets=["num_layers=5", "tidal.warmup_frac=0.25"])
    assert spec.profile == "cpu"
    assert spec.config.num_layers == 5 and spec.config.rope_base == 5000.0
    assert spec.config.model_dim == 128  # from the cpu profile
    assert spec.plugins == {"tidal": {"warmup_frac": 0.25}}
    assert spec.explicit == {"num_layers", "rope_base"}


def test_bad_yaml_and_unknown_profile_are_one_line_errors(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("profile: cpu\n  num_layers: [3\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_spec(config_file=f)
    with pytest.raises(ConfigError, match="unknown profile 'h100'"):
        load_spec("h100")
    with pytest.raises(ConfigError, match="plugin 'gqa' is not enabled"):
        load_spec("cpu", sets=["gqa.kv_heads=1"])


def test_spec_round_trips_through_yaml(tmp_path):
    import yaml

    spec = load_spec("cpu", plugins="tidal,gqa", sets=["gqa.kv_heads=1", "logit_softcap=20"])
    f = tmp_path / "best.yaml"
    f.write_text(yaml.safe_dump(spec.to_yaml_dict()))
    again = load_spec(config_file=f)
    assert again.config == spec.config and again.plugins == spec.plugins


def test_validate_names_the_problem():
    with pytest.raises(ConfigError, match="not divisible by num_kv_heads"):
        Config(num_kv_heads=3).validate()
    with pytest.raises(ConfigError, match="must be even for RoPE"):
        Config(model_dim=24, num_heads=8).validate()
    with pytest.raises(ConfigError, match="encoder_layers 10 exceeds"):
        Config(encoder_layers=10).validate()
    with pytest.raises(ConfigError, match="must divide 8"):
        Config().validate(world_size=3)


def test_shrink_keeps_structure():
    c = load_spec("8xh100").config
    s = shrink(c)
    assert (s.num_layers, s.num_heads, s.num_kv_heads, s.vocab_size, s.tie_embeddings) == (9, 8, 4, 1024, True)
    assert s.model_dim < c.model_dim and s.head_dim % 2 == 0 and s.device == "cpu"
    s.validate()

"""U-Net split: how many of the layers form the encoder half (the rest are the decoder).

Sets ``encoder_layers``. The baseline uses ``num_layers // 2`` encoder layers whose
outputs are added back, through learned skip weights, into the first decoder
layers in reverse order; there are ``min(encoder, decoder)`` skip weights.
``encoder_layers=0`` is a pure decoder (no skips at all), the seed's best (H1);
fewer encoder layers were monotonically better (D4-D7).

The split is checked against the final layer count (after ``depth`` and any other
plugin's overrides) by ``Config.validate``: "encoder_layers N exceeds num_layers M".
"""

from __future__ import annotations

from golfplan.core.technique import Int, Technique, hookimpl


class UNet(Technique):
    name = "unet"
    summary = "U-Net encoder/decoder split: encoder_layers (0 = pure decoder)"
    slot = "unet"
    params = {"encoder_layers": Int(0, 0, 16, help="encoder layers; 0 = pure decoder, no skip weights")}
    seed_refs = ("D4", "D5", "D6", "D7", "H1")
    seed_result = ("D6 1/8: 1.5377 (-0.074, 266 steps), D5 2/7: 1.5412, D4 3/6: 1.5439, D7 5/4: 1.5568 (worse); "
                   "H1 pure decoder 0/9: 1.5207 (-0.091, 276 steps, best overall)")

    @hookimpl
    def configure(self, config):
        return {"encoder_layers": self.p.encoder_layers}

"""Writes Tests/SwiftletTests/Fixtures/bnb/dynamic_map.json: bitsandbytes' 8-bit dynamic code
books (signed and unsigned) as float32 bit patterns. Needs torch and bitsandbytes (CPU is enough).
Run from the repository root: python scripts/make_bnb_fixtures.py"""
import json

import bitsandbytes
import bitsandbytes.functional as F
import torch

maps = {
    "bitsandbytes": bitsandbytes.__version__,
    "signed": F.create_dynamic_map(signed=True).view(torch.int32).tolist(),
    "unsigned": F.create_dynamic_map(signed=False).view(torch.int32).tolist(),
}
with open("Tests/SwiftletTests/Fixtures/bnb/dynamic_map.json", "w") as f:
    json.dump(maps, f)
